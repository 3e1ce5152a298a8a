"""AUDIT ONLY: how much of a reference head's label-fed accuracy a label-free reader recovers.

The reference's margin layers choose their decision rule by the true label
(src/losses/reference_protocol.py). For the test embeddings of such a head this scores three
readings of the same weights:

* ``label_fed_acc``: the reference's protocol, labels fed to the layer (not a valid accuracy);
* ``label_free_acc``: argmax of s cos t_j, the head's own label-free prediction;
* ``self_consistent_acc``: ``ReferenceHead.self_consistent_predict``, which tries every label's
  rule and keeps a label whose rule picks it; no label is read.

``run_analyses`` adds the result as ``reference_decode`` when the model's head is a reference head,
so ``python -m src.evaluate`` on a run's last checkpoint scores an audit run's final weights.
"""

from __future__ import annotations

from typing import Any

import torch

from src.losses.reference_protocol import ReferenceHead

# Rows per chunk: the raw-label figures do not depend on it; one_hot_broadcast's label-fed score
# averages over the chunk's N x N placements, as Keras did over a batch of this size.
CHUNK = 128


def reference_decode(head: ReferenceHead, embeddings: torch.Tensor, labels: torch.Tensor,
                     chunk: int = CHUNK) -> dict[str, Any]:
    """The three accuracies (fractions) and how many labels are self-consistent per image."""
    if len(embeddings) == 0:
        raise ValueError("reference_decode needs at least one test embedding")
    fed = plain = consistent_hits = 0.0
    consistent_count = none_consistent = 0.0
    with torch.no_grad():
        for start in range(0, len(embeddings), chunk):
            emb, y = embeddings[start:start + chunk], labels[start:start + chunk]
            fed += float(head.reference_correct(emb, y).sum())
            plain += float((head.predict(emb) == y).sum())
            prediction, consistent = head.self_consistent_predict(emb)
            consistent_hits += float((prediction == y).sum())
            per_image = consistent.sum(dim=1)
            consistent_count += float(per_image.sum())
            none_consistent += float((per_image == 0).sum())
    n = float(len(embeddings))
    return {
        "label_fed_acc": fed / n,
        "label_free_acc": plain / n,
        "self_consistent_acc": consistent_hits / n,
        "consistent_labels_per_image": consistent_count / n,
        "no_consistent_label_share": none_consistent / n,
        "images": int(n),
    }
