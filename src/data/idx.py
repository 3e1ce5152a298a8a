"""Reader and writer for the IDX format used by MNIST and Fashion-MNIST.

Layout (all integers big-endian): two zero bytes, one dtype code, one byte giving the number of
dimensions, then one uint32 per dimension, then the payload in row-major order.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from src.errors import DatasetError

__all__ = [
    "DatasetError",
    "IDX_DTYPES",
    "decode_idx",
    "encode_idx",
    "read_idx",
    "read_idx_bytes",
    "write_idx",
]

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_BY_KIND: dict[str, int] = {np.dtype(dt).str[1:]: code for code, dt in IDX_DTYPES.items()}


def read_idx_bytes(path: str | Path) -> tuple[bytes, bytes]:
    """Return ``(file_bytes, idx_bytes)``: the bytes on disk and the decompressed IDX content.

    Gzip is detected from the content, not the suffix, so a raw file named ``.gz`` (or a gzip
    file without the suffix) still reads. IDX files start with 0x00 and can never look like gzip.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: file not found") from e
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file ({e.strerror or e})") from e
    if raw[:2] != GZIP_MAGIC:
        return raw, raw
    try:
        return raw, gzip.decompress(raw)
    except EOFError as e:  # the stream stops before gzip's end marker: a cut-off file
        raise DatasetError(f"{path}: corrupt gzip (truncated compressed stream, {len(raw)} bytes)") from e
    except (OSError, zlib.error) as e:  # BadGzipFile (CRC/length mismatch, bad header) is an OSError
        raise DatasetError(f"{path}: corrupt gzip ({e})") from e


def decode_idx(data: bytes | bytearray | memoryview, name: str | Path = "<bytes>") -> np.ndarray:
    """Parse decompressed IDX bytes into a native-endian, writable numpy array.

    ``name`` only serves the error messages.
    """
    n = len(data)
    if n < 4:
        raise DatasetError(f"{name}: truncated IDX header: expected at least 4 bytes got {n}")
    z0, z1, code, ndim = bytes(data[:4])
    if z0 != 0 or z1 != 0:
        raise DatasetError(f"{name}: bad IDX magic {bytes(data[:4]).hex()} (must start with 0000)")
    if code not in IDX_DTYPES:
        raise DatasetError(f"{name}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise DatasetError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if n < header:
        raise DatasetError(f"{name}: truncated IDX header: expected {header} bytes got {n}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if n < expected:
        raise DatasetError(f"{name}: truncated: expected {expected} bytes got {n} (dims {dims})")
    if n > expected:
        raise DatasetError(f"{name}: {n - expected} trailing bytes: expected {expected} bytes got {n}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # astype copies into native byte order; the copy also makes the array writable, which
    # torch.from_numpy needs to avoid its non-writable-buffer warning.
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (gzip or raw) into a tensor. Raises DatasetError on any problem."""
    _, data = read_idx_bytes(path)
    return torch.from_numpy(decode_idx(data, path))


def encode_idx(array: np.ndarray | torch.Tensor) -> bytes:
    """Serialize an array (uint8/int8/int16/int32/float32/float64, >= 1 dim) to IDX bytes."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    key = array.dtype.str[1:]
    if key not in _CODE_BY_KIND:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use one of uint8/int8/int16/int32/float32/float64"
        )
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got {array.ndim}")
    code = _CODE_BY_KIND[key]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | Path, array: np.ndarray | torch.Tensor, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip when ``compress`` is True or, if None, when the name ends in .gz.

    Written to a temporary name and renamed so a reader never sees half a file.
    """
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    data = encode_idx(array)
    if compress:
        # mtime=0 keeps the output byte-identical across runs, so test checksums are stable.
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
