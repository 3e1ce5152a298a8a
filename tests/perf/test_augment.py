"""The batched augmentation ops: shapes, dtypes, what a crop does to the content, determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.data.augment import random_crop, random_erase, random_hflip


def distinct(n: int, h: int = 28, w: int = 28, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n images whose pixels are all different and non-zero (exact in float32), so a shift is identifiable."""
    return torch.arange(1, n * h * w + 1, dtype=torch.float64).reshape(n, 1, h, w).to(dtype)


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` (C, H, W) moved down by dy and right by dx, zero-filled: out[r, c] = image[r - dy, c - dx]."""
    p = max(abs(dy), abs(dx))
    padded = F.pad(image, (p, p, p, p))
    h, w = image.shape[-2:]
    return padded[:, p - dy : p - dy + h, p - dx : p - dx + w]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hflip_keeps_shape_and_dtype_and_mirrors_about_half(dtype: torch.dtype) -> None:
    x = distinct(64, dtype=dtype)
    y = random_hflip(x, gen(0))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    mirrored = (y == x.flip(-1)).flatten(1).all(1)
    kept = (y == x).flatten(1).all(1)
    assert bool((mirrored ^ kept).all())  # each image is either left alone or mirrored, never anything else
    assert 10 < int(mirrored.sum()) < 54  # p = 1/2 per image


@pytest.mark.parametrize("padding", [1, 2, 4])
def test_crop_keeps_shape_and_dtype_and_shifts_content_by_at_most_padding(padding: int) -> None:
    x = distinct(24)
    y = random_crop(x, padding, gen(1))
    assert y.shape == x.shape and y.dtype == x.dtype and y.is_contiguous()
    shifts = []
    for i in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(-padding, padding + 1)
            for dx in range(-padding, padding + 1)
            if torch.equal(y[i], shifted(x[i], dy, dx))
        ]
        assert len(found) == 1, f"image {i} is not a zero-filled shift of its input by at most {padding}"
        shifts.append(found[0])
    assert len(set(shifts)) > 1 and any(s != (0, 0) for s in shifts)


def test_crop_moves_a_single_pixel_and_keeps_its_mass() -> None:
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 14, 14] = 1.0
    y = random_crop(x, 3, gen(2))
    assert torch.equal(y.sum(dim=(1, 2, 3)), torch.ones(16))  # the pixel is never cut off (3 < 14)
    rows, cols = (y[:, 0] == 1).nonzero()[:, 1], (y[:, 0] == 1).nonzero()[:, 2]
    assert (rows - 14).abs().max() <= 3 and (cols - 14).abs().max() <= 3


def test_zero_padding_is_the_identity() -> None:
    x = distinct(4)
    assert random_crop(x, 0, gen(0)) is x


def test_same_generator_seed_same_result_other_seed_other_result() -> None:
    x = distinct(32)
    ops = (lambda t, g: random_hflip(t, g), lambda t, g: random_crop(t, 2, g), lambda t, g: random_erase(t, 0.5, g))
    for op in ops:
        assert torch.equal(op(x, gen(7)), op(x, gen(7)))
        assert not torch.equal(op(x, gen(7)), op(x, gen(8)))


def test_erase_with_probability_one_fills_one_rectangle_per_image_within_the_area_bounds() -> None:
    x = distinct(64)
    y = random_erase(x, 1.0, gen(3), value=-1.0)
    assert y.shape == x.shape and y.dtype == x.dtype
    for i in range(len(x)):
        changed = y[i, 0] != x[i, 0]
        assert bool((y[i, 0][changed] == -1).all()) and bool((y[i, 0][~changed] == x[i, 0][~changed]).all())
        rows, cols = changed.any(1).nonzero()[:, 0], changed.any(0).nonzero()[:, 0]
        h, w = len(rows), len(cols)
        assert h >= 1 and w >= 1 and int(changed.sum()) == h * w  # one filled rectangle
        assert rows.max() - rows.min() + 1 == h and cols.max() - cols.min() + 1 == w  # contiguous
        # area fraction drawn in [0.02, 0.4] of 784 px; rounding each side moves it by < one row + column
        assert h * w <= 0.4 * 784 + h + w + 1
    sizes = {(int((y[i] != x[i]).any(-1).sum()), int((y[i] != x[i]).any(-2).sum())) for i in range(len(x))}
    assert len(sizes) > 10  # shapes vary


def test_erase_probability_and_identity() -> None:
    x = distinct(64)
    assert random_erase(x, 0.0, gen(0)) is x
    erased = (random_erase(x, 0.5, gen(4), value=-1.0) == -1).flatten(1).any(1)
    assert 10 < int(erased.sum()) < 54
