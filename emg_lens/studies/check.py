"""Checking a study before it runs (``emg-lens study check``), what every kind's own check
builds on: what a study is checked against (`check_target`), the Python files it names, never
run (`code_note`), and rows laid out as the command line prints them (`text_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from emg_lens.errors import EmgLensError, SpecError

CHECK_PRESET = "demo"
"""The layout a study is checked against when it finds no models."""

PRESET_MODELS = {"tinymyo": "TinyMyo"}
"""The class of a preset's layout; IsoNet for the others."""

CHECK_LAYERS, CHECK_HEADS = 5, 8
"""The size of the preset's model a study is checked against when it finds no models."""


def text_table(rows: Sequence[dict], columns: Sequence[str], floatfmt: str = ".3f") -> str:
    """``rows`` as right-aligned columns under a header.

    >>> print(text_table([{"subject": 1, "accuracy": 0.5}], ["subject", "accuracy"]))
    subject  accuracy
          1     0.500
    """

    def fmt(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


class CheckText(str):
    """What ``emg-lens study check`` prints, and why ``study run`` would stop on the same
    study (``stops``; None: it would run): the command exits non-zero then, after printing.

    >>> CheckText("t: 1 interventions", stops="models: /nowhere does not exist").stops
    'models: /nowhere does not exist'
    """

    stops: str | None

    def __new__(cls, text: str, stops: str | None = None) -> CheckText:
        checked = super().__new__(cls, text)
        checked.stops = stops
        return checked


class Target(NamedTuple):
    """What a study is checked against (see `check_target`)."""

    layout: Any
    n_layers: int
    n_heads: int
    source: str
    n_subjects: int | None  # None: no models found, and no ``subjects``
    model: Any = None  # the first model, built without its weights (None: no models found)
    from_models: bool = False  # False: a preset's layout stands in for the models
    stops: str | None = None  # why `study run` would stop: no models found


def check_target(
    spec: Any,
    *,
    models: str | Path | None = None,
    preset: str | None = None,
    layers: int | None = None,
    heads: int | None = None,
) -> Target:
    """The token layout, layers and heads a study is checked against, what they are, and how
    many subjects it runs: the study's models' (``models``, else ``spec.models``: the first
    one's class and config; the subjects found, or those of ``subjects``), or, with no
    ``subject_<N>/`` folder found, the layout of ``preset``'s model (`PRESET_MODELS`, else
    IsoNet; default `CHECK_PRESET`) at ``layers`` and ``heads`` (default `CHECK_LAYERS`,
    `CHECK_HEADS`; the subjects of ``subjects``, else unknown).

    The folder is resolved as `study run` resolves it; a study's own folder without models is
    named with the reason the run would stop (the ``source`` every message quotes), and a
    ``models`` given here without any is refused. Every model is checked as the run would
    open it, weights' header included (`emg_lens.checkpoints.check_checkpoint`), so a damaged
    checkpoint, or one holding the user's modules in a study without ``modules``, is reported
    here, before the other subjects run; no code of the study runs."""
    import torch

    from emg_lens.checkpoints import check_checkpoint, user_modules_of
    from emg_lens.config import EncoderConfig
    from emg_lens.model_folder import find_models, models_folder, no_models
    from emg_lens.models import MODEL_CLASSES
    from emg_lens.user_code import require_builder

    given, models = models is not None, models or spec.models
    folder = models_folder(models)
    n_subjects = None if spec.subjects is None else len(spec.subjects)
    if not any(p.is_dir() for p in folder.glob("subject_*")):
        if given:  # asked for by name: not a folder to stand in for
            raise SpecError(no_models(models))
        preset = preset or CHECK_PRESET
        layers, heads = layers or CHECK_LAYERS, heads or CHECK_HEADS
        name = PRESET_MODELS.get(preset, "IsoNet")
        cfg = EncoderConfig.preset(preset, device="cpu")
        # the preset's model at layers and heads, for its readout (structural zeros depend on
        # the layout and the readout, never on the weights): where that size cannot be built,
        # the preset's own size gives the layout alone
        try:
            shaped = EncoderConfig.preset(preset, device="cpu", n_layers=layers, n_heads=heads)
            model = MODEL_CLASSES[name](shaped).eval()
        except EmgLensError:
            model = None
        layout = model.layout if model is not None else MODEL_CLASSES[name](cfg).layout
        a = "an" if name[0] in "AEIOU" else "a"
        source = (
            f"--layers {layers} --heads {heads} and the layout of {a} {name} of preset "
            f"{preset!r} (no models found; `study run` would stop: {no_models(models)})"
        )
        return Target(layout, layers, heads, source, n_subjects, model, stops=no_models(models))
    found = find_models(folder)
    n_subjects = n_subjects or len(found)
    infos = {path: check_checkpoint(path) for path in found.values()}
    if spec.modules is None:
        require_builder(infos, None)
    info = next(iter(infos.values()))
    cls = MODEL_CLASSES[info["model_class"]]  # known: check_checkpoint read it
    cfg = EncoderConfig.from_dict({**info["config"], "device": "cpu"})
    stand_ins = {name: torch.nn.Module() for name in user_modules_of(info)}
    model = cls(cfg, **info.get("model_kwargs", {}), **stand_ins)
    source = "the models' size and layout"
    return Target(model.layout, cfg.n_layers, cfg.n_heads, source, n_subjects, model.eval(), True)


def code_note(spec: Any, study_file: str | Path | None) -> list[str]:
    """The lines saying which Python files a study would run, with their SHA-256, and the
    command that consents to exactly them (``study_file``: the path the study is run by);
    none when it names no file. The files are located and hashed, never executed."""
    from emg_lens.user_code import consent_command, describe_code

    code = spec.code_files()
    if not code:
        return []
    consent = consent_command(study_file or f"{spec.name}.toml", code)
    return [
        "Python code this study runs (only with `study run --allow-code`):",
        describe_code(code),
        f"To run exactly these files, and refuse them once changed:\n  {consent}",
    ]
