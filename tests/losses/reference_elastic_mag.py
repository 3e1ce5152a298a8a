"""Per-sample float64 references (plain Python + math) for ElasticFace and MagFace, written from the
papers' formulas as docs/losses.md states them, not from the vectorised heads. Inputs are nested
lists. ElasticFace's random draws are passed in (standard normals z_i): the reference turns them
into margins itself, including ElasticFace+'s assignment by rank."""

from __future__ import annotations

import math

from loss_reference import cosine, cross_entropy, mean, norm


def phi_all(a: float) -> float:
    """Phi(a) = (-1)^k cos a - 2k, k = floor(a / pi), for any real a (k < 0 too)."""
    k = math.floor(a / math.pi)
    return (-1) ** k * math.cos(a) - 2 * k


def margin_loss(x, w, labels, s: float, target) -> float:
    """Mean cross-entropy of s cos t_j with the true class's logit s * target(i, cos t_y)."""
    losses = []
    for i, (xi, y) in enumerate(zip(x, labels, strict=True)):
        logits = [s * (target(i, cosine(xi, wj)) if j == y else cosine(xi, wj)) for j, wj in enumerate(w)]
        losses.append(cross_entropy(logits, y))
    return mean(losses)


# --- ElasticFace -------------------------------------------------------------------------------


def elastic_margins(z: list[float], m: float, sigma: float, target_cos: list[float], by_rank: bool) -> list[float]:
    """m_i = m + sigma z_i; by rank (ElasticFace+): the draws sorted ascending go to the samples
    sorted by their true-class cosine descending (ties: the earlier sample first)."""
    draws = [m + sigma * zi for zi in z]
    if not by_rank:
        return draws
    order = sorted(range(len(target_cos)), key=lambda i: -target_cos[i])
    ascending = sorted(draws)
    out = [0.0] * len(draws)
    for rank, i in enumerate(order):
        out[i] = ascending[rank]
    return out


def true_cosines(x, w, labels) -> list[float]:
    return [cosine(xi, w[y]) for xi, y in zip(x, labels, strict=True)]


def elasticface_loss(x, w, labels, s: float, margins: list[float], form: str) -> float:
    """Target Phi(t_y + m_i) (arc) or cos t_y - m_i (cos), others s cos t_j."""
    if form == "arc":
        return margin_loss(x, w, labels, s, lambda i, c: phi_all(math.acos(c) + margins[i]))
    return margin_loss(x, w, labels, s, lambda i, c: c - margins[i])


# --- MagFace -----------------------------------------------------------------------------------


def mag_a(xi: list[float], l_a: float, u_a: float) -> float:
    return min(u_a, max(l_a, norm(xi)))


def mag_margin(a: float, l_a: float, u_a: float, l_m: float, u_m: float) -> float:
    return (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m


def mag_g(a: float, u_a: float) -> float:
    return 1.0 / a + a / u_a**2


def magface_loss(x, w, labels, s, l_a, u_a, l_m, u_m, lambda_g, convention="monotone") -> float:
    """mean_i [CE_i + lambda_g g(a_i)], target s Phi(t_y + m(a_i)); ``easy``: s cos t_y if cos t_y <= 0."""
    total = []
    for xi, y in zip(x, labels, strict=True):
        a = mag_a(xi, l_a, u_a)
        m = mag_margin(a, l_a, u_a, l_m, u_m)
        logits = []
        for j, wj in enumerate(w):
            c = cosine(xi, wj)
            if j != y or (convention == "easy" and c <= 0):  # easy: no margin for cos t_y <= 0
                logits.append(s * c)
            else:
                logits.append(s * phi_all(math.acos(c) + m))
        total.append(cross_entropy(logits, y) + lambda_g * mag_g(a, u_a))
    return mean(total)


def numeric_gradient(f, values: list[list[float]], eps: float = 1e-6) -> list[list[float]]:
    """Central differences of the scalar f(values) in every entry of a nested list."""
    grad = []
    for r, row in enumerate(values):
        grad.append([])
        for k in range(len(row)):
            up = [list(v) for v in values]
            down = [list(v) for v in values]
            up[r][k] += eps
            down[r][k] -= eps
            grad[r].append((f(up) - f(down)) / (2 * eps))
    return grad
