"""Embedding metrics against tiny examples computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from src.analysis.retrieval import RETRIEVAL_KEYS, embedding_metrics


def _on_circle(degrees: list[float], norms: list[float] | None = None) -> torch.Tensor:
    t = torch.deg2rad(torch.tensor(degrees, dtype=torch.float64))
    x = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    return x * torch.tensor(norms, dtype=torch.float64)[:, None] if norms else x


# Class A at 0, 20, 72 degrees; class B at 30, 45, 125. Within [0, 180] the cosine order is the
# order of angle differences. Each query has R = 2 other images of its class.
#   query  neighbours by angle (distance)         top-2 relevant   P@1  R-prec  AP@R
#   A 0    A20 (20) B30 (30) B45 A72 B125         yes, no          1    1/2     (1/2)(1)   = 1/2
#   A 20   B30 (10) A0 (20)  B45 A72 B125         no,  yes         0    1/2     (1/2)(1/2) = 1/4
#   A 72   B45 (27) B30 (42) A20 B125 A0          no,  no          0    0       0
#   B 30   A20 (10) B45 (15) A0 A72 B125          no,  yes         0    1/2     1/4
#   B 45   B30 (15) A20 (25) A72 A0 B125          yes, no          1    1/2     1/2
#   B 125  A72 (53) B45 (80) B30 A20 A0           no,  yes         0    1/2     1/4
# Means: P@1 = 2/6, R-precision = 2.5/6, MAP@R = 1.75/6.
DEGREES = [0.0, 20.0, 72.0, 30.0, 45.0, 125.0]
LABELS = torch.tensor([0, 0, 0, 1, 1, 1])


def test_retrieval_metrics_match_the_hand_computed_example() -> None:
    got = embedding_metrics(_on_circle(DEGREES), LABELS)
    assert set(got) == set(RETRIEVAL_KEYS)
    assert got["precision_at_1"] == pytest.approx(2 / 6)  # 1.0 if a query could find itself
    assert got["r_precision"] == pytest.approx(2.5 / 6)
    assert got["map_at_r"] == pytest.approx(1.75 / 6)


def test_distance_is_cosine_not_euclidean() -> None:
    """Rescaling rows moves Euclidean neighbours (A0 stretched far out) but not cosine ones."""
    got = embedding_metrics(_on_circle(DEGREES, norms=[50.0, 1.0, 0.1, 3.0, 7.0, 0.5]), LABELS)
    assert got["precision_at_1"] == pytest.approx(2 / 6)
    assert got["r_precision"] == pytest.approx(2.5 / 6)
    assert got["map_at_r"] == pytest.approx(1.75 / 6)


def _entropy(counts: list[int]) -> float:
    n = sum(counts)
    return -sum(c / n * math.log(c / n) for c in counts if c)


def test_nmi_and_ami_match_the_hand_computed_example() -> None:
    """Two tight groups, G1 near 0 degrees and G2 near 90; labels 0,0,1 in G1 and 1,1,1 in G2.
    k-means (k = 2 labels) finds G1 and G2, so the contingency table is [[2, 1], [0, 3]]."""
    x = _on_circle([0.0, 1.0, 2.0, 90.0, 91.0, 92.0])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    n = 6
    table = [[2, 1], [0, 3]]  # rows: clusters G1, G2; columns: labels 0, 1
    rows, cols = [3, 3], [2, 4]
    mi = sum(nij / n * math.log(n * nij / (rows[i] * cols[j]))
             for i, row in enumerate(table) for j, nij in enumerate(row) if nij)
    h_labels, h_clusters = _entropy(cols), _entropy(rows)
    # By hand: MI = (1/3) ln 2 + (1/6) ln(1/2) + (1/2) ln(3/2) = 0.318257...
    assert mi == pytest.approx(math.log(2) / 6 + 0.5 * math.log(1.5))
    nmi = mi / ((h_labels + h_clusters) / 2)  # arithmetic mean of the entropies
    # Expected MI under random labelling with the same margins (hypergeometric cell counts).
    emi = 0.0
    for a in rows:
        for b in cols:
            for nij in range(max(1, a + b - n), min(a, b) + 1):
                p = math.comb(a, nij) * math.comb(n - a, b - nij) / math.comb(n, b)
                emi += p * nij / n * math.log(n * nij / (a * b))
    ami = (mi - emi) / ((h_labels + h_clusters) / 2 - emi)
    got = embedding_metrics(x, labels)
    assert got["nmi"] == pytest.approx(nmi)
    assert nmi == pytest.approx(0.478704, abs=1e-6)
    assert got["ami"] == pytest.approx(ami)
    assert got["ami"] < got["nmi"]  # chance agreement removed


def test_perfect_and_lone_labels() -> None:
    x = _on_circle([0.0, 2.0, 90.0, 92.0, 180.0])
    got = embedding_metrics(x, torch.tensor([0, 0, 1, 1, 2]))
    # Label 2 has no other image: left out of retrieval (it could never be right); clustering keeps it.
    assert got["precision_at_1"] == got["r_precision"] == got["map_at_r"] == pytest.approx(1.0)
    assert got["nmi"] == pytest.approx(1.0) and got["ami"] == pytest.approx(1.0)
    alone = embedding_metrics(_on_circle([0.0, 90.0]), torch.tensor([0, 1]))
    assert math.isnan(alone["precision_at_1"]) and math.isnan(alone["map_at_r"])


def test_batched_similarity_gives_the_same_numbers() -> None:
    torch.manual_seed(0)
    x, labels = torch.randn(60, 5), torch.randint(0, 4, (60,))
    assert embedding_metrics(x, labels, batch_size=7) == pytest.approx(embedding_metrics(x, labels, batch_size=1000))


def test_bad_shapes_fail_with_one_line() -> None:
    with pytest.raises(ValueError, match="embeddings must be"):
        embedding_metrics(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
