"""`DiscoverySpec`: a discovery study's file (``kind = "discovery"``), read and checked; what
it runs is `emg_lens.discovery.study`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from emg_lens.discovery.family import default_family, family_from_edges
from emg_lens.discovery.metrics import check_metric
from emg_lens.discovery.screen import IG_STEPS, MISS_SAMPLE, check_estimator
from emg_lens.discovery.search import check_method, check_tau
from emg_lens.edges import parse
from emg_lens.errors import ArgumentError, SpecError, check_bool, check_int
from emg_lens.studies.spec_base import Spec, file_key, is_none
from emg_lens.studies.validate import (
    check_list,
    check_modules,
    check_string,
    check_subjects,
    require_strings,
)
from emg_lens.user_code import CodeFile, locate_code


@dataclass(frozen=True)
class DiscoverySpec(Spec):
    """A discovery study: parameters only (`emg_lens.discovery.study` shows a file).

    >>> DiscoverySpec.from_dict({"name": "c", "models": "demo", "tau": 0.1}).tau
    0.1
    >>> DiscoverySpec.from_dict({"name": "c", "models": "demo", "metric": "accuracy"})
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: metric = 'accuracy' is not differentiable (screening linearises the metric; the accuracy effect is reported beside it): use 'margin' (the true class's logit margin: correct when > 0) or 'logprob'
    >>> DiscoverySpec.from_dict({"name": "c", "models": "demo"}).with_changes(tau=0.1).tau
    0.1
    """  # noqa: E501

    WHERE: ClassVar[str] = "discovery study"
    KIND: ClassVar[str] = "discovery"
    # how checkpoints load, not what the study is: in the provenance instead
    UNHASHED: ClassVar[tuple[str, ...]] = ("modules",)

    name: str
    models: str
    metric: str = "margin"
    return_type: str = "logits"
    tau: float = 0.05
    method: str = "greedy"
    # the screen's estimator (`emg_lens.discovery.screen.ESTIMATORS`); a plain screen's spec
    # keeps the fingerprint it had before there was a choice
    screen: str = field(default="plain", metadata=file_key(omit=lambda v, spec: v == "plain"))
    ig_steps: int = field(
        default=IG_STEPS, metadata=file_key(omit=lambda v, spec: spec.screen != "ig")
    )
    verify_top: int = 10
    # unmeasured candidates verify draws to bound what the ranking missed (`miss_note`); the
    # default keeps the fingerprint a spec had before it could be chosen
    verify_sample: int = field(
        default=MISS_SAMPLE, metadata=file_key(omit=lambda v, spec: v == MISS_SAMPLE)
    )
    family: tuple[str, ...] | None = field(  # None: default_family; else edge expressions
        default=None,
        metadata=file_key(dump=lambda f, spec: "default" if f is None else list(f)),
    )
    per_head: bool = True
    resamples: int = 0
    subjects: tuple[int, ...] | None = field(default=None, metadata=file_key(omit=is_none))
    description: str = ""
    # "models.py:build_modules", in the study's project (see the module)
    modules: str | None = field(default=None, metadata=file_key(omit=is_none))
    # the study file's folder
    source_dir: str | Path = field(default=".", compare=False, metadata=file_key(saved=False))

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        require_strings(data, ("models",))
        try:  # discover's and screen's own checks; each message names its key
            metric = check_metric(data.get("metric", "margin"))
            tau = check_tau(data.get("tau", 0.05))
            method = check_method(data.get("method", "greedy"))
            screen, ig_steps = data.get("screen", "plain"), data.get("ig_steps", IG_STEPS)
            estimator, ig_steps = check_estimator(screen, ig_steps)
        except ArgumentError as exc:
            raise SpecError(str(exc)) from exc
        if estimator != "ig" and "ig_steps" in data:
            why = f"the {estimator} screen takes none: remove it, or set screen = 'ig'"
            raise SpecError(f"ig_steps = {data['ig_steps']!r} is for screen = 'ig'; {why}")
        per_head = check_bool(data.get("per_head", True), "per_head", SpecError)
        subjects = data.get("subjects")
        return {
            "models": data["models"],
            "metric": metric,
            "return_type": check_string(data.get("return_type", "logits"), "return_type"),
            "tau": tau,
            "method": method,
            "screen": estimator,
            "ig_steps": ig_steps,
            "verify_top": check_int(data.get("verify_top", 10), "verify_top", 1, error=SpecError),
            "verify_sample": check_int(
                data.get("verify_sample", MISS_SAMPLE), "verify_sample", error=SpecError
            ),
            "family": _family(data.get("family", "default")),
            "per_head": per_head,
            "resamples": check_int(data.get("resamples", 0), "resamples", error=SpecError),
            "subjects": None if subjects is None else check_subjects(subjects, "subjects"),
            "modules": check_modules(data.get("modules")),
        }

    def code_files(self) -> list[CodeFile]:
        """The Python file the study would run (``modules``), located below ``source_dir``
        and hashed, never executed (`emg_lens.user_code`)."""
        if self.modules is None:
            return []
        return [locate_code(self.modules, self.source_dir, key="modules")]

    def candidates(self, model: Any) -> list:
        """This study's candidate family on ``model``."""
        if self.family is None:
            return default_family(model)
        return family_from_edges(model, self.family, per_head=self.per_head)


def _family(value: Any) -> tuple[str, ...] | None:
    if value == "default":
        return None
    out = []
    accepted = "'default' or a non-empty list of edge expressions"
    for i, expr in enumerate(check_list(value, "family", accepted)):
        try:
            out.append(str(parse(check_string(expr, f"family[{i}] (an edge expression)"))))
        except SpecError as exc:
            raise SpecError(f"family[{i}]: {exc}") from exc
    return tuple(out)
