"""A regression study's spec (`emg_lens.studies.regression`): the recording, the target, and
the ``[windows]``, ``[model]``, ``[train]``, ``[[interventions]]`` and ``[stats]`` tables over
their defaults, each checked as it is read.

>>> spec = RegressionSpec.from_dict({"name": "f", "recording": "r.mat",
...     "interventions": [{"name": "all_pairs", "edges": "cross_channel"}]})
>>> spec.windows["block"], spec.train["epochs"], spec.cuts
(2048, 15, {'all_pairs': 'cross_channel'})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypedDict

from emg_lens.edges import parse
from emg_lens.errors import (
    ArgumentError,
    SpecError,
    check_choice,
    check_int,
    check_number,
    check_seed,
)
from emg_lens.studies.spec_base import Spec
from emg_lens.studies.validate import (
    check_list,
    check_string,
    check_table,
    refuse_repeats,
    refuse_unknown,
    require_strings,
)


class Windows(TypedDict):
    """``[windows]``, `emg_lens.data.windows.contraction.contraction_windows`'s keywords."""

    window: int
    step: int
    block: int
    test_every: int
    bin: int


WINDOWS = Windows(window=512, step=128, block=2048, test_every=3, bin=16)
MODEL = {"n_layers": 2, "d_model": 32, "d_head": 8, "n_heads": 4, "d_mlp": 64, "seed": 0}
TRAIN = {"epochs": 15, "lr": 3e-3, "warmup_epochs": 2, "batch_size": 32, "seed": 0}
STATS = {"correction": "holm", "seed": 0}
CORRECTIONS = ("holm", "bonferroni")
OVERRIDES = ("epochs",)  # `study run --epochs`: the [train] key a smoke run shrinks


def _section(data: dict[str, Any], key: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``[key]`` over its defaults: the integers checked >= 1 (warm-up >= 0), the seed by
    `emg_lens.errors.check_seed` (so `study check` refuses what `study run` would), the
    learning rate positive, the correction one of `CORRECTIONS`."""
    given = check_table(data.get(key, {}), key)
    refuse_unknown(key, given, set(defaults))
    out = {**defaults, **given}
    for name, value in out.items():
        where = f"{key}.{name}"
        if name == "correction":
            check_choice(value, list(CORRECTIONS), where, SpecError)
        elif name == "lr":
            out[name] = check_number(
                value, where, "a positive number", lambda v: 0 < v < math.inf, SpecError
            )
        elif name == "seed":
            out[name] = check_seed(value, where, SpecError)
        else:
            out[name] = check_int(value, where, int(name != "warmup_epochs"), error=SpecError)
    return out


def _cuts(value: Any) -> dict[str, str]:
    """``[[interventions]]``: name -> the edge expression, parsed and written back."""
    accepted = "a non-empty list of tables with a name and edges (an edge expression)"
    cuts: dict[str, str] = {}
    for i, entry in enumerate(check_list(value, "interventions", accepted)):
        where = f"interventions[{i}]"
        entry = check_table(entry, where)
        refuse_unknown(where, entry, {"name", "edges"})
        name, expr = entry.get("name"), entry.get("edges", "")  # parse refuses a non-string
        if not isinstance(name, str) or not name or name == "none":
            accepted = "a non-empty string other than 'none' (the unmasked row)"
            raise SpecError(f"{where}.name must be {accepted}, got {name!r}")
        try:
            parsed = parse(expr)
        except SpecError as exc:
            raise SpecError(f"{where}.edges: {exc}") from exc
        refuse_repeats("interventions' names", [*cuts, name])
        cuts[name] = str(parsed)
    return cuts


def _dump_cuts(cuts: Mapping[str, str], spec: Any) -> list[dict[str, str]]:
    return [{"name": name, "edges": edges} for name, edges in cuts.items()]


@dataclass(frozen=True)
class RegressionSpec(Spec):
    """A regression study (see `emg_lens.studies.regression`)."""

    WHERE: ClassVar[str] = "regression study"
    KIND: ClassVar[str] = "regression"
    # computed from the cells, not into them: changing them reuses every cell
    UNHASHED: ClassVar[tuple[str, ...]] = ("description", "stats")

    name: str
    recording: str
    target: str = "force"
    windows: Windows = field(default_factory=WINDOWS.copy)
    model: dict[str, int] = field(default_factory=lambda: dict(MODEL))
    train: dict[str, Any] = field(default_factory=lambda: dict(TRAIN))
    cuts: dict[str, str] = field(
        default_factory=dict, metadata={"key": "interventions", "dump": _dump_cuts}
    )
    stats: dict[str, Any] = field(default_factory=lambda: dict(STATS))
    description: str = ""

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        require_strings(data, ("recording",))
        target = data.get("target", "force")
        if not check_string(target, "target (the recording's extra channel, 'force')"):
            raise SpecError(
                f"target must name the recording's extra channel ('force'), got {target!r}"
            )
        return {
            "recording": data["recording"],
            "target": target,
            "windows": _section(data, "windows", WINDOWS),
            "model": _section(data, "model", MODEL),
            "train": _section(data, "train", TRAIN),
            "cuts": _cuts(data.get("interventions")),
            "stats": _section(data, "stats", STATS),
        }

    def _check(self) -> None:
        m, t, w = self.model, self.train, self.windows
        if m["d_model"] != m["d_head"] * m["n_heads"]:
            product = f"{m['d_head']} x {m['n_heads']}"
            raise SpecError(f"model.d_model = {m['d_model']} must be d_head x n_heads = {product}")
        if t["warmup_epochs"] >= t["epochs"]:
            raise SpecError(
                f"train.warmup_epochs = {t['warmup_epochs']} must be below train.epochs = "
                f"{t['epochs']} (the cosine phase after the warm-up would be empty)"
            )
        if w["window"] % w["bin"] or w["step"] % w["bin"]:
            sizes = f"windows.window = {w['window']} and windows.step = {w['step']}"
            raise SpecError(f"{sizes} must be multiples of windows.bin = {w['bin']}")

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> RegressionSpec:
        """The spec with ``study run``'s overrides (``--epochs``); any other is refused by its
        flag."""
        overrides = dict(overrides or {})
        other = sorted(set(overrides) - set(OVERRIDES))
        if other:
            flags = " ".join(f"--{k}" for k in other)
            why = "whose data are its `recording` and whose model its [model] table"
            takes = f"of the training flags it takes {' '.join(f'--{k}' for k in OVERRIDES)} only"
            raise ArgumentError(f"{flags}: {self.name} is a regression study, {why}; {takes}")
        if not overrides:
            return self
        return self.with_changes(train={**self.train, **overrides})
