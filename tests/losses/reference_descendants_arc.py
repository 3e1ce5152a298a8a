"""Per-sample float64 references (plain Python + math) for sub-center ArcFace, CurricularFace,
AdaFace and UniFace, written from the papers' formulas as docs/losses.md states them, not from the
vectorised heads. Inputs are nested lists; running statistics are passed in and, for a
training-mode forward, updated here first (as the heads do) before the loss is formed."""

from __future__ import annotations

import math
import statistics

from loss_reference import cosine, cross_entropy, mean, norm, phi


def arc_target(t: float, m: float, convention: str) -> float:
    """ArcFace's target cosine for angle t: Phi(t + m), or the fallback rule on the angle."""
    if convention == "monotone":
        return phi(t + m)
    return math.cos(t + m) if t + m <= math.pi else math.cos(t) - m * math.sin(m)


# --- sub-center ArcFace ------------------------------------------------------------------------


def class_cosines(xi: list[float], w: list[list[float]], k: int) -> list[float]:
    """cos t_j = the largest cosine over class j's k sub-centres (rows j k .. j k + k - 1)."""
    return [max(cosine(xi, w[j * k + r]) for r in range(k)) for j in range(len(w) // k)]


def subcenter_outliers(x, w, labels, k: int, threshold_deg: float) -> list[bool]:
    """The dominant sub-centre of a class wins the most of its samples (ties: lower index); a
    sample is an outlier when its angle to that sub-centre exceeds the threshold."""
    votes: dict[int, list[int]] = {}
    for xi, y in zip(x, labels, strict=True):
        own = [cosine(xi, w[y * k + r]) for r in range(k)]
        votes.setdefault(y, [0] * k)[own.index(max(own))] += 1
    out = []
    for xi, y in zip(x, labels, strict=True):
        dominant = votes[y].index(max(votes[y]))
        out.append(math.degrees(math.acos(cosine(xi, w[y * k + dominant]))) > threshold_deg)
    return out


def subcenter_arcface_loss(x, w, labels, m, s, k, convention="monotone", keep=None) -> float:
    losses = []
    for i, (xi, y) in enumerate(zip(x, labels, strict=True)):
        if keep is not None and not keep[i]:
            continue
        cos = class_cosines(xi, w, k)
        logits = [s * (arc_target(math.acos(c), m, convention) if j == y else c) for j, c in enumerate(cos)]
        losses.append(cross_entropy(logits, y))
    return sum(losses) / max(len(losses), 1)


# --- CurricularFace ----------------------------------------------------------------------------


def curricular_t(t: float, x, w, labels, momentum: float) -> float:
    """t <- momentum * mean_i cos t_{y_i} + (1 - momentum) t."""
    r = mean([cosine(xi, w[y]) for xi, y in zip(x, labels, strict=True)])
    return momentum * r + (1 - momentum) * t


def curricularface_loss(x, w, labels, m, s, t, convention="fallback") -> float:
    """With the t the forward uses: T = ArcFace's target; a negative is hard when cos t_j > T and
    then becomes cos t_j (t + cos t_j)."""
    losses = []
    for xi, y in zip(x, labels, strict=True):
        target = arc_target(math.acos(cosine(xi, w[y])), m, convention)
        logits = []
        for j, wj in enumerate(w):
            c = cosine(xi, wj)
            if j == y:
                logits.append(s * target)
            else:
                logits.append(s * (c * (t + c) if c > target else c))
        losses.append(cross_entropy(logits, y))
    return mean(losses)


# --- AdaFace -----------------------------------------------------------------------------------


def adaface_norm(xi: list[float]) -> float:
    return min(100.0, max(1e-3, norm(xi)))


def adaface_statistics(mu: float, sigma: float, x, alpha: float) -> tuple[float, float]:
    """EMA of the batch mean and unbiased standard deviation of the clipped norms."""
    norms = [adaface_norm(xi) for xi in x]
    mu = alpha * mean(norms) + (1 - alpha) * mu
    if len(norms) > 1:
        sigma = alpha * statistics.stdev(norms) + (1 - alpha) * sigma
    return mu, sigma


def adaface_angle_cos(a: float, convention: str) -> float:
    """cos of the margin-shifted angle a: clipped to [0, pi], or Phi continued on both sides."""
    if convention == "clip":
        return math.cos(min(math.pi, max(0.0, a)))
    k = math.floor(a / math.pi)
    return (-1) ** k * math.cos(a) - 2 * k


def adaface_loss(x, w, labels, m, h, s, mu, sigma, convention="clip") -> float:
    """With the mu, sigma the forward uses: z = clip(h (|x| - mu) / (sigma + 1e-3), -1, 1),
    target s (cos(t_y - m z) - m - m z), others s cos t_j."""
    losses = []
    for xi, y in zip(x, labels, strict=True):
        z = min(1.0, max(-1.0, h * (adaface_norm(xi) - mu) / (sigma + 1e-3)))
        logits = []
        for j, wj in enumerate(w):
            c = cosine(xi, wj)
            logits.append(s * (adaface_angle_cos(math.acos(c) - m * z, convention) - m - m * z) if j == y else s * c)
        losses.append(cross_entropy(logits, y))
    return mean(losses)


# --- UniFace -----------------------------------------------------------------------------------


def log1p_exp(u: float) -> float:
    """log(1 + e^u) without overflow."""
    return max(u, 0.0) + math.log1p(math.exp(-abs(u)))


def uniface_loss(x, w, labels, m, s, b, lam) -> float:
    losses = []
    for xi, y in zip(x, labels, strict=True):
        total = 0.0
        for j, wj in enumerate(w):
            c = cosine(xi, wj)
            total += log1p_exp(-(s * (c - m) - b)) if j == y else lam * log1p_exp(s * c - b)
        losses.append(total)
    return mean(losses)
