"""`load_spec`: read a study from a TOML or YAML file or a dict, dispatching on its ``kind``.

The one module that knows both spec kinds: ablation studies (`emg_lens.studies.spec`) and
training studies (`emg_lens.studies.training.spec`), so neither spec module imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emg_lens.errors import SpecError
from emg_lens.studies.files import read_study_file
from emg_lens.studies.spec import StudySpec
from emg_lens.studies.training.spec import TrainingStudySpec

__all__ = ["KINDS", "load_spec"]

KINDS = ("ablation", "training")


def load_spec(
    source: str | Path | dict | StudySpec | TrainingStudySpec,
) -> StudySpec | TrainingStudySpec:
    """Read a study from a TOML or YAML file, a dict, or pass a spec through. The key
    ``kind`` picks the spec: ``"ablation"`` (the default) gives a `StudySpec`, ``"training"`` a
    `emg_lens.studies.training.spec.TrainingStudySpec`.

    >>> load_spec({"kind": "ablation", "name": "t", "models": "demo",
    ...            "interventions": [{"name": "uni", "edges": "unimodal"}]}).models
    'demo'
    """
    if isinstance(source, StudySpec | TrainingStudySpec):
        return source
    if isinstance(source, dict):
        return _from_dict(source, ".")
    return read_study_file(source, _from_dict)


def _from_dict(data: Any, source_dir: str | Path) -> StudySpec | TrainingStudySpec:
    """Dispatch on ``kind``: ablation studies (no ``kind`` needed) or training studies."""
    if not isinstance(data, dict):
        return StudySpec.from_dict(data)  # its error names what a spec must be
    kind = data.get("kind", "ablation")
    if kind == "discovery":  # a layer above studies: emg_lens.discovery reads it
        raise SpecError(
            "kind = 'discovery' is a discovery study: run it with "
            "emg_lens.discovery.study.run_discovery, `emg-lens study run` or `emg-lens discover`"
        )
    if kind == "training":
        return TrainingStudySpec.from_dict(data)
    if kind != "ablation":
        raise SpecError(f"kind = {kind!r}; accepted: {[*KINDS, 'discovery']}")
    ablation = {k: v for k, v in data.items() if k != "kind"}
    return StudySpec.from_dict(ablation, source_dir=source_dir)
