"""Which machine, commit, precision and command produced each run of the report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from src.report.runs import Run


def segments(run: Run) -> list[dict[str, Any]]:
    """The run's training segments (one per start or resume); a record without the list is one."""
    listed = run.record.get("segments")
    if isinstance(listed, list) and listed:
        return [s for s in listed if isinstance(s, dict)]
    return [{key: run.record.get(key) for key in ("command", "commit", "machine", "started_at")}]


def _distinct(run: Run, key: str) -> list[str]:
    seen: list[str] = []
    for segment in segments(run):
        value = str(segment.get(key) or "?")
        if value not in seen:
            seen.append(value)
    return seen


def machines(run: Run) -> str:
    """The run's machine strings in full, in segment order (a resumed run may name several)."""
    return " + ".join(_distinct(run, "machine"))


class MachineLegend:
    """Short names M1, M2, ... for the report's distinct machine strings (CPU model, threads,
    device), so that tables stay narrow; the Provenance section lists each name's full string."""

    def __init__(self, runs: Sequence[Run]) -> None:
        distinct = sorted({m for run in runs if run.usable for m in _distinct(run, "machine")})
        self.names = {machine: f"M{i}" for i, machine in enumerate(distinct, start=1)}

    def of(self, run: Run) -> str:
        """The run's machine names, ``M1 + M2`` for a run whose segments trained on two machines."""
        return " + ".join(self.names.get(m, m) for m in _distinct(run, "machine"))

    def lines(self) -> list[str]:
        return [f"- **{name}**: `{machine}`" for machine, name in self.names.items()]


def commits(run: Run) -> str:
    return ", ".join(c[:7] for c in _distinct(run, "commit"))


def provenance_section(runs: Sequence[Run], label: Callable[[Run], str],
                       table: Callable[[list[str], list[list[Any]]], str],
                       legend: MachineLegend | None = None) -> list[str]:
    """One row per used run; the machines and the commands are listed once below the table."""
    used = [run for run in runs if run.usable]
    if not used:
        return []
    legend = legend or MachineLegend(runs)
    commands: list[str] = []
    rows = []
    for run in sorted(used, key=lambda r: (label(r), str(r.seed))):
        numbers = []
        for command in _distinct(run, "command"):
            if command not in commands:
                commands.append(command)
            numbers.append(str(commands.index(command) + 1))
        wall = run.value("wall_time_s")
        rows.append([label(run), run.seed, legend.of(run), run.record.get("precision", "?"),
                     run.record.get("threads", "?"), commits(run), len(segments(run)),
                     f"{wall / 60:.1f}" if wall is not None else "–", ", ".join(numbers)])
    md = ["## Provenance", "",
          "Each used run: the machine(s) it trained on, its precision and intra-op threads, the commit(s) of "
          "its segments (a resumed run has one segment per start), and its training wall time summed over "
          "segments. Wall times depend on what else the machine ran at the time.", "",
          table(["run", "seed", "machine", "precision", "threads", "commit", "segments", "wall time (min)",
                 "command"], rows), ""]
    md += ["Machines (host, architecture, CPU or GPU model, intra-op threads, device):", ""]
    md += legend.lines() + [""]
    md += ["Commands:", ""]
    md += [f"{i}. `{command}`" for i, command in enumerate(commands, 1)] + [""]
    return md
