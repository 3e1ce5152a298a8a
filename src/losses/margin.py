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

# Floor under sin t in the *gradients* of the angle-based targets. d t / d cos t = -1 / sin t is
# infinite at t = 0 and t = pi, so the slope divides by max(sin t, SIN_FLOOR) instead (at most
# 1 / SIN_FLOOR ~ 3e3, same sign as the true one). Values are never floored: a floor under the
# value's sin t made ArcFace's target rise with the angle within ~3e-4 rad of 0 and pi.
SIN_FLOOR = 3e-4


def _with_slope(value: torch.Tensor, x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """``value`` (computed without gradient) carrying ``slope`` as its derivative in ``x``:
    x - x.detach() is exactly 0, so the value is untouched and autograd sees slope * dx."""
    return value + slope * (x - x.detach())


def _sin_of(c: torch.Tensor) -> torch.Tensor:
    """sin t = sqrt((1 - c)(1 + c)) for c = cos t, t in [0, pi] (more accurate than 1 - c^2 near +-1)."""
    return torch.sqrt(((1.0 - c) * (1.0 + c)).clamp_min(0.0))


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


def _arc_parts(c: torch.Tensor, m: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """cos(t + m), sin(t + m) and sin t for c = cos t, all without gradient."""
    with torch.no_grad():
        sin_t = _sin_of(c)
        cos_plus = c * math.cos(m) - sin_t * math.sin(m)
        sin_plus = sin_t * math.cos(m) + c * math.sin(m)
    return cos_plus, sin_plus, sin_t


def arc_cos_plus(cos_t: torch.Tensor, m: float) -> torch.Tensor:
    """cos(t + m) = cos t cos m - sin t sin m (exact value), whose derivative in cos t,
    sin(t + m) / sin t, divides by max(sin t, SIN_FLOOR) so it stays finite at cos t = +-1."""
    with no_autocast(cos_t):
        c = at_least_float32(cos_t).clamp(-1.0, 1.0)
        cos_plus, sin_plus, sin_t = _arc_parts(c, m)
        return _with_slope(cos_plus, c, sin_plus / sin_t.clamp_min(SIN_FLOOR))


def arc_margin_cos(cos_t: torch.Tensor, m: float) -> torch.Tensor:
    """ArcFace's monotone target Phi(t + m) computed from cos t (no acos on the gradient path).

    Its derivative in cos t is |sin(t + m)| / sin t >= 0 (Phi falls as the angle grows), with the
    same SIN_FLOOR under sin t: strictly decreasing in t on all of [0, pi], finite gradients."""
    with no_autocast(cos_t):
        c = at_least_float32(cos_t).clamp(-1.0, 1.0)
        with torch.no_grad():
            k = torch.floor((torch.acos(c) + m) / math.pi).clamp_min(0.0)
        sign, offset = _sign_and_offset(k)
        cos_plus, sin_plus, sin_t = _arc_parts(c, m)
        return _with_slope(sign * cos_plus - offset, c, sin_plus.abs() / sin_t.clamp_min(SIN_FLOOR))


def combined_margin_cos(cos_t: torch.Tensor, m1: float, m2: float) -> torch.Tensor:
    """Phi(m1 t + m2) for real m1 > 0 with t = acos(cos t) exact; its derivative in cos t,
    m1 |sin(m1 t + m2)| / sin t, divides by max(sin t, SIN_FLOOR) (finite at cos = +-1)."""
    with no_autocast(cos_t):
        c = at_least_float32(cos_t).clamp(-1.0, 1.0)
        with torch.no_grad():
            a = m1 * torch.acos(c) + m2
            value = monotone_cos(a)
            slope = m1 * torch.sin(a).abs() / _sin_of(c).clamp_min(SIN_FLOOR)
        return _with_slope(value, c, slope)
