"""L-Softmax, the large-margin softmax loss (Liu et al. 2016, "Large-Margin Softmax Loss for
Convolutional Neural Networks"; authors' Caffe layer: wy1iu/LargeMargin_Softmax_Loss,
``src/caffe/layers/largemargin_inner_product_layer.cpp``).

Nothing is normalised and there is no bias:

    non-target  f_j = w_j . x = |w_j| |x| cos t_j
    target      f_y = |w_y| |x| (lambda cos t_y + psi(t_y)) / (1 + lambda)

psi(t) = (-1)^k cos(m t) - 2k = Phi(m t) with integer m, cos(m t) the Chebyshev polynomial of
cos t (``src.losses.margin.sphere_psi``). SphereFace is this loss with |w_j| = 1, so the head is
SphereFace with the scale |x| replaced by |w_j| |x|: the lambda schedule, its checkpointed step
buffer and the margin are SphereFace's own code, not a copy.

Defaults are the authors' MNIST recipe (``myexamples/mnist/model/mnist_train_test.prototxt``):
m = 4 and lambda = max(0, 1000 (1 + 2.5e-5 step)^-35), which stays above 100 for ~2,700 steps,
falls through 1 at ~8,700 steps and is ~1e-3 by 20,000 steps: the network first learns as a plain
softmax and the margin takes over gradually. With lambda at or near 0 from the start the loss is
~3 |w||x| per sample for m = 4 (psi(pi / 2) = -3) and the target's curvature across the angle is
|w| (1 - m^2) / |x|, unbounded as |x| shrinks: the runs of the authors' issues #3 and #10 blew up
(loss 87.34, feature length inf) once lambda had decayed to ~0.06. docs/losses.md has the details;
``tests/losses/test_descendants_sphere.py`` pins the mechanism.
"""

from __future__ import annotations

import torch

from src.losses.base import at_least_float32, no_autocast
from src.losses.sphereface import SphereFace


class LSoftmax(SphereFace):
    """L-Softmax with integer margin m >= 1 and SphereFace's lambda annealing. Scores are the
    label-free inner products w_j . x (the layer without its margin, as the authors' test net)."""

    loss_name = "lsoftmax"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: int = 4,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 2.5e-5,
        lambda_power: float = 35.0,
        lambda_min: float = 0.0,
        anneal: bool = True,
    ) -> None:
        # normalize_features and s do not exist for L-Softmax: the scale is |w_j| |x|.
        super().__init__(
            embedding_dim, num_classes, m=m, lambda_base=lambda_base, lambda_gamma=lambda_gamma,
            lambda_power=lambda_power, lambda_min=lambda_min, anneal=anneal, normalize_features=False,
        )

    def _scaled_cosines(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cosines (N, C), scale (N, C) = |x| |w_j|): SphereFace's |x| times each class's |w_j|."""
        cos, x_norm = super()._scaled_cosines(embeddings)
        with no_autocast(embeddings):
            w_norm = torch.linalg.vector_norm(at_least_float32(self.weight).to(cos.dtype), dim=1)
        return cos, x_norm * w_norm
