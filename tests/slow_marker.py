"""The ``slow`` marker kept true: a test whose setup and call take over `SLOW_S` seconds is
marked ``@pytest.mark.slow`` (so ``make test-fast``, ``-m "not slow"``, leaves it out). At the
end of a run the unmarked tests over the limit are listed; under CI (``CI`` set) one over
`CI_LIMIT_S` fails the run, since a 2-core machine at full load runs a 2 s test in several.

The hooks below are tests/conftest.py's (`configure` called by its ``pytest_configure``);
under pytest-xdist they count on the controller, which receives every worker's reports.
"""

from __future__ import annotations

import os

import pytest

SLOW_S = 2.0
"""'slow': over 2 s of setup and call on one idle core (MNE and scikit-learn keep such a tier)."""
CI_LIMIT_S = 10.0
"""An unmarked test over this, measured under the suite's own load, fails a CI run."""

_durations: dict[str, float] = {}
_marked: set[str] = set()
_is_worker = False


def offenders(
    durations: dict[str, float], marked: set[str], limit: float
) -> list[tuple[str, float]]:
    """The unmarked tests over ``limit`` seconds, slowest first.

    >>> offenders({"a": 3.0, "b": 12.0, "c": 0.1, "d": 9.0}, {"d"}, 2.0)
    [('b', 12.0), ('a', 3.0)]
    """
    over = [(nodeid, s) for nodeid, s in durations.items() if nodeid not in marked and s > limit]
    return sorted(over, key=lambda item: -item[1])


def configure(config: pytest.Config) -> None:
    """Called by tests/conftest.py's ``pytest_configure``."""
    global _is_worker
    _is_worker = hasattr(config, "workerinput")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _is_worker or report.when not in ("setup", "call"):
        return
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    if "slow" in report.keywords:
        _marked.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _is_worker or not os.environ.get("CI") or exitstatus != 0:
        return
    if offenders(_durations, _marked, CI_LIMIT_S):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    over = offenders(_durations, _marked, SLOW_S)
    if _is_worker or not over:
        return
    terminalreporter.section(f"unmarked tests over {SLOW_S:g} s: mark them slow")
    for nodeid, seconds in over:
        flag = "  (fails in CI)" if seconds > CI_LIMIT_S else ""
        terminalreporter.line(f"{seconds:6.1f} s  {nodeid}{flag}")
