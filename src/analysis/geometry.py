"""Angular geometry of embeddings on the unit hypersphere, and SphereFace's criterion.

Definitions (every angle in degrees, between L2-normalised embeddings):

* **class center** of class c: the mean of its unit embeddings, normalised again (the mean
  direction);
* **max intra-class angle** of c (``max_intra_deg``): the largest angle between two embeddings
  of class c (pairwise, on at most ``max_per_class`` samples: a fixed subsample, so the value
  is reproducible; 1000 samples are 500k pairs, cheap);
* ``max_to_center_deg`` / ``mean_to_center_deg``: the largest / mean angle between an
  embedding of c and c's center;
* **min inter-class angle** of c (``min_inter_deg``): the smallest angle between c's center and
  another class's center (``nearest_class`` names it);
* **SphereFace's criterion** (Liu et al. 2017; docs/study.md): the maximal intra-class angle
  is smaller than the minimal inter-class angle. ``criterion_holds`` per class compares the
  class's own two numbers; the global ``criterion_holds`` compares the largest intra-class angle
  over all classes with the smallest center-to-center angle. ``criterion_samples_holds`` is the
  stricter sample-level form of the paper (max intra-class angle between samples < min angle
  between any two samples of different classes), on the same subsample.

The max is sensitive to one outlier (one misclassified image makes a large intra-class angle),
so the criterion rarely holds on real data; ``mean_to_center_deg`` is the robust companion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().to(torch.float64)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _angles_deg(cos: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


def _subsample(index: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    if limit is None or len(index) <= limit:
        return index
    g = torch.Generator().manual_seed(seed)
    return index[torch.randperm(len(index), generator=g)[:limit]].sort().values


def _max_pairwise_angle(x: torch.Tensor, chunk: int = 2048) -> float:
    """Largest angle between two rows of the unit matrix ``x`` (0 for fewer than 2 rows)."""
    if len(x) < 2:
        return 0.0
    smallest = 1.0
    for start in range(0, len(x), chunk):
        smallest = min(smallest, float((x[start : start + chunk] @ x.t()).min()))
    return float(_angles_deg(torch.tensor(smallest, dtype=torch.float64)))


def _min_cross_angle(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> float:
    """Smallest angle between a row of ``a`` and a row of ``b``."""
    largest = -1.0
    for start in range(0, len(a), chunk):
        largest = max(largest, float((a[start : start + chunk] @ b.t()).max()))
    return float(_angles_deg(torch.tensor(largest, dtype=torch.float64)))


def class_geometry(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str] | None = None,
    max_per_class: int | None = 1000,
    sample_level_per_class: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-class and global angular statistics of ``embeddings`` (N, D) with ``labels`` (N,).

    Classes with no embedding are skipped. Returns a JSON-ready dict (see the module docstring)."""
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings must be (N, D) with N = len(labels); got {tuple(embeddings.shape)}, "
                         f"{len(labels)} labels")
    x = _unit(embeddings.cpu())
    y = labels.detach().cpu().long()
    present = [int(c) for c in torch.unique(y)]
    if not present:
        raise ValueError("no embeddings to analyse")
    names = list(class_names) if class_names is not None else []

    def name(c: int) -> str:
        return names[c] if c < len(names) else str(c)

    members = {c: _subsample(torch.nonzero(y == c).flatten(), max_per_class, seed + c) for c in present}
    centers = torch.stack([_unit(x[members[c]].mean(dim=0, keepdim=True))[0] for c in present])
    center_angles = _angles_deg(centers @ centers.t())
    center_angles.fill_diagonal_(math.inf)

    classes: list[dict[str, Any]] = []
    for i, c in enumerate(present):
        xc = x[members[c]]
        to_center = _angles_deg(xc @ centers[i])
        nearest = int(center_angles[i].argmin()) if len(present) > 1 else None
        min_inter = float(center_angles[i, nearest]) if nearest is not None else None
        max_intra = _max_pairwise_angle(xc)
        classes.append({
            "class": c,
            "name": name(c),
            "n": int(len(xc)),
            "max_intra_deg": max_intra,
            "max_to_center_deg": float(to_center.max()),
            "mean_to_center_deg": float(to_center.mean()),
            "min_inter_deg": min_inter,
            "nearest_class": name(present[nearest]) if nearest is not None else None,
            "criterion_holds": min_inter is not None and max_intra < min_inter,
        })

    max_intra = max(row["max_intra_deg"] for row in classes)
    min_inter = float(center_angles.min()) if len(present) > 1 else None
    # Sample-level form on a smaller subsample: min angle between samples of different classes.
    small = {c: members[c][:sample_level_per_class] for c in present}
    min_inter_samples = math.inf
    for i, a in enumerate(present):
        for b in present[i + 1 :]:
            min_inter_samples = min(min_inter_samples, _min_cross_angle(x[small[a]], x[small[b]]))
    max_intra_samples = max(_max_pairwise_angle(x[small[c]]) for c in present)
    min_inter_samples = min_inter_samples if len(present) > 1 else None
    return {
        "definition": "angles in degrees between L2-normalised test embeddings; intra = max pairwise angle "
                      "within a class, inter = min angle between class centers (mean directions)",
        "num_classes": len(present),
        "max_intra_deg": max_intra,
        "min_inter_deg": min_inter,
        "mean_to_center_deg": float(sum(r["mean_to_center_deg"] * r["n"] for r in classes)
                                    / sum(r["n"] for r in classes)),
        "criterion_holds": min_inter is not None and max_intra < min_inter,
        "classes_meeting_criterion": int(sum(r["criterion_holds"] for r in classes)),
        "max_intra_samples_deg": max_intra_samples,
        "min_inter_samples_deg": min_inter_samples,
        "criterion_samples_holds": min_inter_samples is not None and max_intra_samples < min_inter_samples,
        "max_per_class": max_per_class,
        "classes": classes,
    }
