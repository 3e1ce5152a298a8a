"""Runs split by one setting, each side against the first: ``python -m src.report.by_setting <folders>
--by trainer.precision`` prints mean ± std over seeds, Welch's t-test and a bootstrap CI per value.

For questions the study report does not ask (does bf16 change accuracy? do 1 and 2 threads train
alike?): the runs differ in one setting and should agree in everything else, which is checked.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any

from src.report.duplicates import mark_duplicates
from src.report.format import num, pct, pvalue, table
from src.report.groups import Group
from src.report.runs import Run, load_runs
from src.report.stats import bootstrap_ci, mean_std, welch

ACCURACIES = ("test_acc", "test_acc_macro", "val_acc_best")


def setting(run: Run, key: str) -> str:
    """``key`` of the run's resolved config (dotted path), else of its record; ``?`` when neither has it."""
    node: Any = run.config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        node = run.record.get(key)
    return "?" if node is None else str(node)


def split(runs: Sequence[Run], key: str) -> dict[str, list[Run]]:
    sides: dict[str, list[Run]] = {}
    for run in runs:
        if run.usable:
            sides.setdefault(setting(run, key), []).append(run)
    return sides


def compare_table(sides: dict[str, list[Run]], key: str, metric: str = "test_acc") -> list[str]:
    """Markdown: one row per value of ``key``; differences against the first value's runs."""
    values = list(sides)
    reference = [v for v in (r.value(metric) for r in sides[values[0]]) if v is not None]
    rows = []
    for value in values:
        runs = sides[value]
        scores = [v for v in (r.value(metric) for r in runs) if v is not None]
        mean, std = mean_std(scores)
        wall, wall_std = mean_std([w / 60 for w in (r.value("wall_time_s") for r in runs) if w is not None])
        if value == values[0]:
            diff, ci, p = "(reference)", "", ""
        else:
            low, high = bootstrap_ci(scores, reference)
            diff = f"{100 * (mean - mean_std(reference)[0]):+.2f}"
            ci = "–" if math.isnan(low) else f"[{100 * low:+.2f}, {100 * high:+.2f}]"
            p = pvalue(welch(scores, reference)[1])
        seeds = " ".join(str(s) for s in sorted((r.seed for r in runs), key=str))
        rows.append([f"`{key}={value}`", len(scores), seeds, pct(mean, std), diff, ci, p, num(wall, wall_std)])
    return [table([key, "n", "seeds", f"{metric} (%)", "difference (pp)", "bootstrap 95% CI (pp)", "Welch p",
                   "wall time (min)"], rows)]


def other_differences(sides: dict[str, list[Run]], key: str) -> dict[str, list[str]]:
    """Settings besides ``key`` and the seed that differ between the runs (should be none)."""
    every = Group(("", "", "", "", None), [r for runs in sides.values() for r in runs])
    return {k: v for k, v in every.differing_settings().items() if k != key}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.report.by_setting", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="run folders or sweep folders (searched recursively)")
    parser.add_argument("--by", required=True, help="the setting that splits the runs, e.g. trainer.precision")
    parser.add_argument("--metric", default="test_acc", choices=ACCURACIES, help="default test_acc")
    parser.add_argument("--reference", help="the value the others are compared with (default: the first found)")
    args = parser.parse_args(argv)
    runs, _ = mark_duplicates(load_runs(args.folders))
    sides = split(runs, args.by)
    if not sides:
        print(f"error: no finished run with a test accuracy under {', '.join(args.folders)}", file=sys.stderr)
        return 1
    if args.reference is not None:
        if args.reference not in sides:
            print(f"error: --reference {args.reference}: no finished run has {args.by}={args.reference} "
                  f"(found: {', '.join(sides)})", file=sys.stderr)
            return 2
        sides = {args.reference: sides[args.reference], **sides}
    print("\n".join(compare_table(sides, args.by, args.metric)))
    for name, values in other_differences(sides, args.by).items():
        print(f"warning: the runs also differ in {name}: {', '.join(values)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
