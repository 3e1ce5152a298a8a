"""The label-free self-consistent reading of the audit's reference heads
(``ReferenceHead.self_consistent_predict``), pinned to hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from src.losses.reference_arcface import ReferenceArcFace
from src.losses.reference_sphereface import ReferenceSphereFace

S = 30.0
# Class weights at 0, 90 and 225 degrees (not antipodal, so cos 2t has no ties below).
WEIGHT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.cos(math.radians(225)), math.sin(math.radians(225))]])
# Embeddings at 10, 70 and 150 degrees.
EMB = torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in (10.0, 70.0, 150.0)])


def _head(cls: type = ReferenceSphereFace, **kw: object) -> torch.nn.Module:
    head = cls(2, 3, s=S, **kw)
    with torch.no_grad():
        head.weight.copy_(WEIGHT)
    return head.eval()


def test_self_consistent_sphereface_hand_computed() -> None:
    # Label k gives s((1 - k) cos t_j + k cos 2t_j) on every class j.
    # 10 deg: t = (10, 80, 145). k=0: plain cosines, argmax 0, consistent (lead .9848 - .1736);
    #   k=1: cos 2t = (.940, -.940, .342), argmax 0, not; k=2: (.895, -2.053, 1.503), argmax 2,
    #   consistent (lead .609). Two consistent labels, the larger lead wins: 0.
    # 70 deg: t = (70, 20, 155). k=0: argmax 1, not; k=1: cos 2t = (-.766, .766, .643), consistent
    #   (lead .123); k=2: (-1.874, .592, 2.192), consistent (lead 1.600): 2, not the plain argmax 1.
    # 150 deg: t = (150, 60, 75). k=0: argmax 1; k=1: cos 2t = (.5, -.5, -.866), argmax 0;
    #   k=2: (1.866, -1.5, -1.991), argmax 0. None is consistent: the plain argmax, 1.
    prediction, consistent = _head(m=2.0).self_consistent_predict(EMB)
    assert prediction.tolist() == [0, 2, 1]
    assert consistent.tolist() == [[True, False, True], [False, True, True], [False, False, False]]
    assert _head(m=2.0).predict(EMB).tolist() == [0, 1, 1]


@pytest.mark.parametrize("cls", [ReferenceSphereFace, ReferenceArcFace])
@pytest.mark.parametrize("mixing", ["raw_label", "one_hot_broadcast"])
def test_candidate_logits_are_the_label_fed_logits_of_that_label(cls: type, mixing: str) -> None:
    torch.manual_seed(0)
    head = cls(8, 5, s=S, mixing=mixing).eval()
    emb = torch.randn(6, 8)
    cos = torch.nn.functional.normalize(emb) @ torch.nn.functional.normalize(head.weight).t()
    for k in range(5):
        fed = head.reference_logits(emb, torch.full((6,), k))
        if mixing == "one_hot_broadcast":
            fed = fed.diagonal(dim1=0, dim2=1).t()  # sample i with the margin at its own (assumed) label
        torch.testing.assert_close(head.candidate_logits(cos, head.target_cos(cos), k), fed, atol=1e-4, rtol=0)


@pytest.mark.parametrize("cls", [ReferenceSphereFace, ReferenceArcFace])
def test_self_consistent_prediction_reads_no_label_and_is_consistent(cls: type) -> None:
    torch.manual_seed(1)
    head = cls(16, 10, s=S).eval()
    emb = torch.randn(200, 16)
    prediction, consistent = head.self_consistent_predict(emb)
    fed = head.reference_logits(emb, prediction).argmax(1)
    has = consistent.any(1)
    # Where some label is consistent, feeding the prediction back makes the layer choose it.
    assert torch.equal(fed[has], prediction[has])
    assert torch.equal(prediction[~has], head.predict(emb)[~has])
    assert torch.equal(consistent, torch.stack(
        [head.reference_logits(emb, torch.full((200,), k)).argmax(1) == k for k in range(10)], dim=1))
