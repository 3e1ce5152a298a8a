"""Per-sample float64 references (plain Python + math) for L-Softmax, SphereFace-R and SphereFace2,
written from the papers' formulas (docs/losses.md, "The descendants"), not from the heads' code.
Inputs are nested lists; the shared pieces (cosine, psi, Phi, cross-entropy) are loss_reference's."""

from __future__ import annotations

import math
from collections.abc import Callable

from loss_reference import cosine, cross_entropy, dot, mean, norm, phi, psi

# ---------------------------------------------------------------------------------------------
# L-Softmax (Liu et al. 2016)
# ---------------------------------------------------------------------------------------------


def lsoftmax_logits(xi: list[float], w: list[list[float]], y: int, m: int, lam: float) -> list[float]:
    """f_j = w_j . x; f_y = |w_y||x| (lam cos t_y + psi(t_y)) / (1 + lam)."""
    logits = [dot(xi, wj) for wj in w]
    c = cosine(xi, w[y])
    logits[y] = norm(w[y]) * norm(xi) * (lam * c + psi(math.acos(c), m)) / (1.0 + lam)
    return logits


def lsoftmax_loss(x, w, labels, m: int, lam: float) -> float:
    return mean([cross_entropy(lsoftmax_logits(xi, w, y, m, lam), y) for xi, y in zip(x, labels, strict=True)])


# ---------------------------------------------------------------------------------------------
# SphereFace-R (Liu et al. 2022)
# ---------------------------------------------------------------------------------------------


def spherefacer_eta(c: float, is_target: bool, m: float, margin_type: str) -> float:
    """The margin-modified cosine of one class, from the angle t = acos(c)."""
    t = math.acos(c)
    if margin_type == "v0":
        return phi(m * t) if is_target else c
    if margin_type == "v1":
        return math.cos(min(m * t, math.pi)) if is_target else c
    return c if is_target else math.cos(t / m)  # v2


def spherefacer_deltas(x, w, labels, m: float, margin_type: str) -> list[list[float]]:
    """eta_j - cos t_j for every sample and class: what CGD adds without gradient."""
    out = []
    for xi, y in zip(x, labels, strict=True):
        row = []
        for j, wj in enumerate(w):
            c = cosine(xi, wj)
            row.append(spherefacer_eta(c, j == y, m, margin_type) - c)
        out.append(row)
    return out


def spherefacer_with_deltas(x, w, labels, deltas, s: float, feature_norm: str, soft_weight: float) -> float:
    """Mean CE of scale (cos t_j + delta_ij), scale = s (hard) or |x| (none, soft); soft adds
    soft_weight mean | |x| - s |. With deltas fixed this is the function whose gradient CGD uses."""
    losses = []
    for xi, y, d in zip(x, labels, deltas, strict=True):
        scale = s if feature_norm == "hard" else norm(xi)
        losses.append(cross_entropy([scale * (cosine(xi, wj) + dj) for wj, dj in zip(w, d, strict=True)], y))
    loss = mean(losses)
    if feature_norm == "soft":
        loss += soft_weight * mean([abs(norm(xi) - s) for xi in x])
    return loss


def spherefacer_loss(x, w, labels, m: float, s: float, margin_type: str, feature_norm: str = "hard",
                     soft_weight: float = 0.01) -> float:
    """The forward value: deltas evaluated at x itself."""
    deltas = spherefacer_deltas(x, w, labels, m, margin_type)
    return spherefacer_with_deltas(x, w, labels, deltas, s, feature_norm, soft_weight)


# ---------------------------------------------------------------------------------------------
# SphereFace2 (Wen et al. 2022)
# ---------------------------------------------------------------------------------------------


def g(z: float, t: float) -> float:
    return 2.0 * ((z + 1.0) / 2.0) ** t - 1.0


def softplus(u: float) -> float:
    """log(1 + e^u) without overflow."""
    return max(u, 0.0) + math.log1p(math.exp(-abs(u)))


def sphereface2_logits(xi, w, y: int, r: float, m: float, t: float, b: float) -> list[float]:
    return [r * (g(cosine(xi, wj), t) - (m if j == y else -m)) + b for j, wj in enumerate(w)]


def sphereface2_with_adjusted(x, w, labels, adjust, alpha: float, r: float, b: float) -> float:
    """alpha softplus(-z_y) + (1 - alpha) sum_{j != y} softplus(z_j), z = r (cos + adjust) + b,
    averaged over samples; ``adjust[i][j]`` fixed (the detached g(cos) -/+ m - cos)."""
    losses = []
    for xi, y, a in zip(x, labels, adjust, strict=True):
        z = [r * (cosine(xi, wj) + aj) + b for wj, aj in zip(w, a, strict=True)]
        losses.append(alpha * softplus(-z[y]) + (1.0 - alpha) * sum(softplus(z[j]) for j in range(len(w)) if j != y))
    return mean(losses)


def sphereface2_adjustments(x, w, labels, m: float, t: float) -> list[list[float]]:
    out = []
    for xi, y in zip(x, labels, strict=True):
        out.append([g(cosine(xi, wj), t) - (m if j == y else -m) - cosine(xi, wj) for j, wj in enumerate(w)])
    return out


def sphereface2_loss(x, w, labels, alpha: float, r: float, m: float, t: float, b: float) -> float:
    return sphereface2_with_adjusted(x, w, labels, sphereface2_adjustments(x, w, labels, m, t), alpha, r, b)


def _sigmoid(u: float) -> float:
    return math.exp(-softplus(-u))


def sphereface2_bias_by_bisection(num_classes: int, alpha: float, r: float, m: float, t: float) -> float:
    """The b minimising the loss of a sample whose cosines are all 0, found by bisection on the
    (increasing) derivative -alpha sigma(-(a_y + b)) + (1 - alpha)(C - 1) sigma(a_i + b)."""
    a_y, a_i = r * (g(0.0, t) - m), r * (g(0.0, t) + m)

    def slope(b: float) -> float:
        return -alpha * _sigmoid(-(a_y + b)) + (1.0 - alpha) * (num_classes - 1) * _sigmoid(a_i + b)

    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def opensphere_bias_formula(num_classes: int, alpha: float, r: float, m: float, t: float) -> float:
    """The public code's closed form, transcribed as written (for pinning where it fails):
    log(2z) - a_i - log(1 - z + sqrt((1 - z)^2 + 4 z e^{a_y - a_i}))."""
    z = alpha / ((1.0 - alpha) * (num_classes - 1.0))
    a_y, a_i = r * (2.0 * 0.5**t - 1.0 - m), r * (2.0 * 0.5**t - 1.0 + m)
    temp = (1.0 - z) ** 2 + 4.0 * z * math.exp(a_y - a_i)
    return math.log(2.0 * z) - a_i - math.log(1.0 - z + math.sqrt(temp))


# ---------------------------------------------------------------------------------------------
# Numerical gradient (central differences) of a reference, for the detached heads
# ---------------------------------------------------------------------------------------------


Matrix = list[list[float]]


def numerical_grad(fn: Callable[[Matrix], float], x: Matrix, h: float = 1e-6) -> Matrix:
    """d fn / d x by central differences, entry by entry."""
    grad = []
    for i, row in enumerate(x):
        grow = []
        for k in range(len(row)):
            plus = [list(r) for r in x]
            minus = [list(r) for r in x]
            plus[i][k] += h
            minus[i][k] -= h
            grow.append((fn(plus) - fn(minus)) / (2.0 * h))
        grad.append(grow)
    return grad
