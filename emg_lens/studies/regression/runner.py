"""Running and checking a regression study (`emg_lens.studies.regression`): read the
contraction, train the regressor (or reuse it from the store), score the baselines and every
cut per held-out block, each a cell of the provenance-keyed store, and test the cuts over
blocks; and the kind, `KIND`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emg_lens._io import no_file
from emg_lens.edges import parse
from emg_lens.errors import DataFormatError, LayoutError, SpecError
from emg_lens.hooks import compile_edges
from emg_lens.hooks.masking import Cut
from emg_lens.provenance import checkpoint_digest, code_digest, file_digest, json_digest
from emg_lens.stats.compare import EXACT_MAX_N, format_p
from emg_lens.stats.design import corrected_floor
from emg_lens.studies.kinds import StudyKind, load_as
from emg_lens.studies.regression.cuts import block_errors, cut_table
from emg_lens.studies.regression.result import RegressionStudyResult
from emg_lens.studies.regression.spec import RegressionSpec
from emg_lens.studies.store import CellStore

if TYPE_CHECKING:
    from emg_lens.models.native.tinymyo import TinyMyo

SUBJECT = 1  # one contraction: the store's one subject
MODEL_CELL, BASELINE_CELL, NONE_CELL = "model", "baselines", "none"


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
            f"recording {spec.recording} (study {spec.name!r}) {no_file(path)}, read from "
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


def build_model(spec: RegressionSpec, contraction: Contraction) -> TinyMyo:
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
    from emg_lens.stats.metrics import score_regression
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


def _cut_masks(spec: RegressionSpec, model: TinyMyo) -> dict[str, Cut]:
    """Each cut compiled on ``model``'s layout; a cut that cannot be (a parse, or groups the
    model does not have) is named."""
    out = {}
    for name, edges in spec.cuts.items():
        try:
            out[name] = compile_edges(parse(edges), model)  # the one compiled cut
        except (SpecError, LayoutError) as exc:
            raise type(exc)(f"interventions {name!r}: {exc}") from exc
    return out


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
    the baselines and every cut per held-out block, and test the cuts over blocks; with
    ``out_dir`` every step is stored with its provenance and reused by a rerun. ``device``:
    where the model trains and runs; ``overrides``: ``{"epochs": n}`` (``study run --epochs``)."""
    spec = load_as(spec, RegressionSpec).with_overrides(overrides)
    contraction = load_contraction(spec)
    _cut_masks(spec, build_model(spec, contraction))  # before the training: the layout's
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
    test = (w.X_test, w.y_test, w.test_block)

    def errors(key: str, edges: str) -> dict[str, Any]:
        """The cell of the test blocks' errors with ``edges`` cut in every layer ("": none)."""
        cut = parse(edges) if edges else None
        provenance = {**data, "model": model_id, "edges": edges}
        return cell(key, provenance, lambda: {"value": 0.0, **block_errors(model, *test, cut)})

    base = errors(NONE_CELL, "")
    items = tqdm(spec.cuts.items(), desc=f"cut {spec.name}", disable=not progress)
    cuts = {name: errors(_cell_key(name, edges), edges) for name, edges in items}
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
    for name, masks in _cut_masks(spec, model).items():
        edges = spec.cuts[name]
        cut = int(sum(int(m.sum()) for m in masks.values())) // cfg.n_layers
        moving += cut > 0
        shown = edges if len(edges) <= 60 else edges[:57] + "..."
        zero = "  (no edge: a structural zero, untested)" if cut == 0 else ""
        lines.append(f"  {name:<{width}}  {cut:>6}  {shown}{zero}")
    if n_blocks <= EXACT_MAX_N:
        correction = spec.stats["correction"]
        lines.append(
            f"tests: exact two-sided sign-flip over the {n_blocks} blocks: smallest p "
            f"{format_p(2 / 2**n_blocks)}, {correction} over {moving} cuts: smallest corrected "
            f"p {format_p(corrected_floor(n_blocks, moving, 'permutation', correction))}"
        )
    else:
        lines.append(f"tests: two-sided sign-flip over the {n_blocks} blocks (Monte Carlo)")
    return "\n".join(lines)


KIND = StudyKind(
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
