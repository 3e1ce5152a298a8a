"""One summary row per configuration (the numbers behind summary.csv and the markdown tables), and
the CSV files of the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from src.report.figure_source import images_cell
from src.report.format import write_csv
from src.report.groups import Group
from src.report.provenance import machines, segments
from src.report.runs import Run
from src.report.stats import Comparison, confused_pairs, mean_std
from src.utils.text import finite_number as _number

GEOMETRY_KEYS = ("max_intra_deg", "min_inter_deg", "mean_to_center_deg")
OPEN_SET_KEYS = ("roc_auc", "tar_far1e-2", "tar_far1e-3", "recall_at_1")
RETRIEVAL_KEYS = ("precision_at_1", "r_precision", "map_at_r", "nmi", "ami")
RETRIEVAL_HEADERS = ("P@1", "R-precision", "MAP@R", "NMI", "AMI")


def summary_row(group: Group) -> dict[str, Any]:
    row: dict[str, Any] = {
        "configuration": group.label, "experiment": group.key[0], "data": group.key[1], "backbone": group.key[2],
        "loss": group.loss, "m": group.m, "n_runs": len(group.runs), "seeds": " ".join(map(str, group.seeds())),
    }
    for name in ("test_acc", "test_acc_leaky", "test_acc_macro", "val_acc_best", "epochs", "wall_time_s"):
        row[f"{name}_mean"], row[f"{name}_std"] = mean_std(group.values(name))
    row["test_images"] = images_cell(group.runs)  # the test figures' image counts (two: mixed)
    for name in GEOMETRY_KEYS:
        row[f"geometry_{name}_mean"], row[f"geometry_{name}_std"] = mean_std(group.nested_values("geometry", name))
    holds = [run.record["geometry"].get("criterion_holds") for run in group.runs
             if isinstance(run.record.get("geometry"), dict) and "criterion_holds" in run.record["geometry"]]
    row["geometry_criterion_holds"] = f"{sum(bool(h) for h in holds)}/{len(holds)}" if holds else ""
    for name in OPEN_SET_KEYS:
        row[f"open_set_{name}_mean"], row[f"open_set_{name}_std"] = mean_std(group.nested_values("open_set", name))
    for name in RETRIEVAL_KEYS:
        row[f"retrieval_{name}_mean"], row[f"retrieval_{name}_std"] = mean_std(group.nested_values("retrieval", name))
        held_out = [v for v in (run.open_set_retrieval(name) for run in group.runs) if v is not None]
        row[f"open_set_retrieval_{name}_mean"], row[f"open_set_retrieval_{name}_std"] = mean_std(held_out)
    return row


def write_csvs(out: Path, runs: Sequence[Run], groups: Sequence[Group], summaries: Sequence[dict[str, Any]],
                comparisons: dict[int, Comparison]) -> None:
    header = ["folder", "status", "reason", "experiment", "data", "backbone", "loss", "m", "seed", "test_acc",
              "test_acc_leaky", "test_acc_macro", "val_acc_best", "epochs", "wall_time_s",
              *[f"geometry_{k}" for k in GEOMETRY_KEYS], "geometry_criterion_holds",
              *[f"open_set_{k}" for k in OPEN_SET_KEYS], *[f"retrieval_{k}" for k in RETRIEVAL_KEYS],
              *[f"open_set_retrieval_{k}" for k in RETRIEVAL_KEYS], "evaluated_at", "commit",
              "machine", "precision", "threads", "segments", "test_source", "test_images", "training_test_acc",
              "training_test_images"]
    rows = []
    for run in runs:
        geometry = run.record.get("geometry") if isinstance(run.record.get("geometry"), dict) else {}
        rows.append([
            str(run.folder), run.status, run.reason, run.experiment, run.data, run.backbone, run.loss, run.m, run.seed,
            run.value("test_acc"), run.value("test_acc_leaky"), run.value("test_acc_macro"),
            run.value("val_acc_best"), run.value("epochs"), run.value("wall_time_s"),
            *[run.nested("geometry", k) for k in GEOMETRY_KEYS], geometry.get("criterion_holds"),
            *[run.nested("open_set", k) for k in OPEN_SET_KEYS], *[run.nested("retrieval", k) for k in RETRIEVAL_KEYS],
            *[run.open_set_retrieval(k) for k in RETRIEVAL_KEYS], run.record.get("evaluated_at"),
            run.record.get("commit"), machines(run), run.record.get("precision"), run.record.get("threads"),
            len(segments(run)), run.test_source if run.usable else "", run.test_images,
            _number(run.record.get("training_test_acc")), run.record.get("training_test_images"),
        ])
    write_csv(out / "runs.csv", header, rows)
    if summaries:
        keys = list(summaries[0])
        write_csv(out / "summary.csv", keys, [[s[k] for k in keys] for s in summaries])
    else:
        write_csv(out / "summary.csv", ["configuration"], [])
    write_csv(out / "significance.csv",
         ["configuration", "baseline", "n", "n_baseline", "diff", "ci_low", "ci_high", "t", "p", "p_holm", "verdict"],
         [[c.group.label, c.baseline.label if c.baseline else "", len(c.group.runs),
           len(c.baseline.runs) if c.baseline else 0, c.diff, *c.ci, c.t, c.p, c.p_holm, c.verdict]
          for c in comparisons.values()])
    pair_rows = []
    for group in groups:
        matrix, names, _ = group.confusion()
        if matrix is not None:
            pair_rows += [[group.label, i + 1, p["a"], p["b"], p["count"], p["a_as_b"], p["b_as_a"]]
                          for i, p in enumerate(confused_pairs(matrix, names))]
    write_csv(out / "confused_pairs.csv", ["configuration", "rank", "a", "b", "count", "a_as_b", "b_as_a"], pair_rows)
