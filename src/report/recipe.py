"""What a configuration's numbers came from: epochs, training images, backbone and seeds, and
whether that is the reference study's recipe (the only rows set beside its reported figures)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from src.report.groups import Group
from src.report.runs import Run

# Training images of the IDX datasets before the validation split is carved out.
IDX_TRAIN_IMAGES = {"fashion_mnist": 60_000, "mnist": 60_000}
# The reference study: its CNN on all of Fashion-MNIST's training images (less our validation
# split), 50 epochs (docs/study.md).
REFERENCE_RECIPE = {"data": "fashion_mnist", "backbone": "seed_cnn", "epochs": 50, "subset": None}


def train_images(run: Run) -> int | None:
    """Images the run trained on: ``data.train_subset`` when set, else the dataset's training
    images less the validation split (None when the report cannot tell)."""
    data = run.config.get("data") or {}
    total = IDX_TRAIN_IMAGES.get(str(data.get("name")))
    val = data.get("val_size")
    available = total - int(val) if total is not None and isinstance(val, int) else None
    subset = data.get("train_subset")
    if isinstance(subset, int) and subset > 0:
        return min(subset, available) if available is not None else subset
    return available


def recipe_of(run: Run) -> dict[str, Any]:
    epochs = run.value("epochs")
    if epochs is None:
        epochs = (run.config.get("trainer") or {}).get("max_epochs")
    data = run.config.get("data") or {}
    subset = data.get("train_subset")
    return {"data": run.data, "backbone": run.backbone, "epochs": int(epochs) if epochs is not None else None,
            "train_images": train_images(run), "subset": subset if isinstance(subset, int) and subset > 0 else None}


def _distinct(group: Group, key: str) -> str:
    values = sorted({str(recipe_of(run)[key]) for run in group.runs})
    return "/".join(v if v != "None" else "?" for v in values)


def recipe_cells(group: Group) -> list[str]:
    """backbone, epochs, training images (as the summary table shows them)."""
    images = sorted({recipe_of(run)["train_images"] for run in group.runs}, key=lambda v: (v is None, v))
    return [_distinct(group, "backbone"), _distinct(group, "epochs"),
            "/".join("?" if v is None else f"{v:,}" for v in images)]


def has_reference_recipe(group: Group) -> bool:
    """Every run of the group trained as the reference did (data, backbone, 50 epochs, no subset)."""
    return bool(group.runs) and all(
        all(recipe_of(run)[key] == value for key, value in REFERENCE_RECIPE.items()) for run in group.runs)


def why_not_reference(group: Group) -> str:
    """The first way the group's recipe differs from the reference's."""
    for run in group.runs:
        recipe = recipe_of(run)
        for key, value in REFERENCE_RECIPE.items():
            if recipe[key] != value:
                shown = "all images" if value is None and key == "subset" else value
                return f"{key} {recipe[key] if recipe[key] is not None else 'unknown'} (reference: {shown})"
    return ""


def seed_counts(groups: Sequence[Group]) -> str:
    """'3' or '1 to 3': the number of seeds per configuration."""
    counts = sorted({len(g.runs) for g in groups})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
