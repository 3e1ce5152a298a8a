"""Open-set verification metrics on hand-made embeddings."""

from __future__ import annotations

import pytest
import torch

from src.analysis.open_set import far_key, tar_at_far, verification_metrics


def test_perfectly_separated_classes() -> None:
    g = torch.Generator().manual_seed(0)
    directions = torch.eye(8)[:4]
    labels = torch.arange(4).repeat_interleave(60)
    emb = directions[labels] * 5 + 0.05 * torch.randn(len(labels), 8, generator=g)
    out = verification_metrics(emb, labels + 6, class_names=[str(i) for i in range(10)])
    assert out["roc_auc"] == pytest.approx(1.0)
    assert out["tar_far1e-2"] == 1.0 and out["tar_far1e-3"] == 1.0
    assert out["recall_at_1"] == 1.0
    assert out["classes"] == ["6", "7", "8", "9"]
    n = len(labels)
    assert out["genuine_pairs"] + out["impostor_pairs"] == n * (n - 1) // 2
    assert out["genuine_pairs"] == 4 * 60 * 59 // 2


def test_random_embeddings_are_at_chance() -> None:
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(600, 16, generator=g)
    labels = torch.randint(0, 3, (600,), generator=g)
    out = verification_metrics(emb, labels)
    assert out["roc_auc"] == pytest.approx(0.5, abs=0.03)
    assert out["tar_far1e-2"] == pytest.approx(0.01, abs=0.01)
    assert out["recall_at_1"] == pytest.approx(1 / 3, abs=0.07)


def test_tar_at_far_never_exceeds_the_far() -> None:
    impostor = torch.linspace(0, 1, 1000)
    genuine = torch.tensor([0.5, 0.9905, 0.995, 0.9995])
    # FAR 1e-2: 10 impostors may be accepted, threshold = 11th largest (0.98999); 3 genuine above.
    assert tar_at_far(genuine, impostor, 1e-2) == pytest.approx(0.75)
    assert tar_at_far(genuine, impostor, 1e-3) == pytest.approx(0.25)  # 1 impostor accepted at most
    assert tar_at_far(torch.tensor([]), impostor, 1e-2) != tar_at_far(torch.tensor([]), impostor, 1e-2)  # NaN
    assert far_key(1e-2) == "tar_far1e-2" and far_key(1e-3) == "tar_far1e-3"


def test_subsampling_caps_the_pairs() -> None:
    emb, labels = torch.randn(300, 4), torch.randint(0, 2, (300,))
    out = verification_metrics(emb, labels, max_samples=100)
    assert out["num_images"] == 100 and out["genuine_pairs"] + out["impostor_pairs"] == 100 * 99 // 2
