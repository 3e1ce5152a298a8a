"""The audit-only heads that reproduce the reference study's Keras layers: the label mixing
pinned to hand-computed numbers, and label-free predictions kept apart from the label-fed ones."""

from __future__ import annotations

import math

import pytest
import torch

from src.losses.reference_arcface import ReferenceArcFace
from src.losses.reference_protocol import keras_categorical_crossentropy
from src.losses.reference_sphereface import ReferenceSphereFace

S = 30.0
# Three unit class weights in 2-D at 0, 90 and 180 degrees, two embeddings at 60 and 150 degrees:
# the angles to the classes are row 0: (60, 30, 120), row 1: (150, 60, 30) degrees.
WEIGHT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
EMB = torch.tensor([[math.cos(math.radians(60)), math.sin(math.radians(60))],
                    [math.cos(math.radians(150)), math.sin(math.radians(150))]]) * 2.5  # |x| is ignored
THETA = [[60.0, 30.0, 120.0], [150.0, 60.0, 30.0]]
LABELS = torch.tensor([0, 2])
R3 = math.sqrt(3.0)


def _head(cls: type, **kw: object) -> torch.nn.Module:
    head = cls(2, 3, s=S, **kw)
    with torch.no_grad():
        head.weight.copy_(WEIGHT)
    return head.eval()


def test_sphereface_raw_label_mixing_hand_computed() -> None:
    head = _head(ReferenceSphereFace, m=2.0)
    got = head.reference_logits(EMB, LABELS)
    # Label 0: (1 - 0) cos t_j + 0: the plain cosines, no margin at all.
    row0 = [S * 0.5, S * R3 / 2, S * -0.5]
    # Label 2: (1 - 2) cos t_j + 2 cos(2 t_j) on *every* class; cos = (-r3/2, 1/2, r3/2),
    # cos 2t = (1/2, -1/2, 1/2): (r3/2 + 1, -1/2 - 1, -r3/2 + 1).
    row1 = [S * (1 + R3 / 2), S * -1.5, S * (1 - R3 / 2)]
    torch.testing.assert_close(got, torch.tensor([row0, row1]), atol=2e-4, rtol=0)
    # The same numbers from the formula s((1 - k) cos t_j + k cos(m t_j)).
    formula = torch.tensor([[S * ((1 - k) * math.cos(math.radians(t)) + k * math.cos(2 * math.radians(t)))
                             for t in THETA[i]] for i, k in enumerate((0, 2))])
    torch.testing.assert_close(got, formula, atol=2e-4, rtol=0)
    # The reference's "prediction" of row 1 is class 0; the label-free one is class 2, its label.
    assert got.argmax(1).tolist() == [1, 0]
    assert head.predict(EMB).tolist() == [1, 2]
    torch.testing.assert_close(head.training_logits(EMB, LABELS), got)


def test_arcface_raw_label_mixing_hand_computed() -> None:
    head = _head(ReferenceArcFace, m=0.5, weight_l2=0.0)
    got = head.reference_logits(EMB, LABELS)
    # All angles + 0.5 rad stay below pi, so phi_j = cos(t_j + 0.5) for every class.
    def phi(t: float) -> float:
        return math.cos(math.radians(t) + 0.5)

    row0 = [S * math.cos(math.radians(t)) for t in THETA[0]]
    row1 = [S * (2 * phi(t) - math.cos(math.radians(t))) for t in THETA[1]]  # k phi + (1 - k) cos, k = 2
    torch.testing.assert_close(got, torch.tensor([row0, row1]), atol=2e-4, rtol=0)
    torch.testing.assert_close(got[1], torch.tensor([-34.0022, -13.5838, 5.2372]), atol=2e-3, rtol=0)


def test_arcface_fallback_past_pi_minus_m() -> None:
    head = _head(ReferenceArcFace, m=0.5)
    cos = torch.tensor([[math.cos(math.pi - 0.3)]])  # t + m > pi: cos t - m sin(pi - m)
    torch.testing.assert_close(head.target_cos(cos), cos - 0.5 * math.sin(math.pi - 0.5))
    easy = _head(ReferenceArcFace, m=0.5, easy_margin=True)
    torch.testing.assert_close(easy.target_cos(cos), cos)  # easy margin keeps cos t where cos t <= 0


@pytest.mark.parametrize("cls", [ReferenceSphereFace, ReferenceArcFace])
def test_one_hot_broadcast_is_n_by_n_by_c(cls: type) -> None:
    head = _head(cls, mixing="one_hot_broadcast")
    got = head.reference_logits(EMB, LABELS)
    assert got.shape == (2, 2, 3)
    cos = torch.tensor([[math.cos(math.radians(t)) for t in row] for row in THETA])
    target = head.target_cos(cos)
    for i, y_i in enumerate(LABELS.tolist()):
        for j in range(2):
            want = S * cos[j].clone()
            want[y_i] = S * target[j, y_i]  # sample j's logits, margin at sample i's class
            torch.testing.assert_close(got[i, j], want, atol=2e-4, rtol=0)
    # Keras' accuracy averages over the N placements of the margin, per sample.
    hits = (got.argmax(-1) == LABELS.view(1, -1)).float().mean(0)
    torch.testing.assert_close(head.reference_correct(EMB, LABELS), hits)
    with pytest.raises(ValueError, match="reference_logits"):
        head.training_logits(EMB, LABELS)
    loss = head(EMB, LABELS)
    assert loss.shape == () and torch.isfinite(loss)


@pytest.mark.parametrize("cls", [ReferenceSphereFace, ReferenceArcFace])
@pytest.mark.parametrize("mixing", ["raw_label", "one_hot_broadcast"])
def test_label_free_predictions_ignore_labels_reference_ones_do_not(cls: type, mixing: str) -> None:
    torch.manual_seed(0)
    head = cls(16, 10, s=S, mixing=mixing).eval()
    emb = torch.randn(64, 16)
    labels = torch.randint(0, 10, (64,))
    other = (labels + 3) % 10
    before = head.predict(emb)
    head(emb, other)  # a loss computed with other labels leaves nothing behind
    assert torch.equal(head.predict(emb), before)
    torch.testing.assert_close(head.scores(emb), S * torch.nn.functional.normalize(emb) @
                               torch.nn.functional.normalize(head.weight).t(), atol=1e-4, rtol=0)
    ref_true, ref_other = head.reference_logits(emb, labels), head.reference_logits(emb, other)
    assert not torch.allclose(ref_true, ref_other)
    assert (ref_true.argmax(-1) != ref_other.argmax(-1)).any()


def test_keras_crossentropy_matches_torch_and_clips() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 40.0, -40.0]], requires_grad=True)
    labels = torch.tensor([0, 1])
    loss = keras_categorical_crossentropy(logits, labels)
    torch.testing.assert_close(loss[0], torch.nn.functional.cross_entropy(logits[:1], labels[:1]))
    # p_y > 1 - 1e-7 is clipped (1 - 1e-7 rounds to 1 - 2^-23 in float32): no gradient, as in Keras.
    assert 0.0 < loss[1].item() < 2e-7
    loss[1].backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_weight_l2_is_added_to_the_loss() -> None:
    plain = _head(ReferenceArcFace, m=0.5, weight_l2=0.0)
    reg = _head(ReferenceArcFace, m=0.5, weight_l2=1e-4)
    diff = reg(EMB, LABELS) - plain(EMB, LABELS)
    assert diff.item() == pytest.approx(1e-4 * float(WEIGHT.pow(2).sum()), rel=1e-3)
