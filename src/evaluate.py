"""Evaluate finished runs again without training: ``python -m src.evaluate PATH... [key=value...]``.

PATH is a run folder, a sweep folder (every finished run below it) or a checkpoint file. Each run
is re-tested from its validation-selected checkpoint and every analysis is re-run
(``src.training.evaluation``) on all of its test set; the result is written into the run folder,
with the number of test images it used beside the number the run's own test used. A run folder
that cannot be written (a read-only mount) is one line, and nothing is written into it.
Runs that are not finished are skipped, runs that cannot be evaluated (a damaged checkpoint, a
missing file) are listed with the reason, and the others go on. ``key=value`` arguments override
keys of each run's config (e.g. ``trainer.accelerator=cpu``, ``data.root=/data``).
Exit status: 0 when every finished run was evaluated, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from src.errors import CheckpointError, EvaluationError
from src.runs.folder import RECORD, RunFolder
from src.training.evaluation import Target, evaluate, find_targets


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if isinstance(err, (EvaluationError, CheckpointError)):  # already written for the user
        return first
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _summary(evaluation: dict) -> str:
    retrieval = evaluation.get("retrieval") or {}
    images = evaluation.get("test_images")
    shown = [f"test acc {evaluation['test_acc']:.4f}" + (f" on {images} test images" if images else "")]
    own, own_images = evaluation.get("training_test_acc"), evaluation.get("training_test_images")
    if isinstance(own, float) and own_images and own_images != images:  # limit_test_batches cut the run's test
        shown.append(f"the run's own test {own:.4f} on {own_images}")
    if isinstance(retrieval.get("map_at_r"), float):
        shown.append(f"MAP@R {retrieval['map_at_r']:.4f}")
    return ", ".join(shown)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH | key=value",
                        help="run folders, sweep folders or checkpoints; key=value overrides a config key")
    args = parser.parse_args(argv)
    overrides = [p for p in args.paths if "=" in p]
    paths = [p for p in args.paths if "=" not in p]
    if not paths:
        parser.error("give at least one run folder, sweep folder or checkpoint")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)

    targets: list[Target] = []
    broken: list[tuple[str, str]] = []
    for path in paths:
        try:
            targets += find_targets(path)
        except EvaluationError as err:
            broken.append((path, str(err)))
    evaluated, skipped = 0, []
    for target in targets:
        status = RunFolder(target.run_dir).readable_record().get("status")
        if target.checkpoint is None and status != "finished":
            why = f"training status is {status}" if status else f"no readable {RECORD}"
            skipped.append((str(target.run_dir), why))
            continue
        try:
            out, evaluation = evaluate(target, overrides)
        except Exception as err:  # one broken run never stops the others
            broken.append((str(target.run_dir), _one_line(err)))
            print(f"error: {target.run_dir}: {_one_line(err)}", file=sys.stderr)
            continue
        evaluated += 1
        print(f"evaluated {target.run_dir}: {_summary(evaluation)} -> {out.name}")
    for where, why in skipped:
        print(f"skipped {where}: {why}")
    print(f"{evaluated} run(s) evaluated, {len(skipped)} skipped, {len(broken)} could not be evaluated")
    for where, why in broken:
        print(f"  not evaluated: {where}: {why}")
    return 0 if evaluated and not broken else 1


if __name__ == "__main__":
    sys.exit(main())
