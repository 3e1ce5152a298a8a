"""Independent per-sample float64 reference formulas (plain Python + math), written from the
definitions in docs/losses.md, not from the vectorised heads. Inputs are nested lists."""

from __future__ import annotations

import math


def dot(a: list[float], b: list[float]) -> float:
    return sum(u * v for u, v in zip(a, b, strict=True))


def norm(a: list[float]) -> float:
    return math.sqrt(dot(a, a))


def cosine(a: list[float], b: list[float]) -> float:
    na, nb = norm(a), norm(b)
    if na == 0.0 or nb == 0.0:
        return 0.0
    return max(-1.0, min(1.0, dot(a, b) / (na * nb)))


def phi(a: float) -> float:
    """(-1)^k cos a - 2k, k = floor(a / pi), written as a direct piece lookup."""
    k = max(0, math.floor(a / math.pi))
    return (-1) ** k * math.cos(a) - 2 * k


def psi(t: float, m: int) -> float:
    """SphereFace's psi on t in [k pi/m, (k+1) pi/m], k = 0..m-1, straight from the paper."""
    k = min(m - 1, math.floor(t * m / math.pi))
    return (-1) ** k * math.cos(m * t) - 2 * k


def cross_entropy(logits: list[float], y: int) -> float:
    top = max(logits)
    return top + math.log(sum(math.exp(v - top) for v in logits)) - logits[y]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def margin_loss(x, w, labels, target_fn, scale_fn) -> float:
    """Mean CE where non-target logits are scale * cos t_j and the target is target_fn(cos, t, x)."""
    losses = []
    for xi, y in zip(x, labels, strict=True):
        scale = scale_fn(xi)
        logits = []
        for j, wj in enumerate(w):
            c = cosine(xi, wj)
            logits.append(target_fn(c, math.acos(c), xi) if j == y else scale * c)
        losses.append(cross_entropy(logits, y))
    return mean(losses)


def softmax_loss(x, w, b, labels, label_smoothing: float = 0.0) -> float:
    """Cross-entropy against the smoothed target (1 - eps) one_hot(y) + eps / C."""

    def smoothed(logits: list[float], y: int) -> float:
        nll = [cross_entropy(logits, j) for j in range(len(logits))]
        return (1 - label_smoothing) * nll[y] + label_smoothing * mean(nll)

    return mean(
        [smoothed([dot(xi, wj) + bj for wj, bj in zip(w, b, strict=True)], y) for xi, y in zip(x, labels, strict=True)]
    )


def normface_loss(x, w, labels, s) -> float:
    return margin_loss(x, w, labels, lambda c, t, xi: s * c, lambda xi: s)


def modified_softmax_loss(x, w, labels) -> float:
    return margin_loss(x, w, labels, lambda c, t, xi: norm(xi) * c, norm)


def cosface_loss(x, w, labels, m, s) -> float:
    return margin_loss(x, w, labels, lambda c, t, xi: s * (c - m), lambda xi: s)


def arcface_loss(x, w, labels, m, s, convention="monotone") -> float:
    def target(c, t, xi):
        if convention == "monotone":
            return s * phi(t + m)
        return s * (math.cos(t + m) if t + m <= math.pi else c - m * math.sin(m))

    return margin_loss(x, w, labels, target, lambda xi: s)


def combined_loss(x, w, labels, m1, m2, m3, s) -> float:
    return margin_loss(x, w, labels, lambda c, t, xi: s * (phi(m1 * t + m2) - m3), lambda xi: s)


def sphereface_lambda(step, base, gamma, power, lam_min) -> float:
    return max(lam_min, base * (1.0 + gamma * step) ** (-power))


def sphereface_loss(x, w, labels, m, lam, s=None) -> float:
    def scale(xi):
        return norm(xi) if s is None else s

    return margin_loss(x, w, labels, lambda c, t, xi: scale(xi) * (lam * c + psi(t, m)) / (1.0 + lam), scale)


def center_loss(x, w, b, centers, labels, lam) -> float:
    pull = mean(
        [sum((u - v) ** 2 for u, v in zip(xi, centers[y], strict=True)) for xi, y in zip(x, labels, strict=True)]
    )
    return softmax_loss(x, w, b, labels) + lam / 2.0 * pull


def mhe_energy(w, power) -> float:
    units = [[v / norm(wi) for v in wi] for wi in w]
    vals = []
    for i, a in enumerate(units):
        for j, b in enumerate(units):
            if i != j:
                d = norm([u - v for u, v in zip(a, b, strict=True)])
                vals.append(-math.log(d) if power == 0 else d ** (-power))
    return mean(vals)


def _unit(v):
    n = norm(v)
    return [u / n for u in v]


def contrastive_loss(x, labels, m, mining) -> float:
    """Hadsell et al.: same class d^2 / 2, different class max(0, m - d)^2 / 2 on unit vectors."""
    u = [_unit(v) for v in x]
    n = len(u)

    def d(i, j):
        return norm([a - b for a, b in zip(u[i], u[j], strict=True)])

    if mining == "all":
        terms = []
        for i in range(n):
            for j in range(i + 1, n):
                if labels[i] == labels[j]:
                    terms.append(d(i, j) ** 2 / 2)
                else:
                    terms.append(max(0.0, m - d(i, j)) ** 2 / 2)
        return mean(terms)
    terms = []  # hard: per anchor, farthest positive and nearest negative
    for i in range(n):
        pos = [d(i, j) for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [d(i, j) for j in range(n) if labels[j] != labels[i]]
        if pos:
            terms.append(max(pos) ** 2 / 2)
        if neg:
            terms.append(max(0.0, m - min(neg)) ** 2 / 2)
    return mean(terms)


def triplet_loss(x, labels, m, mining) -> float:
    """FaceNet: max(0, |a - p|^2 - |a - n|^2 + m) on unit vectors."""
    u = [_unit(v) for v in x]
    n = len(u)

    def d2(i, j):
        return sum((a - b) ** 2 for a, b in zip(u[i], u[j], strict=True))

    terms = []
    for a in range(n):
        negs = [d2(a, k) for k in range(n) if labels[k] != labels[a]]
        poss = [d2(a, p) for p in range(n) if p != a and labels[p] == labels[a]]
        if not negs or not poss:
            continue
        if mining == "hard":
            terms.append(max(0.0, max(poss) - min(negs) + m))
            continue
        for dap in poss:
            if mining == "all":
                terms.extend(max(0.0, dap - dan + m) for dan in negs)
            else:  # semihard: nearest negative farther than the positive, else the farthest one
                farther = [dan for dan in negs if dan > dap]
                dan = min(farther) if farther else max(negs)
                terms.append(max(0.0, dap - dan + m))
    return mean(terms)
