from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from src.data.idx import decode_idx, encode_idx, read_idx, write_idx
from src.errors import DatasetError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(7,), (3, 5), (2, 3, 4), (0, 6)]


def _sample(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _assert_error(path: Path, match: str) -> str:
    with pytest.raises(DatasetError, match=match) as exc:
        read_idx(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_roundtrip(tmp_path: Path, dtype: type, shape: tuple[int, ...], suffix: str) -> None:
    arr = _sample(dtype, shape)
    path = write_idx(tmp_path / f"f-idx{suffix}", arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    out = read_idx(path)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.from_numpy(arr).dtype
    assert tuple(out.shape) == shape
    np.testing.assert_array_equal(out.numpy(), arr)


def test_write_accepts_tensor_and_compress_override(tmp_path: Path) -> None:
    t = torch.arange(12, dtype=torch.uint8).reshape(3, 4)
    plain = write_idx(tmp_path / "a.gz", t, compress=False)
    packed = write_idx(tmp_path / "b", t, compress=True)
    assert plain.read_bytes()[:2] != b"\x1f\x8b"
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    # Gzip is detected from content, so the misleading names still read.
    assert torch.equal(read_idx(plain), t)
    assert torch.equal(read_idx(packed), t)


def test_layout_is_big_endian_mnist_style() -> None:
    data = encode_idx(np.array([[1, 2], [3, 4]], dtype=np.uint8))
    assert data == bytes.fromhex("00000802000000020000000201020304")
    data = encode_idx(np.array([1, -2], dtype=np.int16))
    assert data == bytes.fromhex("00000b01000000020001fffe")
    out = decode_idx(data)
    assert out.dtype == np.int16 and out.dtype.isnative and out.flags.writeable
    assert out.tolist() == [1, -2]


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.array(3, dtype=np.uint8))


def _labels_bytes(n: int = 100) -> bytes:
    return encode_idx(np.arange(n, dtype=np.uint8))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_payload(tmp_path: Path, gz: bool) -> None:
    data = _labels_bytes()[:-10]
    path = tmp_path / ("lab.gz" if gz else "lab")
    path.write_bytes(gzip.compress(data) if gz else data)
    msg = _assert_error(path, "truncated")
    assert "expected 108 bytes got 98" in msg


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "lab"
    path.write_bytes(_labels_bytes() + b"xyz")
    _assert_error(path, "expected 108 bytes got 111")


def test_header_claims_more_than_payload(tmp_path: Path) -> None:
    # Header says 3 x 28 x 28 images, payload holds two.
    data = bytes.fromhex("00000803000000030000001c0000001c") + bytes(2 * 784)
    path = tmp_path / "img"
    path.write_bytes(data)
    _assert_error(path, "expected 2368 bytes got 1584")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "truncated IDX header"),
        (b"\x00\x00", "truncated IDX header"),
        (bytes.fromhex("00000803") + b"\x00\x00\x00\x01", "truncated IDX header"),
        (bytes.fromhex("01000801") + bytes(5), "bad IDX magic"),
        (b"P5\n28 28\n255\n" + bytes(20), "bad IDX magic"),
        (bytes.fromhex("00000701") + bytes(5), "unknown IDX dtype code 0x07"),
        (bytes.fromhex("00000800"), "0 dimensions"),
    ],
    ids=["empty", "short", "short-dims", "magic", "pgm", "dtype", "ndim0"],
)
def test_bad_header(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    _assert_error(path, match)


def test_corrupt_gzip(tmp_path: Path) -> None:
    gz = bytearray(gzip.compress(_sample(np.uint8, (50, 28, 28)).tobytes()))
    mid = len(gz) // 2
    gz[mid : mid + 16] = bytes(16)  # garbage inside the deflate stream
    path = tmp_path / "img.gz"
    path.write_bytes(bytes(gz))
    _assert_error(path, "corrupt gzip")


def test_cut_gzip(tmp_path: Path) -> None:
    gz = gzip.compress(_labels_bytes(1000))
    path = tmp_path / "lab.gz"
    path.write_bytes(gz[: len(gz) // 2])
    _assert_error(path, "corrupt gzip")


def test_missing_file(tmp_path: Path) -> None:
    _assert_error(tmp_path / "nope.gz", "not found")


def test_dataset_error_is_runtime_error() -> None:
    assert issubclass(DatasetError, RuntimeError)
