"""Open-set verification by cosine similarity (docs/study.md): what face recognition needs.

The model never saw the held-out classes. Their test images are embedded, every pair (i < j) is
scored by the cosine of the two embeddings, and a pair is *genuine* when both images share a
class, an *impostor* pair otherwise. Reported:

* ``roc_auc``: area under the verification ROC (``torchmetrics.functional.binary_auroc``);
* ``tar_at_far``: true-accept rate at a false-accept rate of at most 1e-2 and 1e-3. The
  threshold is the (k+1)-th largest impostor score with k = floor(FAR x impostor pairs), and a
  pair is accepted when its score is strictly above it, so the achieved FAR never exceeds the
  target (with few impostor pairs a small FAR is coarse; ``impostor_pairs`` says how many);
* ``recall_at_1``: leave-one-out nearest neighbour (highest cosine among the other images)
  has the same class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics.functional.classification import binary_auroc

FARS = (1e-2, 1e-3)


def far_key(far: float) -> str:
    """``1e-2 -> "tar_far1e-2"``: the key (and TensorBoard tag suffix) of a TAR value."""
    exponent = round(math.log10(far))
    return f"tar_far1e{exponent}" if math.isclose(far, 10.0**exponent) else f"tar_far{far:g}"


def _subsample(n: int, limit: int | None, seed: int) -> torch.Tensor:
    if limit is None or n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def tar_at_far(genuine: torch.Tensor, impostor: torch.Tensor, far: float) -> float:
    """True-accept rate at a false-accept rate of at most ``far`` (see the module docstring)."""
    if len(genuine) == 0 or len(impostor) == 0:
        return math.nan
    k = int(math.floor(far * len(impostor)))
    threshold = torch.topk(impostor, k + 1).values[-1]
    return float((genuine > threshold).double().mean())


def recall_at_1(x: torch.Tensor, labels: torch.Tensor, chunk: int = 2048) -> float:
    """Share of rows whose most similar other row (cosine) has the same label."""
    if len(x) < 2:
        return math.nan
    hits = 0
    for start in range(0, len(x), chunk):
        sim = x[start : start + chunk] @ x.t()
        rows = torch.arange(len(sim))
        sim[rows, rows + start] = -math.inf  # leave one out
        hits += int((labels[sim.argmax(dim=1)] == labels[start : start + chunk]).sum())
    return hits / len(x)


def verification_metrics(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    fars: Sequence[float] = FARS,
    max_samples: int | None = 4000,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All-pairs cosine verification of ``embeddings`` (N, D) with ``labels`` (N,).

    At most ``max_samples`` images (a fixed subsample) enter: N images make N (N - 1) / 2 pairs."""
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings must be (N, D) with N = len(labels); got {tuple(embeddings.shape)}, "
                         f"{len(labels)} labels")
    keep = _subsample(len(labels), max_samples, seed)
    x = embeddings.detach().cpu().to(torch.float32)[keep]
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    y = labels.detach().cpu().long()[keep]
    upper = torch.ones(len(y), len(y), dtype=torch.bool).triu(diagonal=1)  # each pair i < j once
    scores = (x @ x.t())[upper]
    same = (y[:, None] == y[None, :])[upper]
    genuine, impostor = scores[same], scores[~same]
    auc = (float(binary_auroc(scores, same.long(), thresholds=None))
           if len(genuine) and len(impostor) else math.nan)
    classes = sorted(int(c) for c in torch.unique(y))
    names = list(class_names) if class_names is not None else []
    out: dict[str, Any] = {
        "classes": [names[c] if c < len(names) else str(c) for c in classes],
        "num_images": int(len(y)),
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "roc_auc": auc,
        "recall_at_1": recall_at_1(x, y),
        "genuine_mean_cos": float(genuine.mean()) if len(genuine) else math.nan,
        "impostor_mean_cos": float(impostor.mean()) if len(impostor) else math.nan,
    }
    for far in fars:
        out[far_key(far)] = tar_at_far(genuine, impostor, far)
    return out
