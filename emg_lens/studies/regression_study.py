"""The regression kind (``kind = "regression"``): edges cut in a regressor of one contraction's
force, tested over the contraction's held-out time blocks; resumable in the provenance-keyed
store.

A study file::

    kind = "regression"
    name = "hdsemg-force-grid"
    recording = ".data/openhdemg/otb_testfile.mat"  # an OT BioLab+ export (`read_otb`), from
                                                    # the working directory
    target = "force"                  # the auxiliary channel predicted

    [windows]                         # `contraction_windows`: samples at the file's rate
    window = 512                      # 250 ms at 2048 Hz
    step = 128
    block = 2048                      # 1-s blocks, ...
    test_every = 3                    # ... every third held out
    bin = 16                          # envelope bins: window / bin = a token's samples

    [model]                           # a TinyMyo, one token per electrode, its regression head
    n_layers = 2
    d_model = 32
    d_head = 8
    n_heads = 4
    d_mlp = 64
    seed = 0

    [train]                           # `finetune_regression` from a fresh encoder, MSE loss
    epochs = 15                       # (`study run --epochs` overrides it)
    lr = 3e-3
    warmup_epochs = 2
    batch_size = 32
    seed = 0

    [[interventions]]                 # each edge set is cut in every layer
    name = "every_electrode_pair"
    edges = "cross_channel"

    [stats]
    correction = "holm"               # or "bonferroni": over the cuts that cut an edge
    seed = 0                          # the bootstrap's

The independent unit is the held-out block, not the window: windows overlap and the force
changes slowly, so each cut is compared with the unmasked model on the blocks' MSEs
(`emg_lens.studies.regression.cut_table`: ΔMSE with a bootstrap and a t interval over blocks,
the exact sign-flip p over blocks, the correction over the cuts).

The store (`emg_lens.studies.store.CellStore`, one subject: the contraction) keeps the
trained model (its checkpoint under ``model/`` and a cell with its digest, reused while the
data, the ``[model]`` and ``[train]`` tables and the code are unchanged), the baselines (a
mean predictor and a ridge regression on each channel's RMS), and one cell per cut: its
blocks' MSEs, reused only with the same model, data and code digests and edge set. A run
killed at any point recomputes only what is missing. The statistics are computed from the
cells, so ``[stats]`` and ``description`` are not part of the study's fingerprint.

Outputs: ``summary.csv`` (one row per cut, `emg_lens.studies.regression.CUT_COLUMNS`),
``blocks.csv`` (each block's MSE under each condition), ``baselines.csv`` and a ``cuts``
figure (ΔMSE with its intervals).

>>> spec = RegressionSpec.from_dict({"name": "f", "recording": "r.mat",
...     "interventions": [{"name": "all_pairs", "edges": "cross_channel"}]})
>>> spec.windows["block"], spec.train["epochs"], spec.cuts
(2048, 15, {'all_pairs': 'cross_channel'})
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emg_lens.edges import parse
from emg_lens.errors import ArgumentError, DataFormatError, EdgeExpressionError, SpecError
from emg_lens.provenance import checkpoint_digest, code_digest, file_digest, json_digest
from emg_lens.studies.kinds import StudyKind, load_spec
from emg_lens.studies.output import StudyOutput, markdown_table
from emg_lens.studies.regression import block_errors, cut_table
from emg_lens.studies.spec_base import Spec
from emg_lens.studies.stats import EXACT_MAX_N, correct, format_p
from emg_lens.studies.store import CellStore
from emg_lens.studies.validate import positive_int, reject_repeats, reject_unknown, string, table

__all__ = [
    "KIND",
    "RegressionSpec",
    "RegressionStudyResult",
    "check_regression",
    "run_regression_study",
]

WINDOWS = {"window": 512, "step": 128, "block": 2048, "test_every": 3, "bin": 16}
MODEL = {"n_layers": 2, "d_model": 32, "d_head": 8, "n_heads": 4, "d_mlp": 64, "seed": 0}
TRAIN = {"epochs": 15, "lr": 3e-3, "warmup_epochs": 2, "batch_size": 32, "seed": 0}
STATS = {"correction": "holm", "seed": 0}
CORRECTIONS = ("holm", "bonferroni")
OVERRIDES = ("epochs",)  # `study run --epochs`: the [train] key a smoke run shrinks
SUBJECT = 1  # one contraction: the store's one subject
MODEL_CELL, BASELINE_CELL, NONE_CELL = "model", "baselines", "none"


def _section(data: dict[str, Any], key: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``[key]`` over its defaults: the integers checked >= 1 (seeds and warm-up >= 0), the
    learning rate a positive number."""
    given = table(data.get(key, {}), key)
    reject_unknown(key, given, set(defaults))
    out = {**defaults, **given}
    for name, value in out.items():
        where = f"{key}.{name}"
        if name == "lr":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not 0 < value < float("inf"):
                raise SpecError(f"{where} must be a positive number, got {value!r}")
            out[name] = float(value)
        else:
            minimum = 0 if name in ("seed", "warmup_epochs") else 1
            out[name] = positive_int(value, where, minimum=minimum)
    return out


def _cuts(value: Any) -> dict[str, str]:
    """``[[interventions]]``: name -> the edge expression, parsed and written back."""
    if not isinstance(value, list) or not value:
        raise SpecError(
            "interventions must be a non-empty list of tables with a name and edges (an edge "
            f"expression cut in every layer), got {value!r}"
        )
    cuts: dict[str, str] = {}
    for i, entry in enumerate(value):
        where = f"interventions[{i}]"
        entry = table(entry, where)
        reject_unknown(where, entry, {"name", "edges"})
        name = string(entry.get("name"), f"{where}.name")
        if not name or name == "none":
            raise SpecError(
                f"{where}.name must be a non-empty string other than 'none' (the unmasked "
                f"row), got {entry.get('name')!r}"
            )
        expr = string(entry.get("edges"), f"{where}.edges (an edge expression)")
        if not expr:
            raise SpecError(f"{where}.edges is required: an edge expression, e.g. cross_channel")
        try:
            parsed = parse(expr)
        except EdgeExpressionError as exc:
            raise SpecError(f"{where}.edges: {exc}") from exc
        reject_repeats("interventions' names", [*cuts, name])
        cuts[name] = str(parsed)
    return cuts


def _stats(data: dict[str, Any]) -> dict[str, Any]:
    given = table(data.get("stats", {}), "stats")
    reject_unknown("stats", given, set(STATS))
    out = {**STATS, **given}
    if out["correction"] not in CORRECTIONS:
        raise SpecError(f"stats.correction = {out['correction']!r}; accepted: {list(CORRECTIONS)}")
    out["seed"] = positive_int(out["seed"], "stats.seed", minimum=0)
    return out


def _dump_cuts(cuts: Mapping[str, str], spec: Any) -> list[dict[str, str]]:
    return [{"name": name, "edges": edges} for name, edges in cuts.items()]


@dataclass(frozen=True)
class RegressionSpec(Spec):
    """A regression study (see the module docstring)."""

    WHERE: ClassVar[str] = "regression study"
    KIND: ClassVar[str] = "regression"
    # computed from the cells, not into them: changing them reuses every cell
    UNHASHED: ClassVar[tuple[str, ...]] = ("description", "stats")

    name: str
    recording: str
    target: str = "force"
    windows: dict[str, int] = field(default_factory=lambda: dict(WINDOWS))
    model: dict[str, int] = field(default_factory=lambda: dict(MODEL))
    train: dict[str, Any] = field(default_factory=lambda: dict(TRAIN))
    cuts: dict[str, str] = field(
        default_factory=dict, metadata={"key": "interventions", "dump": _dump_cuts}
    )
    stats: dict[str, Any] = field(default_factory=lambda: dict(STATS))
    description: str = ""

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        for key in ("name", "recording"):
            if not string(data.get(key), f"study key {key!r}"):
                raise SpecError(f"study key {key!r} is required and must be a non-empty string")
        target = string(data.get("target", "force"), "target (an auxiliary channel's name)")
        if not target:
            raise SpecError("target must name the recording's auxiliary channel, e.g. 'force'")
        return {
            "name": data["name"],
            "recording": data["recording"],
            "target": target,
            "windows": _section(data, "windows", WINDOWS),
            "model": _section(data, "model", MODEL),
            "train": _section(data, "train", TRAIN),
            "cuts": _cuts(data.get("interventions")),
            "stats": _stats(data),
            "description": string(data.get("description"), "description (free text)") or "",
        }

    def _check(self) -> None:
        model = self.model
        if model["d_model"] != model["d_head"] * model["n_heads"]:
            raise SpecError(
                f"model.d_model = {model['d_model']} must be d_head x n_heads = "
                f"{model['d_head']} x {model['n_heads']}"
            )
        train = self.train
        if train["warmup_epochs"] >= train["epochs"]:
            raise SpecError(
                f"train.warmup_epochs = {train['warmup_epochs']} must be below train.epochs = "
                f"{train['epochs']} (the cosine phase after the warm-up would be empty)"
            )
        windows = self.windows
        if windows["window"] % windows["bin"] or windows["step"] % windows["bin"]:
            raise SpecError(
                f"windows.window = {windows['window']} and windows.step = {windows['step']} "
                f"must be multiples of windows.bin = {windows['bin']}"
            )

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> RegressionSpec:
        """The spec with ``study run``'s overrides (``--epochs``); any other is refused by its
        flag."""
        overrides = dict(overrides or {})
        other = sorted(set(overrides) - set(OVERRIDES))
        if other:
            raise ArgumentError(
                f"{' '.join(f'--{k}' for k in other)}: {self.name} is a regression study, "
                "whose data are its `recording` and whose model its [model] table; of the "
                f"training flags it takes {' '.join(f'--{k}' for k in OVERRIDES)} only"
            )
        if not overrides:
            return self
        return self.with_changes(train={**self.train, **overrides})


@dataclass(frozen=True)
class Contraction:
    """A study's data: the recording's windows, channel names and digest."""

    windows: Any  # emg_lens.data.windows.contraction.ContractionWindows
    emg: np.ndarray  # the raw signal, for the RMS baseline
    names: list[str]
    sample_rate: float
    digest: str


def load_contraction(spec: RegressionSpec) -> Contraction:
    """Read ``spec.recording`` and cut its windows; a missing file is a `DataFormatError`
    saying where it was looked for and what fetches openhdemg's test file."""
    from emg_lens.data.formats.otb import read_otb
    from emg_lens.data.windows.contraction import contraction_windows

    path = Path(spec.recording)
    if not path.is_file():
        raise DataFormatError(
            f"recording {spec.recording} (study {spec.name!r}) does not exist, read from "
            f"{Path.cwd()}: the study's `recording` is an OT BioLab+ .mat export, from the "
            "working directory (`make data` fetches openhdemg's test file to "
            ".data/openhdemg/otb_testfile.mat)"
        )
    rec = read_otb(path)
    windows = contraction_windows(rec, spec.target, **spec.windows)
    digest = json_digest(
        {"file": file_digest(path), "target": spec.target, "windows": spec.windows}
    )
    emg = np.asarray(rec.signals["emg"])
    names = [f"ch{k + 1}" for k in range(emg.shape[1])]
    return Contraction(windows, emg, names, float(rec.sample_rate), digest)


def build_model(spec: RegressionSpec, contraction: Contraction) -> torch.nn.Module:
    """The untrained TinyMyo of ``spec.model``: one token per electrode (a window's envelope
    bins in one patch), channel names ``ch1``, ``ch2``..."""
    from emg_lens import EncoderConfig
    from emg_lens.models.native.tinymyo import TinyMyo

    steps = contraction.windows.X_train.shape[-1]
    sizes = {k: v for k, v in spec.model.items() if k != "seed"}
    cfg = EncoderConfig.preset(
        "tinymyo", modalities={"emg": len(contraction.names)}, n_samples=steps,
        patch_samples=steps, n_classes=1, channel_names=contraction.names,
        seed=spec.model["seed"], **sizes,
    )  # fmt: skip
    return TinyMyo(cfg, task="reconstruction")


def _train(spec: RegressionSpec, contraction: Contraction, out: Path | None, device: Any):
    """Train the study's regressor (seeded), saved to ``out`` when given."""
    from emg_lens.train.finetune import FinetuneConfig
    from emg_lens.train.regression import finetune_regression

    train = spec.train
    recipe = FinetuneConfig(
        epochs=train["epochs"], lr=train["lr"], warmup_epochs=train["warmup_epochs"],
        batch_size=train["batch_size"], seed=train["seed"], layer_decay=1.0, drop_path=0.0,
        reduction="mean", progress=False,
    )  # fmt: skip
    torch.manual_seed(train["seed"])
    w = contraction.windows
    model, _ = finetune_regression(
        build_model(spec, contraction), (w.X_train, w.y_train[:, None, None]), recipe,
        loss="mse", out=out, device=None if device is None else str(device),
        metadata={"study": spec.name, "recording": spec.recording, "target": spec.target},
    )  # fmt: skip
    return model.eval()


def _model(spec, contraction, store, code, device, progress) -> tuple[Any, str, bool]:
    """The trained regressor, its digest and whether it was reused from the store."""
    from emg_lens.checkpoints import load_checkpoint
    from emg_lens.provenance import model_digest

    if store is None:
        model = _train(spec, contraction, None, device)
        return model, model_digest(model), False
    folder = store.root / MODEL_CELL
    provenance = {
        "data": contraction.digest,
        "recipe": json_digest({"model": spec.model, "train": spec.train}),
        "code": code,
    }
    cell = store.get(SUBJECT, MODEL_CELL, provenance=provenance)
    found = cell is not None and (folder / "config.json").is_file()
    if found and checkpoint_digest(folder) == cell["checkpoint"]:
        return (
            load_checkpoint(folder, device=None if device is None else str(device)).eval(),
            cell["checkpoint"],
            True,
        )
    if progress:
        print(f"{spec.name}: training the regressor ({spec.train['epochs']} epochs)")
    start = time.perf_counter()
    model = _train(spec, contraction, folder, device)
    digest = checkpoint_digest(folder)
    seconds = time.perf_counter() - start
    store.put(SUBJECT, MODEL_CELL, {"value": digest, "checkpoint": digest,
                                    "train_seconds": seconds}, provenance=provenance)  # fmt: skip
    return model, digest, False


def baselines(spec: RegressionSpec, contraction: Contraction) -> list[dict[str, Any]]:
    """The mean of the training targets and the per-channel feature baseline every trained
    model is shown beside (`emg_lens.train.baseline.feature_baseline`: a ridge regression on
    each channel's RMS, fitted on the training windows), scored on the test windows."""
    from emg_lens.studies.metrics import score_regression
    from emg_lens.train.baseline import feature_baseline

    w = contraction.windows
    mean = np.full(len(w.y_test), w.y_train.mean())
    ridge = feature_baseline(w)
    return [
        {"predictor": "mean of training", **score_regression(mean, w.y_test)},
        {
            "predictor": "RMS ridge",
            **score_regression(ridge.predictions.reshape(np.shape(w.y_test)), w.y_test),
        },
    ]


def _cell_key(name: str, edges: str) -> str:
    return f"cut-{json_digest([name, edges])[:16]}"


def run_regression_study(
    spec: RegressionSpec | str | Path | dict,
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    device: Any = None,
    overrides: Mapping[str, Any] | None = None,
) -> RegressionStudyResult:
    """Run a regression study: read the recording, train the regressor (or reuse it), score
    the baselines and every cut per held-out block, and test the cuts over blocks. With
    ``out_dir`` every step is stored with its provenance and reused by a rerun (see the module
    docstring), and the tables and figure are written there. ``device``: where the model
    trains and runs; ``overrides``: ``{"epochs": n}`` (``study run --epochs``)."""
    spec = load_spec(spec, kind=RegressionSpec.KIND).with_overrides(overrides)
    contraction = load_contraction(spec)
    store = CellStore(out_dir, spec.fingerprint()) if out_dir is not None else None
    code = code_digest()
    model, model_id, reused_model = _model(spec, contraction, store, code, device, progress)
    reused = int(reused_model)
    w = contraction.windows

    def cell(key: str, provenance: dict[str, Any], compute) -> dict[str, Any]:
        nonlocal reused
        if store is not None:
            stored = store.get(SUBJECT, key, provenance=provenance)
            if stored is not None:
                reused += 1
                return stored
        value = json.loads(json.dumps(compute(), sort_keys=True))  # as the store gives it back
        if store is not None:
            store.put(SUBJECT, key, value, provenance=provenance)
        return value

    data = {"data": contraction.digest, "code": code}
    rows = cell(BASELINE_CELL, data, lambda: {"value": 0.0, "rows": baselines(spec, contraction)})
    scored = {**data, "model": model_id}
    test = (w.X_test, w.y_test, w.test_block)
    base = cell(
        NONE_CELL, {**scored, "edges": ""}, lambda: {"value": 0.0, **block_errors(model, *test)}
    )
    cuts = {}
    for name, edges in tqdm(spec.cuts.items(), desc=f"cut {spec.name}", disable=not progress):
        cuts[name] = cell(
            _cell_key(name, edges), {**scored, "edges": edges},
            lambda edges=edges: {"value": 0.0, **block_errors(
                model, w.X_test, w.y_test, w.test_block, parse(edges))},
        )  # fmt: skip
    n_cells = 3 + len(cuts)
    result = RegressionStudyResult(
        spec=spec,
        summary=cut_table(base, cuts, edges=spec.cuts, **spec.stats),
        blocks=_blocks_table(np.unique(w.test_block), base, cuts),
        baselines=pd.DataFrame(
            [*rows["rows"], {"predictor": "TinyMyo", "mse": base["mse"], "r2": base["r2"]}]
        )[["predictor", "mse", "r2"]],
        n_windows=len(w.y_test),
        block_seconds=spec.windows["block"] / contraction.sample_rate,
        reused=reused,
        recomputed=n_cells - reused,
    )
    if out_dir is not None:
        result.save(out_dir)
    return result


def _blocks_table(ids: np.ndarray, base: dict, cuts: dict[str, dict]) -> pd.DataFrame:
    rows = {"none": base["block_mse"], **{n: c["block_mse"] for n, c in cuts.items()}}
    return pd.DataFrame(
        [{"block": int(b), "condition": name, "mse": mse[i]}
         for name, mse in rows.items() for i, b in enumerate(ids)]
    )  # fmt: skip


@dataclass
class RegressionStudyResult(StudyOutput):
    """The tables of a regression study (`emg_lens.studies.output.StudyOutput`): ``summary``
    (one row per cut, the first the unmasked model), ``blocks`` (each held-out block's MSE per
    condition) and ``baselines`` (the mean predictor, the RMS ridge and the model)."""

    spec: RegressionSpec
    summary: pd.DataFrame
    blocks: pd.DataFrame
    baselines: pd.DataFrame
    n_windows: int
    block_seconds: float
    reused: int = 0
    recomputed: int = 0

    @property
    def n_blocks(self) -> int:
        return int(self.blocks["block"].nunique())

    def design(self) -> str:
        """What the tests count and the smallest p they can give."""
        n, m = self.n_blocks, int(self.summary["p"].notna().sum())
        exact = n <= EXACT_MAX_N
        floor = 2 / 2**n if exact else float("nan")
        corrected = correct([floor] * m, self.spec.stats["correction"])[0] if m else floor
        test = "exact" if exact else "Monte Carlo"
        return (
            f"The independent unit is the held-out block: {n} blocks of "
            f"{self.block_seconds:g} s ({self.n_windows} overlapping test windows, not "
            "independent). ΔMSE is the mean over blocks of each block's MSE change; its 95 % "
            "intervals are a percentile bootstrap over blocks (`ci_low`, `ci_high`) and a t "
            f"interval (`t_low`, `t_high`). p: the {test} two-sided sign-flip test of the "
            f"blocks' paired changes"
            + (f" (smallest possible {format_p(floor)})" if exact else "")
            + f", corrected ({self.spec.stats['correction']}) over the {m} cuts that cut an "
            f"edge (smallest possible {format_p(corrected)})."
        )

    def baseline_note(self) -> str:
        """A line when the model is below the RMS ridge regression (empty otherwise)."""
        r2 = self.baselines.set_index("predictor")["r2"]
        if r2["TinyMyo"] >= r2["RMS ridge"]:
            return ""
        return (
            f"The model (R² {r2['TinyMyo']:.3f}) is below a ridge regression on each channel's "
            f"RMS (R² {r2['RMS ridge']:.3f}): a linear read of the channels' amplitudes does "
            "better on these blocks."
        )

    def _shown(self) -> pd.DataFrame:
        shown = self.summary.drop(columns="edges").copy()
        for column in ("p", "p_corrected"):
            shown[column] = shown[column].map(format_p)
        return shown

    def to_markdown(self) -> str:
        note = self.baseline_note()
        edges = "\n".join(f"- `{name}`: `{edges}`" for name, edges in self.spec.cuts.items())
        return (
            f"# Regression study {self.spec.name}\n\n"
            + (f"{self.spec.description}\n\n" if self.spec.description else "")
            + f"{self.spec.target} from {self.spec.recording}; every cut in every layer.\n\n"
            + self.design()
            + "\n\n## Baselines (held-out windows)\n\n"
            + markdown_table(self.baselines)
            + ("\n\n" + note if note else "")
            + "\n\n## Cuts\n\n"
            + markdown_table(self._shown())
            + "\n\n"
            + edges
            + "\n"
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        """summary.csv, blocks.csv and baselines.csv."""
        return {
            "summary.csv": self.summary,
            "blocks.csv": self.blocks,
            "baselines.csv": self.baselines,
        }

    def figures(self) -> dict[str, plt.Figure]:
        """``cuts``: each cut's ΔMSE with its bootstrap and t intervals."""
        rows = self.summary.iloc[1:]
        fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.6 * len(rows)))
        y = np.arange(len(rows))[::-1]
        ax.axvline(0.0, color="0.6", lw=1)
        ax.hlines(y + 0.12, rows["ci_low"], rows["ci_high"], color="C0", lw=2, label="bootstrap")
        ax.hlines(y - 0.12, rows["t_low"], rows["t_high"], color="C1", lw=2, label="t")
        ax.plot(rows["delta_mse"], y, "ko")
        method = self.spec.stats["correction"]
        labels = [f"{c}  ({method} p {format_p(p) if np.isfinite(p) else '≡0'})"
                  for c, p in zip(rows["condition"], rows["p_corrected"])]  # fmt: skip
        ax.set_yticks(y, labels)
        ax.set_xlabel(f"ΔMSE over {self.n_blocks} held-out blocks (95 % intervals)")
        ax.set_title(f"{self.spec.name}: edges cut in every layer")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        fig.tight_layout()
        return {"cuts": fig}

    def console(self) -> str:
        """summary.md and the cells reused and computed."""
        return f"{self.to_markdown()}\ncells: {self.reused} reused, {self.recomputed} recomputed"


def check_regression(
    spec: RegressionSpec,
    *,
    overrides: Mapping[str, Any] | None = None,
    study_file: str | Path | None = None,
) -> str:
    """What ``emg-lens study check`` prints of a regression study: the recording's windows
    and held-out blocks, the model and its training, each cut's edges per layer (a cut of no
    edge is a structural zero) on the untrained model's layout, and the smallest p the design
    can give. The recording is read; nothing is trained."""
    spec = spec.with_overrides(overrides)
    contraction = load_contraction(spec)
    w, model = contraction.windows, build_model(spec, contraction)
    n_blocks = len(np.unique(w.test_block))
    windows, train, sizes = spec.windows, spec.train, spec.model
    rate = contraction.sample_rate
    lines = [
        f"{spec.name}: regression study of {spec.recording}'s {spec.target!r}",
        f"windows: {windows['window']} samples ({windows['window'] / rate:g} s) every "
        f"{windows['step']}, envelopes in bins of {windows['bin']}; blocks of "
        f"{windows['block']} samples ({windows['block'] / rate:g} s), every "
        f"1 in {windows['test_every']} held out",
        f"data: {len(w.y_train)} training windows; {len(w.y_test)} test windows in {n_blocks} "
        "held-out blocks (the independent unit)",
        f"model: TinyMyo, {len(contraction.names)} electrode tokens, {sizes['n_layers']} "
        f"layers x {sizes['n_heads']} heads, d_model {sizes['d_model']}; trained "
        f"{train['epochs']} epochs at lr {train['lr']:g} (MSE, seed {train['seed']})",
        "cuts (in every layer; edges cut per layer, summed over heads):",
    ]
    cfg, moving = model.cfg, 0
    width = max(len(name) for name in spec.cuts)
    for name, edges in spec.cuts.items():
        try:
            masks = parse(edges).compile_layers(model.layout, cfg.n_heads, cfg.n_layers)
        except EdgeExpressionError as exc:
            raise SpecError(f"interventions {name!r}: {exc}") from exc
        cut = int(masks.sum()) // cfg.n_layers
        moving += cut > 0
        shown = edges if len(edges) <= 60 else edges[:57] + "..."
        zero = "  (no edge: a structural zero, untested)" if cut == 0 else ""
        lines.append(f"  {name:<{width}}  {cut:>6}  {shown}{zero}")
    if n_blocks <= EXACT_MAX_N:
        floor = 2 / 2**n_blocks
        corrected = correct([floor] * moving, spec.stats["correction"])[0] if moving else floor
        lines.append(
            f"tests: exact two-sided sign-flip over the {n_blocks} blocks: smallest p "
            f"{format_p(floor)}, {spec.stats['correction']} over {moving} cuts: smallest "
            f"corrected p {format_p(corrected)}"
        )
    else:
        lines.append(f"tests: two-sided sign-flip over the {n_blocks} blocks (Monte Carlo)")
    return "\n".join(lines)


KIND = StudyKind(
    name=RegressionSpec.KIND,
    spec=RegressionSpec,
    run=run_regression_study,
    check=check_regression,
    refuses={
        "models": "which trains its own regressor ([model], [train])",
        "allow_code": "which names no Python file",
        "wait_timeout": "whose one contraction is computed by one process",
        "layers": "checked on its own model ([model])",
        "heads": "checked on its own model ([model])",
    },
)
"""The regression kind (`emg_lens.studies.kinds`)."""
