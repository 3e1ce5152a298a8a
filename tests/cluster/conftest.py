"""The cluster tests run against a real SLURM scheduler (scripts/slurm_cluster.sh up, which .ci/run
does). Where there is none, every test here is skipped and the run says why in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.helpers import cluster_problem

HERE = Path(__file__).resolve().parent
_problem: dict[str, str | None] = {}


def _why_not() -> str | None:
    if "reason" not in _problem:
        _problem["reason"] = cluster_problem()
    return _problem["reason"]


@pytest.hookimpl(tryfirst=True)  # before -m selects: the markers must already be there
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if HERE in Path(str(item.fspath)).resolve().parents]
    for item in ours:  # real jobs on a scheduler: also in the slow group (make test-all, .ci/run)
        item.add_marker(pytest.mark.cluster)
        item.add_marker(pytest.mark.slow)
    reason = _why_not() if ours else None
    if reason:
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=f"cluster tests skipped: {reason}"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reason = _problem.get("reason")
    if reason:
        terminalreporter.write_line(f"cluster tests skipped: {reason}")
