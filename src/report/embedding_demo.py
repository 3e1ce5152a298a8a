"""The embedding demo's figures: ``python -m src.report.embedding_demo <runs folder> [--out DIR]``.

YunYang1994/SphereFace's README shows original softmax, modified softmax and A-Softmax side by
side with the 2-D and 3-D features each learns. This draws the same comparison from finished runs
(``experiment=embedding_demo``): one figure per embedding size, three columns (the three losses),
two rows (raw features; features normalised onto the unit circle / sphere), the class directions
drawn and the classes coloured and named, each column titled with its test accuracy as mean ± std
over seeds. Never trains and needs no checkpoint: it reads each run's record and the test
embeddings (``src.runs.folder.TEST_EMBEDDINGS``) the run wrote at its test (``src.callbacks.embeddings``). Writes
``embeddings_2d.png``, ``embeddings_3d.png`` and ``accuracy.md`` (the table, with every run used)
into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.callbacks.embeddings import draw_embeddings, load_test_embeddings
from src.report.runs import Run, load_runs
from src.report.stats import mean_std
from src.runs.folder import TEST_EMBEDDINGS

# Columns in YunYang's order, keyed by the head's class name (config loss._target_).
COLUMNS: dict[str, str] = {"Softmax": "original softmax", "ModifiedSoftmax": "modified softmax",
                           "SphereFace": "A-Softmax"}
# YunYang1994/SphereFace README, MNIST test accuracy (a different dataset and recipe).
YUNYANG_MNIST: dict[str, float] = {"Softmax": 0.9775, "ModifiedSoftmax": 0.9847, "SphereFace": 0.9896}
EMBEDDINGS = TEST_EMBEDDINGS
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}
CLOSE_DEG = 10.0  # class directions closer than this count as (nearly) merged
LEGEND_IN = 2.3  # inches kept free on the right for the class legend


@dataclass
class Cell:
    """The runs of one (embedding size, loss) pair."""

    dim: int
    head: str
    runs: list[Run] = field(default_factory=list)

    def accuracy(self, key: str = "test_acc") -> tuple[float, float]:
        return mean_std([r.value(key) for r in self.runs])

    @property
    def label(self) -> str:
        name = COLUMNS[self.head]
        if self.head == "SphereFace" and self.runs:
            name += f" (m={self.runs[0].config.get('loss', {}).get('m')})"
        return name


def head_of(run: Run) -> str:
    return str((run.config.get("loss") or {}).get("_target_", "")).rsplit(".", 1)[-1]


def dim_of(run: Run) -> int | None:
    dim = (run.config.get("backbone") or {}).get("embedding_dim")
    return int(dim) if isinstance(dim, int) else None


def collect(runs: Sequence[Run]) -> tuple[dict[tuple[int, str], Cell], list[str]]:
    """Finished 2-D / 3-D runs of the three losses with their embeddings file, by (dim, head); and
    a line for each run left out, with the reason."""
    cells: dict[tuple[int, str], Cell] = {}
    skipped: list[str] = []
    for run in runs:
        head, dim = head_of(run), dim_of(run)
        why = ("not finished" if not run.usable else f"loss {head or '?'} is not one of the three"
               if head not in COLUMNS else f"embedding size {dim}" if dim not in (2, 3)
               else f"no {EMBEDDINGS}" if not (run.folder / EMBEDDINGS).is_file() else "")
        if why:
            skipped.append(f"{run.folder.name}: {why}{f' ({run.reason})' if run.reason else ''}")
            continue
        assert dim is not None
        cells.setdefault((dim, head), Cell(dim, head)).runs.append(run)
    for cell in cells.values():
        cell.runs.sort(key=lambda r: (str(r.seed), r.folder.name))
    return cells, skipped


def shown_run(cell: Cell, seed: int | None) -> Run:
    """The run whose embeddings a panel draws: ``seed`` when the cell has it, else its first seed."""
    return next((r for r in cell.runs if seed is not None and r.seed == seed), cell.runs[0])


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f}" + ("" if np.isnan(std) else f" ± {100 * std:.2f}") + "%"


def dimension_figure(cells: dict[tuple[int, str], Cell], dim: int, out: Path, seed: int | None = 0,
                     max_points: int = 3000) -> Path | None:
    """One figure for embeddings of size ``dim``: a column per loss, raw above and normalised
    below. ``max_points`` test embeddings (a fixed subsample) per panel keep the scatter legible."""
    from src.utils.plots import plt

    columns = [cells[(dim, head)] for head in COLUMNS if (dim, head) in cells]
    if not columns:
        return None
    kw = {"projection": "3d"} if dim == 3 else {}
    fig = plt.figure(figsize=(4.6 * len(columns) + LEGEND_IN, 9.4), dpi=110)
    names: list[str] = []
    for col, cell in enumerate(columns):
        run = shown_run(cell, seed)
        data = load_test_embeddings(run.folder / EMBEDDINGS)
        names = data["class_names"]
        points, labels = data["embeddings"], data["labels"].astype(int)
        if len(points) > max_points:  # the same subsample for every panel of equal size
            keep = np.sort(np.random.default_rng(0).choice(len(points), max_points, replace=False))
            points, labels = points[keep], labels[keep]
        mean, std = cell.accuracy()
        for row, normalized in enumerate((False, True)):
            ax = fig.add_subplot(2, len(columns), row * len(columns) + col + 1, **kw)
            where = ("unit sphere" if dim == 3 else "unit circle") if normalized else "raw"
            title = (f"{cell.label}\ntest {_pct(mean, std)} (n={len(cell.runs)})\n" if row == 0 else "") + \
                f"{where}, seed {run.seed}"
            draw_embeddings(ax, points, labels, names, data["directions"], normalized, title)
            if dim == 2:
                ax.tick_params(labelsize=7)
            else:
                ax.tick_params(labelsize=6, pad=0)
    handles, texts = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="center right", fontsize=8, markerscale=4, title="class (lines: class directions)",
               title_fontsize=8)
    datasets = sorted({DATASET_NAMES.get(r.data, r.data) for cell in columns for r in cell.runs})
    backbones = sorted({r.backbone for cell in columns for r in cell.runs})
    fig.suptitle(f"{dim}-D embeddings of the {' / '.join(datasets)} test set ({', '.join(backbones)})", fontsize=11)
    fig.subplots_adjust(left=0.03, right=1 - LEGEND_IN / fig.get_figwidth(), top=0.88, bottom=0.04, wspace=0.25,
                        hspace=0.3)
    path = out / f"embeddings_{dim}d.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def embedding_shape(data: dict) -> tuple[int, float]:
    """How many pairs of class directions lie within ``CLOSE_DEG`` of each other (classes the head
    has all but merged), and the median norm of the test embeddings."""
    w = data["directions"].reshape(len(data["directions"]), -1, data["directions"].shape[-1])[:, 0]
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    angles = np.degrees(np.arccos(np.clip(w @ w.T, -1.0, 1.0)))[np.triu_indices(len(w), 1)]
    return int((angles < CLOSE_DEG).sum()), float(np.median(np.linalg.norm(data["embeddings"], axis=1)))


def _spread(values: Sequence[float], fmt: str = ".1f") -> str:
    """Mean over seeds with the per-seed values: '5.0 (7, 5, 3)'."""
    return f"{np.mean(values):{fmt}} ({', '.join(f'{v:{fmt}}' if isinstance(v, float) else str(v) for v in values)})"


def accuracy_table(cells: dict[tuple[int, str], Cell], skipped: Sequence[str]) -> str:
    """Markdown: test accuracy (and the leakage audit's label-fed reading) per (dim, loss), mean ±
    std over seeds, YunYang's MNIST number beside it, how many class directions (nearly) coincide
    and the embeddings' median norm; then the runs used and those left out."""
    lines = ["| embedding | loss | test acc (label-free) | label-fed audit | best val acc | seeds | "
             f"YunYang, MNIST (other data, other recipe) | class-direction pairs < {CLOSE_DEG:g}° | median test ‖x‖ |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (dim, head), cell in sorted(cells.items(), key=lambda kv: (kv[0][0], list(COLUMNS).index(kv[0][1]))):
        seeds = ", ".join(str(r.seed) for r in cell.runs)
        shapes = [embedding_shape(load_test_embeddings(r.folder / EMBEDDINGS)) for r in cell.runs]
        close, norms = [c for c, _ in shapes], [n for _, n in shapes]
        lines.append(f"| {dim}-D | {cell.label} | {_pct(*cell.accuracy())} | {_pct(*cell.accuracy('test_acc_leaky'))} "
                     f"| {_pct(*cell.accuracy('val_acc_best'))} | {seeds} | {100 * YUNYANG_MNIST[head]:.2f}% "
                     f"| {_spread(close)} | {_spread(norms, '.2f')} |")
    lines += ["", "Runs used:", ""]
    for cell in sorted(cells.values(), key=lambda c: (c.dim, list(COLUMNS).index(c.head))):
        lines += [f"- `{r.folder.name}`: test {100 * (r.value('test_acc') or 0):.2f}%" for r in cell.runs]
    if skipped:
        lines += ["", "Left out:", "", *[f"- {line}" for line in skipped]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.report.embedding_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders or folders of runs (experiment=embedding_demo)")
    parser.add_argument("--out", default="experiments/embedding_demo", help="where the figures and table go")
    parser.add_argument("--seed", type=int, default=0, help="the seed whose embeddings are drawn")
    parser.add_argument("--max-points", type=int, default=3000, help="test embeddings drawn per panel")
    args = parser.parse_args(argv)
    cells, skipped = collect(load_runs(args.runs))
    if not cells:
        print("no finished 2-D / 3-D runs of softmax, modified softmax or A-Softmax with their "
              f"{EMBEDDINGS} under {', '.join(args.runs)}", file=sys.stderr)
        for line in skipped:
            print(f"  {line}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for dim in (2, 3):
        path = dimension_figure(cells, dim, out, seed=args.seed, max_points=args.max_points)
        if path:
            print(f"wrote {path}")
    (out / "accuracy.md").write_text(accuracy_table(cells, skipped))
    print(f"wrote {out / 'accuracy.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
