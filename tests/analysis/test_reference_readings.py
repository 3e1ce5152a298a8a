"""AUDIT ONLY: the three readings of a reference head's test embeddings (src/analysis/reference_decode.py)."""

from __future__ import annotations

import pytest
import torch

from src.analysis.reference_decode import reference_decode
from tests.losses.test_reference_decode import EMB, _head


def test_three_readings_hand_computed() -> None:
    labels = torch.tensor([0, 1, 1])
    # label-fed: row 0 label 0 keeps the plain cosines (argmax 0, hit); row 1 label 1 is cos 2t
    # (argmax 1, hit); row 2 label 1 is cos 2t = (.5, -.5, -.866) (argmax 0, miss).
    # plain argmax: (0, 1, 1), all hits; self-consistent: (0, 2, 1), two hits.
    got = reference_decode(_head(m=2.0), EMB, labels, chunk=2)
    assert got["label_fed_acc"] == pytest.approx(2 / 3)
    assert got["label_free_acc"] == pytest.approx(1.0)
    assert got["self_consistent_acc"] == pytest.approx(2 / 3)
    assert got["consistent_labels_per_image"] == pytest.approx(4 / 3)
    assert got["no_consistent_label_share"] == pytest.approx(1 / 3)
    assert got["images"] == 3


def test_raw_label_readings_do_not_depend_on_the_chunk() -> None:
    torch.manual_seed(0)
    from src.losses.reference_sphereface import ReferenceSphereFace

    head = ReferenceSphereFace(16, 10, m=2.0).eval()
    emb, labels = torch.randn(300, 16), torch.randint(0, 10, (300,))
    assert reference_decode(head, emb, labels, chunk=7) == pytest.approx(reference_decode(head, emb, labels, chunk=128))


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        reference_decode(_head(m=2.0), EMB[:0], torch.tensor([], dtype=torch.long))
