"""Shared machinery of the audit-only heads that reproduce the reference study's Keras layers
(DenseAI/deep-learning-and-fashion-mnist; facts and commit ids in docs/reference_protocol.md).

The reference's margin layers took the true label as a second input, at test time too, and mixed
a per-class "target" matrix into the plain logits with that label:

* ``raw_label`` (the code behind every reported margin figure: SphereFace at b0149bd, ArcFace at
  87d005d): the label column y of shape (N, 1) holds raw class indices, so
  ``plain * (1 - y) + target * y`` scales *every* class of a row with label k:
  ``(1 - k) plain_j + k target_j``;
* ``one_hot_broadcast`` (the code at HEAD 49e21d8): ``one_hot`` of the (N, 1) column is
  (N, 1, C); against the (N, C) matrices it broadcasts to (N, N, C): entry [i, j] is sample j's
  logits with the margin put on sample i's class. Keras then averages the loss and the accuracy
  over all N x N pairs, each pair scored against sample j's label.

Audit only: ``scores`` / ``predict`` stay label-free, as for every head; ``reference_logits`` and
``reference_correct`` are the reference's label-fed test-time view and are named so.
"""

from __future__ import annotations

import torch
from torch import nn

from src.config.checks import check_choice, check_number
from src.losses.base import LossHead

MIXINGS = ("raw_label", "one_hot_broadcast")
# Keras' backend epsilon: categorical_crossentropy clips probabilities to [eps, 1 - eps].
KERAS_EPSILON = 1e-7


def mix_raw_label(plain: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, C): ``plain * (1 - y) + target * y`` with y the (N, 1) column of raw class indices."""
    y = labels.view(-1, 1).to(plain.dtype)
    return plain * (1.0 - y) + target * y


def mix_one_hot_broadcast(plain: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, N, C): the one-hot of the (N, 1) label column is (N, 1, C) and broadcasts against the
    (N, C) matrices exactly as TensorFlow broadcasts it: out[i, j] = sample j, margin at y_i."""
    mask = nn.functional.one_hot(labels.view(-1, 1), plain.shape[1]).to(plain.dtype)  # (N, 1, C)
    return plain * (1.0 - mask) + target * mask


def keras_categorical_crossentropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample -log p_y with p = softmax(logits) clipped to [eps, 1 - eps], as Keras 2 does on
    a softmax output (the clip also zeroes the gradient of samples with p_y > 1 - eps).
    ``logits`` (..., C); ``labels`` broadcastable to logits.shape[:-1]."""
    p = torch.softmax(logits.float(), dim=-1).clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    p_y = p.gather(-1, labels.expand(logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return -torch.log(p_y)


class ReferenceHead(LossHead):
    """Base of the reference heads: normalised features and weights, scale s, a per-class target
    matrix from the subclass (``target_cos``), the reference's label mixing and loss."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 30.0, mixing: str = "raw_label",
                 weight_l2: float = 0.0) -> None:
        super().__init__(embedding_dim, num_classes)  # xavier_uniform = Keras glorot_uniform
        name = type(self).__name__
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner=name)
        self.mixing = check_choice("loss.mixing", mixing, MIXINGS, owner=name)
        # Keras regularizers.l2(c) adds c * sum(W^2) to the loss (the ArcFace script used 1e-4).
        self.weight_l2 = check_number("loss.weight_l2", weight_l2, low=0.0, owner=name)

    def target_cos(self, cos: torch.Tensor) -> torch.Tensor:
        """The reference's margin target, applied to every entry of the (N, C) cosine matrix."""
        raise NotImplementedError

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.s * self.cosines(embeddings)

    def reference_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The reference's label-fed logits: (N, C) for raw_label, (N, N, C) for one_hot_broadcast.
        What Keras' ``validation_data`` and ``model.predict`` saw; never a prediction here."""
        cos = self.cosines(embeddings)
        mix = mix_raw_label if self.mixing == "raw_label" else mix_one_hot_broadcast
        return self.s * mix(cos, self.target_cos(cos), labels)

    def candidate_logits(self, cos: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
        """(N, C): the logits the layer would give every row had it been fed label k; for
        one_hot_broadcast the diagonal entry (sample i, margin at its own assumed label)."""
        labels = torch.full((cos.shape[0],), k, dtype=torch.long, device=cos.device)
        if self.mixing == "raw_label":
            return self.s * mix_raw_label(cos, target, labels)
        mask = nn.functional.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.s * (cos * (1.0 - mask) + target * mask)

    def self_consistent_predict(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A label-free reading of the label-fed layer: for every candidate label k apply the rule
        the layer uses for k; k is *consistent* when that rule's argmax is k itself. Returns
        (prediction (N,), consistent (N, C) bool): of several consistent labels the one with the
        largest lead over its runner-up, and the plain cosine argmax when none is consistent.
        No label is read; audit only (the reference never decoded this way)."""
        cos = self.cosines(embeddings).float()
        target = self.target_cos(cos).float()
        n, classes = cos.shape
        lead = torch.full((n, classes), -torch.inf, device=cos.device)
        consistent = torch.zeros(n, classes, dtype=torch.bool, device=cos.device)
        for k in range(classes):
            logits = self.candidate_logits(cos, target, k)
            top2 = logits.topk(2, dim=1).values
            consistent[:, k] = logits.argmax(dim=1) == k
            lead[:, k] = torch.where(consistent[:, k], logits[:, k] - top2[:, 1], -torch.inf)
        prediction = torch.where(consistent.any(dim=1), lead.argmax(dim=1), cos.argmax(dim=1))
        return prediction, consistent

    def reference_correct(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) per-sample Keras 'accuracy' under the reference protocol: 1/0 for raw_label; for
        one_hot_broadcast the share of the batch's N margin placements under which sample j's
        argmax is its label (so it depends on the batch the sample sits in)."""
        hits = (self.reference_logits(embeddings, labels).argmax(dim=-1) == labels.view(-1)).float()
        return hits if hits.dim() == 1 else hits.mean(dim=0)

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.mixing != "raw_label":
            raise ValueError("one_hot_broadcast logits are (N, N, C): use reference_logits")
        return self.reference_logits(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Keras: mean over samples (and, for (N, N, C), over the broadcast pairs) plus the L2 term.
        loss = keras_categorical_crossentropy(self.reference_logits(embeddings, labels), labels).mean()
        if self.weight_l2:
            loss = loss + self.weight_l2 * self.weight.float().pow(2).sum()
        return loss
