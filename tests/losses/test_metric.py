"""Contrastive / triplet heads: mining on larger batches, degenerate batches, class centers."""

from __future__ import annotations

import pytest
import torch
from loss_reference import contrastive_loss, triplet_loss

from src.losses.contrastive import Contrastive
from src.losses.triplet import Triplet

HEADS = [
    (Contrastive, "all", contrastive_loss),
    (Contrastive, "hard", contrastive_loss),
    (Triplet, "all", triplet_loss),
    (Triplet, "hard", triplet_loss),
    (Triplet, "semihard", triplet_loss),
]
IDS = [f"{c.__name__}-{mi}" for c, mi, _ in HEADS]


@pytest.mark.parametrize(("cls", "mining", "ref"), HEADS, ids=IDS)
@pytest.mark.parametrize("seed", range(4))
def test_larger_batches_match_reference(cls, mining, ref, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = 24
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (n,), generator=g)
    m = [0.1, 0.5, 1.0, 2.5][seed]
    head = cls(3, 4, m=m, mining=mining).double()
    got = head(x, labels).item()
    assert got == pytest.approx(ref(x.tolist(), labels.tolist(), m, mining), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("cls", "mining", "ref"), HEADS, ids=IDS)
def test_batches_without_pairs_give_zero_with_a_graph(cls, mining, ref) -> None:
    head = cls(3, 4, m=0.5, mining=mining)
    for labels in (torch.tensor([2, 2, 2]), torch.tensor([0, 1, 2]), torch.tensor([1])):
        x = torch.randn(labels.numel(), 3, requires_grad=True)
        loss = head(x, labels)
        loss.backward()
        assert torch.isfinite(x.grad).all()
        if cls is Triplet or labels.numel() == 1:
            assert loss.item() == 0.0


@pytest.mark.parametrize("cls", [Contrastive, Triplet])
def test_centers_are_running_means_and_drive_prediction(cls) -> None:
    head = cls(2, 3, center_decay=1.0).train()
    x1 = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    x2 = torch.tensor([[1.0, 0.0], [0.0, -1.0], [-1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    head(x1, labels)
    head(x2, labels)
    u = torch.nn.functional.normalize(torch.cat([x1, x2]), dim=1)
    lab = torch.cat([labels, labels])
    want = torch.stack([u[lab == c].mean(0) if (lab == c).any() else torch.zeros(2) for c in range(3)])
    torch.testing.assert_close(head.centers(), want)
    assert head.center_count.tolist() == [2.0, 4.0, 0.0]
    # Eval forward calls (validation loss) do not move the centers.
    head.eval()
    head(torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 1]))
    torch.testing.assert_close(head.centers(), want)
    pred = head.predict(torch.tensor([[1.0, 0.1], [-0.1, -1.0], [0.1, 0.9]]))
    cos = torch.nn.functional.normalize(want, dim=1)[:2] @ torch.tensor([[1.0, 0.1], [-0.1, -1.0], [0.1, 0.9]]).t()
    assert pred.tolist() == cos.argmax(dim=0).tolist()


def test_center_decay_weights_recent_batches() -> None:
    head = Triplet(2, 2, center_decay=0.5).train()
    labels = torch.tensor([0, 1])
    head(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), labels)
    head(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), labels)
    # sum_0 = 0.5 * (1, 0) + (0, 1); count_0 = 0.5 + 1
    torch.testing.assert_close(head.centers()[0], torch.tensor([0.5, 1.0]) / 1.5)


def test_centers_are_checkpointed() -> None:
    head = Contrastive(4, 3).train()
    head(torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    state = head.state_dict()
    assert {"center_sum", "center_count", "weight", "bias"} <= set(state)
    fresh = Contrastive(4, 3)
    fresh.load_state_dict(state)
    x = torch.randn(5, 4)
    torch.testing.assert_close(fresh.scores(x), head.scores(x))


def test_semihard_needs_a_strictly_farther_negative() -> None:
    # Anchor (1, 0): positive (0, 1) at d^2 = 2, a negative at exactly the same d^2 = 2 and one
    # at d^2 = 4. FaceNet's semi-hard negative is the strictly farther one (loss 0 for m < 2).
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2])
    head = Triplet(2, 3, m=0.5, mining="semihard").double()
    got = head(x, labels).item()
    assert got == pytest.approx(triplet_loss(x.tolist(), labels.tolist(), 0.5, "semihard"))
    assert got == pytest.approx(0.0)
