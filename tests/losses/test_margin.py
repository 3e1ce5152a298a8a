"""The shared monotone function Phi and the margin helpers built on it."""

from __future__ import annotations

import math

import pytest
import torch
from loss_reference import phi, psi

from src.losses.margin import (
    arc_margin_cos,
    chebyshev_cos,
    combined_margin_cos,
    monotone_cos,
    sphere_psi,
)

ANGLES = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)


def test_phi_matches_reference_and_is_cos_on_first_piece() -> None:
    a = torch.linspace(0.0, 7 * math.pi, 3001, dtype=torch.float64)
    got = monotone_cos(a)
    want = torch.tensor([phi(v) for v in a.tolist()], dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    first = a <= math.pi
    torch.testing.assert_close(got[first], torch.cos(a[first]), atol=1e-12, rtol=0)


def test_phi_is_continuous_and_strictly_decreasing() -> None:
    a = torch.linspace(0.0, 7 * math.pi, 70001, dtype=torch.float64)
    v = monotone_cos(a)
    steps = v[1:] - v[:-1]
    assert (steps < 0).all()
    assert steps.abs().max() < 1e-3  # no jump at the piece boundaries k pi


@pytest.mark.parametrize("m", range(0, 8))
def test_chebyshev_is_cos_m_t(m: int) -> None:
    torch.testing.assert_close(chebyshev_cos(torch.cos(ANGLES), m), torch.cos(m * ANGLES), atol=1e-10, rtol=0)


@pytest.mark.parametrize("m", range(1, 7))
def test_sphere_psi_is_phi_of_m_t_and_the_paper_psi(m: int) -> None:
    got = sphere_psi(torch.cos(ANGLES), m)
    torch.testing.assert_close(got, monotone_cos(m * ANGLES), atol=1e-9, rtol=0)
    want = torch.tensor([psi(t, m) for t in ANGLES.tolist()], dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("m", [0.0, 0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0])
def test_arc_margin_is_phi_of_t_plus_m(m: float) -> None:
    got = arc_margin_cos(torch.cos(ANGLES), m)
    want = torch.tensor([phi(t + m) for t in ANGLES.tolist()], dtype=torch.float64)
    # Exact up to the ends: only the gradient, never the value, meets a floor under sin t.
    torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


@pytest.mark.parametrize(("m1", "m2"), [(1.0, 0.0), (1.0, 0.3), (1.35, 0.25), (2.0, 1.0)])
def test_combined_margin_is_phi(m1: float, m2: float) -> None:
    got = combined_margin_cos(torch.cos(ANGLES), m1, m2)
    want = torch.tensor([phi(m1 * t + m2) for t in ANGLES.tolist()], dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


def test_helpers_are_finite_at_plus_minus_one_with_gradients() -> None:
    for dtype in (torch.float32, torch.float64):
        c = torch.tensor([1.0, -1.0, 0.0], dtype=dtype, requires_grad=True)
        outs = [
            sphere_psi(c, 6),
            arc_margin_cos(c, 0.5),
            arc_margin_cos(c, 4.0),
            combined_margin_cos(c, 1.2, 0.3),
        ]
        for out in outs:
            assert torch.isfinite(out).all()
            (g,) = torch.autograd.grad(out.sum(), c)
            assert torch.isfinite(g).all()


def test_helpers_compute_in_float32_for_half_inputs() -> None:
    c = torch.tensor([0.3, -0.7], dtype=torch.bfloat16)
    for out in (sphere_psi(c, 4), arc_margin_cos(c, 0.5), combined_margin_cos(c, 1.0, 0.5), monotone_cos(c)):
        assert out.dtype == torch.float32
