"""The one monotone margin function shared by SphereFace, ArcFace and the combined margin.

    Phi(a) = (-1)^k cos(a) - 2k,   k = floor(a / pi),   a >= 0.

On [k pi, (k+1) pi] the term (-1)^k cos(a) falls from 1 to -1 and the offset -2k glues the pieces
together, so Phi is continuous and strictly decreasing for all a >= 0 and equals cos(a) on
[0, pi]. SphereFace's psi(t) = (-1)^k cos(m t) - 2k is exactly Phi(m t); ArcFace's target is
Phi(t + m); the combined margin's is Phi(m1 t + m2) - m3.

``k`` is piecewise constant, so it is computed under ``no_grad``: the gradient is that of
(-1)^k cos(a), and because Phi is continuous, rounding that puts an angle on the wrong side of a
piece boundary changes the value only by rounding error.

All functions promote half precision to float32 (float64 stays float64, for gradcheck) and run
with autocast off, so the margin math never happens in bf16/fp16.
"""

from __future__ import annotations

import math

import torch

from src.losses.base import at_least_float32, no_autocast

# Margin for the clamp before acos in ``combined_margin_cos``: d/dc acos(c) = -1/sqrt(1 - c^2)
# is infinite at c = +-1, and 1 - 1e-7 still differs from 1 in float32 (ulp 6e-8 below 1).
ACOS_EPS = 1e-7
# Floor under 1 - cos^2 in ``arc_margin_cos``: sin t = sqrt(1 - cos^2) has an infinite gradient
# at cos = +-1; with the floor the gradient is bounded by 1 / sqrt(SIN_EPS) ~ 3e3.
SIN_EPS = 1e-7


def _sign_and_offset(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(-1)^k and 2k for a (no-grad) integer-valued float tensor k."""
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign, 2.0 * k


def monotone_cos(angle: torch.Tensor) -> torch.Tensor:
    """Phi(angle) for angle >= 0 (negative angles are treated as piece k = 0, i.e. cos)."""
    with no_autocast(angle):
        a = at_least_float32(angle)
        with torch.no_grad():
            k = torch.floor(a / math.pi).clamp_min(0.0)
        sign, offset = _sign_and_offset(k)
        return sign * torch.cos(a) - offset


def chebyshev_cos(cos_t: torch.Tensor, m: int) -> torch.Tensor:
    """cos(m t) = T_m(cos t) by the recurrence T_{n+1} = 2c T_n - T_{n-1}: a polynomial in
    cos t, so its gradient is finite everywhere (no acos on the gradient path)."""
    if m < 0:
        raise ValueError(f"chebyshev_cos: m={m} must be an integer >= 0")
    prev, cur = torch.ones_like(cos_t), cos_t
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cos_t * cur - prev
    return cur


def sphere_psi(cos_t: torch.Tensor, m: int) -> torch.Tensor:
    """SphereFace's psi(t) = Phi(m t) = (-1)^k cos(m t) - 2k, from cos t and integer m >= 1.

    cos(m t) is the Chebyshev polynomial T_m(cos t); k = floor(m t / pi) in 0..m-1 is found
    without gradient from acos of the clamped cosine."""
    with no_autocast(cos_t):
        c = at_least_float32(cos_t).clamp(-1.0, 1.0)
        with torch.no_grad():
            # t = pi gives m t / pi = m; clamping to m - 1 gives the same value (continuity).
            k = torch.floor(m * torch.acos(c) / math.pi).clamp(0.0, float(m - 1))
        sign, offset = _sign_and_offset(k)
        return sign * chebyshev_cos(c, m) - offset


def arc_cos_plus(cos_t: torch.Tensor, m: float) -> torch.Tensor:
    """cos(t + m) = cos t cos m - sin t sin m, with sin t = sqrt(max(1 - cos^2 t, SIN_EPS)) so
    the gradient stays finite at cos t = +-1 (t in [0, pi], hence sin t >= 0)."""
    with no_autocast(cos_t):
        c = at_least_float32(cos_t).clamp(-1.0, 1.0)
        sin_t = torch.sqrt(torch.clamp(1.0 - c * c, min=SIN_EPS))
        return c * math.cos(m) - sin_t * math.sin(m)


def arc_margin_cos(cos_t: torch.Tensor, m: float) -> torch.Tensor:
    """ArcFace's monotone target Phi(t + m) computed from cos t (no acos on the gradient path)."""
    with no_autocast(cos_t):
        c = at_least_float32(cos_t).clamp(-1.0, 1.0)
        with torch.no_grad():
            k = torch.floor((torch.acos(c) + m) / math.pi).clamp_min(0.0)
        sign, offset = _sign_and_offset(k)
        return sign * arc_cos_plus(c, m) - offset


def combined_margin_cos(cos_t: torch.Tensor, m1: float, m2: float) -> torch.Tensor:
    """Phi(m1 t + m2) for real m1 > 0: t = acos of the cosine clamped to
    [-1 + ACOS_EPS, 1 - ACOS_EPS], so values and gradients stay finite at cos = +-1."""
    with no_autocast(cos_t):
        c = at_least_float32(cos_t).clamp(-1.0 + ACOS_EPS, 1.0 - ACOS_EPS)
        return monotone_cos(m1 * torch.acos(c) + m2)
