"""Where the MNIST-family IDX files come from: a data folder, a system folder, or a download.

Search order for a dataset ``name`` (``locate``):

1. ``root``, ``root/<name>`` and ``root/<name-with-dashes>`` (``.gz`` or raw un-gzipped files);
2. the dataset's system folders (``/usr/share/datasets/fashion-mnist/`` from Debian's
   ``dataset-fashion-mnist`` package);
3. if ``download`` is on, the upstream mirrors, into ``root/<name>``.

The first folder that holds all four files wins. Every file is checked structurally (IDX
header, dtype, dims, exact payload length) and, when ``verify`` is on, against its checksum.

Checksum rule. Debian recompresses the upstream archives, so the gzip bytes differ while the
content is identical. A file is therefore accepted when EITHER its gzip bytes have the upstream
md5, OR its decompressed content has the known sha256. A file whose decompressed size equals the
upstream file's size claims to be that file, so it must pass one of those checks when a
decompressed sha256 is known (MNIST has none here: there a wrong gzip md5 only logs a warning,
since a recompressed copy is legitimate). A file of any other size is not an upstream file (the
tiny synthetic sets the tests build, tests/synthetic.py), so it is checked structurally only. Downloads always come
from upstream, so a download must match a known checksum whenever one exists.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from src.data.idx import GZIP_MAGIC, decode_idx, read_idx_bytes
from src.data.specs import DATASETS, FILENAMES, SPLITS, DatasetSpec, FileSpec, dataset_spec, get_spec
from src.errors import DatasetError
from src.utils.io import fsync_dir, share_by_umask

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetSpec",
    "FILENAMES",
    "FileSpec",
    "dataset_spec",
    "describe_files",
    "read_split",
    "SPLITS",
    "download_file",
    "get_spec",
    "load_split",
    "locate",
    "verify_file",
]

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


# ----------------------------------------------------------------------------------------------
# Verification


def _check_kind(arr: np.ndarray, key: str, label: str) -> None:
    """Images must be uint8 (N, H, W) and labels uint8 (N,): catches swapped or foreign files."""
    want_ndim = 3 if key.endswith("images") else 1
    if arr.dtype != np.uint8 or arr.ndim != want_ndim:
        raise DatasetError(
            f"{label}: expected a uint8 IDX file with {want_ndim} dims for {key}, "
            f"got {arr.dtype} with shape {tuple(arr.shape)}"
        )


def _verify_content(raw: bytes, data: bytes, fspec: FileSpec, verify: bool, label: str, strict: bool) -> None:
    """Structure always; checksums when ``verify``. ``strict``: must match a known checksum (downloads)."""
    _check_kind(decode_idx(data, label), fspec.key, label)
    if not verify or not fspec.has_checksum:
        return
    md5 = hashlib.md5(raw).hexdigest() if fspec.md5_gz else None
    if md5 is not None and md5 == fspec.md5_gz:
        return  # byte-identical to the upstream archive
    size_claims_upstream = fspec.size is not None and len(data) == fspec.size
    if fspec.sha256 and (strict or size_claims_upstream):
        got = hashlib.sha256(data).hexdigest()
        if got != fspec.sha256:
            raise DatasetError(
                f"{label}: checksum mismatch for {fspec.key}: expected sha256 {fspec.sha256} "
                f"(decompressed) got {got}; the file is corrupt or not the upstream file - "
                f"delete it and re-download it (or reinstall the package that provided it)"
            )
        return
    if strict:
        raise DatasetError(
            f"{label}: checksum mismatch for {fspec.key}: expected gzip md5 {fspec.md5_gz} got {md5}"
        )
    if size_claims_upstream and md5 is not None and raw[:2] == GZIP_MAGIC:
        # No decompressed checksum known (MNIST): a recompressed copy is legitimate, so only warn.
        log.warning("%s: gzip md5 %s differs from upstream %s; structure is valid", label, md5, fspec.md5_gz)


def _how_verified(raw: bytes, data: bytes, fspec: FileSpec, verify: bool) -> str:
    """Which check a file that passed ``_verify_content`` passed, in words for the run record."""
    if verify and fspec.md5_gz and hashlib.md5(raw).hexdigest() == fspec.md5_gz:
        return "upstream gzip md5"
    if verify and fspec.sha256 and fspec.size is not None and len(data) == fspec.size:
        return "upstream sha256 (decompressed)"
    return "structure only (not an upstream file, or verify=false)"


# Files already verified in this process, keyed by identity and stat, so that load_split for
# train then test does not hash 50 MB twice; the value is the file's provenance for the record.
_VERIFIED: dict[tuple, dict[str, str]] = {}


def verify_file(path: str | Path, fspec: FileSpec, verify: bool = True) -> dict[str, str]:
    """Raise DatasetError unless ``path`` is a well-formed IDX file passing the checksum rule;
    returns where it is, the sha256 of its bytes on disk (``sha256sum`` gives the same) and which
    check it passed."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise DatasetError(f"{path}: cannot stat file ({e.strerror or e})") from e
    cache_key = (str(path.resolve()), st.st_size, st.st_mtime_ns, fspec, verify)
    if cache_key not in _VERIFIED:
        raw, data = read_idx_bytes(path)
        _verify_content(raw, data, fspec, verify, str(path), strict=False)
        _VERIFIED[cache_key] = {
            "path": str(path.resolve()),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "verified": _how_verified(raw, data, fspec, verify),
        }
    return dict(_VERIFIED[cache_key])


def describe_files(
    name: str | DatasetSpec, paths: Mapping[str, Path], verify: bool = True
) -> dict[str, dict[str, str]]:
    """``{key: {path, sha256, verified}}`` for the files ``locate`` returned (cached: no re-hash)."""
    spec = get_spec(name)
    return {key: verify_file(path, spec.files[key], verify) for key, path in sorted(paths.items())}


# ----------------------------------------------------------------------------------------------
# Locating


def _candidate_dirs(spec: DatasetSpec, root: str | Path | None, fallback: bool = True) -> list[Path]:
    dirs: list[Path] = []
    if root is not None:
        root = Path(root).expanduser()
        dirs += [root, root / spec.name, root / spec.name.replace("_", "-")]
    if fallback or root is None:
        dirs += list(spec.system_dirs)
    seen: set[Path] = set()
    out = []
    for d in dirs:  # dedupe, keeping order (root may be the system folder itself)
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def _files_in(spec: DatasetSpec, folder: Path) -> dict[str, Path]:
    found = {}
    for key, fs in spec.files.items():
        for fname in (fs.filename, fs.raw_name):  # prefer the gzip copy
            p = folder / fname
            if p.is_file():
                found[key] = p
                break
    return found


def _how_to_fix(spec: DatasetSpec, root: str | Path | None, download: bool) -> str:
    names = ", ".join(fs.filename for fs in spec.files.values())
    where = (
        f"put the four files ({names}, gzip or raw) in {root}"
        if root is not None
        else (f"set the data folder and put the four files ({names}) there")
    )
    parts = []
    if spec.apt_package:
        sys_dir = spec.system_dirs[0] if spec.system_dirs else "the system folder"
        parts.append(
            f"on Debian/Ubuntu run `sudo apt-get install {spec.apt_package}` (installs into {sys_dir})"
        )
    parts.append(where)
    if download:
        parts.append("or retry the download on a machine that can reach the mirrors")
    else:
        parts.append("or enable download (download=True) on a machine with network access")
    return "; ".join(parts)


def locate(
    name: str | DatasetSpec,
    root: str | Path | None,
    download: bool = True,
    verify: bool = True,
    mirrors: Sequence[str] | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    fallback: bool = True,
) -> dict[str, Path]:
    """Find (or download) the dataset's four files and return ``{key: path}``.

    ``name`` is a registry name or a DatasetSpec (tests inject specs with their own checksums);
    ``mirrors`` overrides the spec's base URLs. ``fallback=False`` keeps the search inside ``root``
    (no system folder). All four files always come from one folder. Raises DatasetError with a
    one-line message.
    """
    spec = get_spec(name)
    dirs = _candidate_dirs(spec, root, fallback)
    partial = []
    for d in dirs:
        found = _files_in(spec, d)
        if len(found) == len(spec.files):
            for key, p in found.items():
                verify_file(p, spec.files[key], verify)
            return found
        if found:
            missing = sorted(set(spec.files) - set(found))
            partial.append(
                f"{d} has only {len(found)} of {len(spec.files)} files (missing {', '.join(missing)})"
            )

    looked = ", ".join(str(d) for d in dirs) or "(no folder: no data root configured)"
    detail = f" ({'; '.join(partial)})" if partial else ""
    if not download:
        reason = "download is disabled"
    elif root is None:
        reason = "no data root is configured to download into"
    else:
        target = Path(root).expanduser() / spec.name
        try:
            return _download_into(
                spec, target, list(mirrors) if mirrors is not None else list(spec.mirrors), verify, timeout
            )
        except DatasetError as e:
            reason = f"download failed: {e}"
    unsearched = [str(d) for d in spec.system_dirs if d not in dirs]
    also = f"; or data.fallback=true to also look in {', '.join(unsearched)}" if unsearched else ""
    raise DatasetError(
        f"{spec.name} files not found; looked in: {looked}{detail}; {reason}. "
        f"To fix: {_how_to_fix(spec, root, download)}{also}"
    )


def _download_into(
    spec: DatasetSpec, target: Path, mirrors: list[str], verify: bool, timeout: float
) -> dict[str, Path]:
    if not mirrors:
        raise DatasetError(f"no download mirror known for {spec.name}")
    out = {}
    for key, fs in spec.files.items():
        existing = _files_in(spec, target).get(key)
        if existing is not None:  # kept from an earlier run; a bad one is reported, not overwritten
            verify_file(existing, fs, verify)
            out[key] = existing
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fs.filename
            try:
                out[key] = download_file(url, target / fs.filename, fs, verify=verify, timeout=timeout)
                break
            except DatasetError as e:
                errors.append(str(e))
        else:
            raise DatasetError(" | ".join(errors))
    return out


def download_file(
    url: str, dest: str | Path, fspec: FileSpec, verify: bool = True, timeout: float = DOWNLOAD_TIMEOUT_S
) -> Path:
    """Download ``url`` to ``dest`` atomically, verified; DatasetError naming the URL on failure.

    Streams into a uniquely named ``.part`` file beside ``dest``, fsyncs, verifies, then
    ``os.replace``s it into place, so an interrupted or bad transfer never appears under ``dest``.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise DatasetError(f"download of {url} failed: cannot write into {dest.parent} ({e})") from e
    tmp = Path(tmp_name)
    share_by_umask(fd)  # the data files are for everyone on the machine, not mkstemp's 600
    try:
        with os.fdopen(fd, "wb") as f:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                declared = resp.headers.get("Content-Length")
                received = 0
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    received += len(chunk)
            # http.client returns b"" on an early close instead of raising, so compare ourselves.
            if declared is not None and received != int(declared):
                raise DatasetError(f"incomplete transfer: expected {declared} bytes got {received}")
            f.flush()
            os.fsync(f.fileno())
        raw, data = read_idx_bytes(tmp)
        _verify_content(raw, data, fspec, verify, fspec.filename, strict=True)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except DatasetError as e:
        raise DatasetError(f"download of {url} failed: {e}") from e
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        raise DatasetError(f"download of {url} failed: {type(e).__name__}: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    log.info("downloaded %s -> %s", url, dest)
    return dest


# ----------------------------------------------------------------------------------------------
# Loading


def load_split(
    name: str | DatasetSpec,
    root: str | Path | None,
    split: str,
    download: bool = True,
    verify: bool = True,
    mirrors: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images uint8 (N, H, W), labels int64 (N,))`` for ``split`` in {"train", "test"}."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    spec = get_spec(name)
    paths = locate(spec, root, download=download, verify=verify, mirrors=mirrors)
    return read_split(spec, paths, split)


def read_split(name: str | DatasetSpec, paths: Mapping[str, Path], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``load_split`` for files already located (``paths`` from ``locate``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    spec = get_spec(name)
    ik, lk = SPLITS[split]
    arrays = {}
    for key in (ik, lk):
        _, data = read_idx_bytes(paths[key])
        arr = decode_idx(data, paths[key])
        _check_kind(arr, key, str(paths[key]))
        arrays[key] = arr
    images, labels = arrays[ik], arrays[lk]
    if len(images) != len(labels):
        raise DatasetError(
            f"{spec.name} {split}: {len(images)} images in {paths[ik]} "
            f"but {len(labels)} labels in {paths[lk]}"
        )
    if len(labels) and int(labels.max()) >= spec.num_classes:
        raise DatasetError(
            f"{paths[lk]}: label {int(labels.max())} out of range for {spec.num_classes} classes"
        )
    return torch.from_numpy(images), torch.from_numpy(labels).long()
