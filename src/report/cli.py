"""The command line: ``python -m src.report <run or sweep folder> [more folders] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from src.report.build import build_report
from src.report.duplicates import mark_duplicates
from src.report.output import new_report_folder, publish
from src.report.runs import load_runs
from src.runs.folder import CONFIG, RECORD


def _usage() -> str:
    # The package docstring is the command's description, as it was for the one-module report.
    from src import report

    return report.__doc__ or ""


def cannot_write(out: Path, err: OSError) -> str:
    """One line for an output folder that cannot be written."""
    where = f" ({err.filename})" if err.filename and str(err.filename) != str(out) else ""
    return (f"cannot write the report to {out}: {err.strerror or err}{where}; no report written there (an "
            "earlier one is as it was); name a writable output folder with --out DIR")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.report", description=_usage().split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="run folders or sweep folders (searched recursively)")
    parser.add_argument("--out", help="output folder (default: <folder>/report for one folder, else a new "
                                      "outputs/reports/<time>_<id>)")
    args = parser.parse_args(argv)
    missing = [f for f in args.folders if not Path(f).exists()]
    if missing:  # a mistyped folder would silently drop its runs from every mean
        print(f"error: {missing[0]} does not exist (python -m src.report takes run or sweep folders); "
              "nothing written", file=sys.stderr)
        return 1
    runs = load_runs(args.folders)
    if not runs:
        print(f"error: no run folder ({RECORD} or {CONFIG}) under " + ", ".join(args.folders)
              + "; nothing written", file=sys.stderr)
        return 1
    runs, duplicates = mark_duplicates(runs)
    for line in duplicates:
        print(f"warning: {line}", file=sys.stderr)
    base = None  # several folders without --out: a new folder under it
    if args.out:
        out = Path(args.out)
    elif len(args.folders) == 1 and Path(args.folders[0]).is_dir():
        out = Path(args.folders[0]) / "report"
    else:
        out = base = Path("outputs/reports")
    try:
        if base is not None:
            out = new_report_folder(base)
        with publish(out) as staging:  # built aside, then put in place whole (src/report/output.py)
            build_report(runs, staging, args.folders)
    except OSError as err:  # a read-only run folder (the default output is inside it), a full disk
        print(f"error: {cannot_write(out, err)}", file=sys.stderr)
        return 1
    used = sum(r.usable for r in runs)
    print(f"report: {out / 'report.md'} ({used} run(s) used, {len(runs) - used} listed as not used)")
    if not used:
        print("error: no finished run with a test accuracy under " + ", ".join(args.folders), file=sys.stderr)
        return 1
    return 0
