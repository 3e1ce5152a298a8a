"""Embedding metrics as metric learning reports them: retrieval and clustering quality.

Computed by pytorch-metric-learning's ``AccuracyCalculator`` (with scikit-learn's k-means), on
the L2-normalised embeddings, every image a query against all the others:

* ``precision_at_1``: share of queries whose nearest neighbour has the query's label;
* ``r_precision``: for a query with R other images of its label, the share of its R nearest
  neighbours that have its label;
* ``map_at_r``: mean over queries of (1/R) sum_{i<=R} P(i) rel(i), P(i) the precision among the
  i nearest neighbours and rel(i) = 1 when the i-th has the query's label;
* ``nmi`` / ``ami``: normalised / adjusted mutual information between the labels and a k-means
  clustering (k = number of labels present) of the unit embeddings.

"Nearest" is by cosine similarity (the geometry every angular loss trains for); a query is never
its own neighbour. Queries whose label has no other image are left out of the three retrieval
metrics (NaN when every label is alone), as AccuracyCalculator does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.cluster import KMeans

RETRIEVAL_KEYS = ("precision_at_1", "r_precision", "map_at_r", "nmi", "ami")
# AccuracyCalculator's names for ours.
_CALCULATOR_NAMES = {"precision_at_1": "precision_at_1", "r_precision": "r_precision",
                     "map_at_r": "mean_average_precision_at_r", "nmi": "NMI", "ami": "AMI"}


class _SeededKMeans:
    """scikit-learn k-means in the shape AccuracyCalculator calls (embeddings, k) -> labels;
    a fixed seed and 10 restarts make the clustering reproducible and not hostage to one start."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, embeddings: torch.Tensor, num_clusters: int) -> np.ndarray:
        x = embeddings.detach().cpu().double().numpy()
        return KMeans(n_clusters=num_clusters, n_init=10, random_state=self.seed).fit_predict(x)


def embedding_metrics(
    embeddings: torch.Tensor, labels: torch.Tensor, seed: int = 0, batch_size: int = 1024
) -> dict[str, float]:
    """The five metrics of the module docstring for ``embeddings`` (N, D) with ``labels`` (N,).

    ``batch_size`` query rows at a time enter the similarity matrix, so memory stays
    batch_size x N however large N is."""
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings must be (N, D) with N = len(labels); got {tuple(embeddings.shape)}, "
                         f"{len(labels)} labels")
    if len(labels) < 2:
        raise ValueError(f"embedding metrics need at least 2 embeddings, got {len(labels)}")
    x = embeddings.detach().cpu().float()
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    y = labels.detach().cpu().long()
    calculator = AccuracyCalculator(
        include=tuple(_CALCULATOR_NAMES.values()),
        # k = the largest class size: enough neighbours for R-precision and MAP@R of every query.
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=CustomKNN(CosineSimilarity(), batch_size=batch_size),
        kmeans_func=_SeededKMeans(seed),
    )
    found = calculator.get_accuracy(x, y)  # reference = query set, each query's self excluded
    return {key: _finite_or_nan(found[name]) for key, name in _CALCULATOR_NAMES.items()}


def _finite_or_nan(value: object) -> float:
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else math.nan
