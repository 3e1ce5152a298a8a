"""Which test figure each run contributes, and on how many test images (issue 27.8).

A run's own test may have scored part of the test set (``trainer.limit_test_batches``); a later
``python -m src.evaluate`` scores all of it. ``src.report.runs`` keeps the figure on more images;
this says, in ``report.md``, which figure the tables show and on how many images, and flags a
configuration whose seeds were tested on different numbers of images."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from src.report.groups import Group
from src.report.runs import EVALUATION, RECORD, Run


def _images(n: int | None) -> str:
    return f"{n:,} test images" if n else "an unrecorded number of test images"


def _source(source: str) -> str:
    if source == EVALUATION:
        return f"`{EVALUATION}` (the best checkpoint re-tested)"
    return f"the run's own test (`{RECORD}`)"


def images_cell(runs: Sequence[Run]) -> str:
    """The distinct test image counts of ``runs``, for a CSV cell (``?`` for a run that records none)."""
    counts = sorted({run.test_images for run in runs}, key=lambda n: (n is None, n or 0))
    return " ".join(str(n) if n else "?" for n in counts)


def figure_source_lines(runs: Sequence[Run], groups: Sequence[Group]) -> list[str]:
    """The sentences of ``report.md`` that name the test figures' source and image count."""
    used = [run for run in runs if run.usable]
    if not used:
        return []
    by_kind = Counter((run.test_source, run.test_images) for run in used)
    parts = [f"{count} run(s) from {_source(source)} on {_images(n)}"
             for (source, n), count in sorted(by_kind.items(), key=lambda kv: (kv[0][0] != RECORD, kv[0][1] or 0))]
    lines = ["Test figures shown: " + "; ".join(parts) + "."]
    replaced = [run for run in used if run.evaluated and run.record.get("training_test_images") not in
                (None, run.test_images)]
    if replaced:
        own = sorted({int(run.record["training_test_images"]) for run in replaced})
        lines.append(f"For {len(replaced)} of them the run's own test had scored {', '.join(f'{n:,}' for n in own)} "
                     "images (`trainer.limit_test_batches` or a changed test set): the figure on all of them is "
                     "shown, and `runs.csv` has both (`training_test_acc`, `training_test_images`).")
    kept = [run for run in used if run.record.get("evaluation_not_used")]
    if kept:
        lines.append(f"{len(kept)} run(s) show their own test's figure beside an `{EVALUATION}` that "
                     "tested fewer images (" + "; ".join(str(run.record["evaluation_not_used"]) for run in kept[:3])
                     + ").")
    mixed = [f"{group.label} ({images_cell(group.runs)})" for group in groups
             if len({run.test_images for run in group.runs}) > 1]
    if mixed:
        lines.append("**Test figures on different numbers of test images are averaged together in:** "
                     + ", ".join(mixed) + ".")
    return lines
