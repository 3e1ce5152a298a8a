"""One table per sweep: ``summary.json`` and ``summary.md`` in the sweep folder.

``SweepSummary`` is a Hydra callback (``conf/hydra/default.yaml: callbacks``); at the end of a
multirun it lists every job folder with its overrides, status, ``val_acc_best`` and ``test_acc``,
and the failed jobs with their reasons (from each job's run record, ``src.runs.folder``).

For a sweep that did not reach its end (Ctrl-C, a killed process), build it by hand::

    python -m src.sweep_summary outputs/multiruns/<sweep folder>
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.errors import RunFolderError
from src.runs.folder import RECORD, RunFolder, find_runs
from src.utils.io import write_json_atomic, write_text_atomic
from src.utils.text import markdown_cell

log = logging.getLogger(__name__)

METRICS = ("val_acc_best", "test_acc")


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _job_num(folder: Path) -> int | None:
    hydra_cfg = _load_yaml(RunFolder(folder).hydra_copy("hydra"))
    try:
        return int(hydra_cfg["hydra"]["job"]["num"])
    except (TypeError, KeyError, ValueError):
        prefix = folder.name.split("_", 1)[0]
        return int(prefix) if prefix.isdigit() else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def job_folders(sweep_dir: Path) -> list[Path]:
    """Every job's run folder below ``sweep_dir`` (``src.runs.folder.find_runs``)."""
    return [folder.path for folder in find_runs(sweep_dir) if folder.path != sweep_dir.resolve()]


def job_entry(sweep_dir: Path, folder: Path) -> dict[str, Any]:
    run = RunFolder(folder)
    overrides = _load_yaml(run.hydra_copy("overrides"))
    entry: dict[str, Any] = {
        "job": _job_num(folder),
        "folder": str(folder.relative_to(sweep_dir)),
        "overrides": [str(o) for o in overrides] if isinstance(overrides, list) else [],
    }
    try:
        record = run.read_record()
    except RunFolderError as err:
        record = {"status": "unreadable", "reason": str(err)}
    if record is None:
        record = {"status": "missing", "reason": f"no {RECORD}: the job ended before its run started"}
    status = record.get("status", "unknown")
    if status == "running":  # at the end of a sweep: the process died without a word (SIGKILL, OOM)
        record.setdefault("reason", "the record still says running: the job was killed or is still going")
    entry["status"] = status
    for key in METRICS:
        entry[key] = _number(record.get(key))
    entry["wall_time_s"] = _number(record.get("wall_time_s"))
    if record.get("reason"):
        entry["reason"] = str(record["reason"])
    return entry


def summarize(sweep_dir: str | Path) -> dict[str, Any]:
    """Scan ``sweep_dir``; write ``summary.json`` and ``summary.md`` there; return the summary."""
    sweep_dir = Path(sweep_dir).resolve()
    jobs = [job_entry(sweep_dir, f) for f in job_folders(sweep_dir)]
    jobs.sort(key=lambda j: (j["job"] is None, j["job"] if j["job"] is not None else 0, j["folder"]))
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    failures = [
        {k: job.get(k) for k in ("job", "folder", "overrides", "status", "reason")}
        for job in jobs
        if job["status"] != "finished"
    ]
    summary = {"sweep_dir": str(sweep_dir), "num_jobs": len(jobs), "counts": counts, "jobs": jobs, "failures": failures}
    optimization = _load_yaml(sweep_dir / "optimization_results.yaml")  # written by the Optuna sweeper
    if isinstance(optimization, dict):
        summary["optimization"] = optimization
    write_json_atomic(sweep_dir / "summary.json", summary)
    write_text_atomic(sweep_dir / "summary.md", to_markdown(summary))
    return summary


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return markdown_cell(value)


def to_markdown(summary: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
    lines = [
        f"# Sweep summary: {Path(summary['sweep_dir']).name}",
        "",
        f"{summary['num_jobs']} jobs: {counts or 'none'}.",
        "",
        "| job | folder | overrides | status | val_acc_best | test_acc |",
        "|---:|---|---|---|---:|---:|",
    ]
    for job in summary["jobs"]:
        cells = [job["job"], job["folder"], " ".join(job["overrides"]), job["status"], job["val_acc_best"],
                 job["test_acc"]]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    best = summary.get("optimization") or {}
    if "best_params" in best:
        items = best["best_params"].items()
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items)
        lines += ["", f"Best ({best.get('name', 'search')}): {params} -> {_cell(best.get('best_value'))}"]
    if summary["failures"]:
        lines += ["", "## Failures", ""]
        for f in summary["failures"]:
            lines.append(f"- job {_cell(f['job'])} (`{f['folder']}`, {f['status']}): {_cell(f.get('reason'))}")
    return "\n".join(lines) + "\n"


# The latest summary this process wrote; ``src.cli.cli`` turns unfinished jobs into a
# non-zero exit status.
LAST: dict[str, Any] = {}


def unfinished_jobs() -> int:
    """How many jobs of this process's sweep did not finish (0 when no sweep ran)."""
    return sum(n for status, n in LAST.get("counts", {}).items() if status != "finished")


class SweepSummary(Callback):
    """Hydra callback: rewrites the sweep's summary after every job (so a sweep stopped part-way
    still has one) and when the multirun ends."""

    def _write(self, config: DictConfig) -> dict[str, Any] | None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            log.warning(f"sweep summary: {sweep_dir} does not exist")
            return None
        summary = summarize(sweep_dir)
        LAST.clear()
        LAST.update(summary)
        return summary

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode != RunMode.MULTIRUN:
            return  # a single run has no sweep folder (Hydra calls this hook for it too)
        try:
            self._write(config)
        except OSError as err:  # a full disk must not stop the sweep's other jobs
            log.warning(f"sweep summary not written: {err}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summary = self._write(config)
        if summary is not None:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            log.info(f"sweep summary: {summary['num_jobs']} jobs {summary['counts']} -> {sweep_dir / 'summary.md'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="(Re)build summary.json / summary.md for a sweep folder.")
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args(argv)
    summary = summarize(args.sweep_dir)
    print(to_markdown(summary), end="")


if __name__ == "__main__":
    main()
