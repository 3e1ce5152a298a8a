"""The decoded-image cache: a folder of PNGs decoded once, then read back as fast as IDX files.

An entry is one uncompressed ``.npz`` (the uint8 images and int64 labels of both splits, and a
JSON description) named by the sha256 of the files' fingerprints (``src.data.folder.read_split``:
every file's bytes are hashed on every run) and of the decoding choices (channels, size). A file
changed, added, removed or renamed is a new fingerprint, hence a new entry; nothing is trusted from
file dates. Entries are written atomically; one that cannot be read is ignored and written again.
The cache is a convenience: a cache folder that cannot be written only costs the next run a decode.
Delete the folder at any time to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src.utils.io import share_by_umask

log = logging.getLogger(__name__)

# Bump when the decoding changes what an entry holds for the same files.
VERSION = 1
ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def cache_dir(configured: str | None) -> Path:
    """``data.cache_dir``, else ``$XDG_CACHE_HOME/marginloss/decoded`` (``~/.cache/marginloss/decoded``)."""
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marginloss" / "decoded"


def entry_name(fingerprints: Mapping[str, str], choices: Mapping[str, Any]) -> str:
    key = json.dumps({"version": VERSION, "files": dict(fingerprints), "decode": dict(choices)}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest() + ".npz"


def load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The entry's arrays and description, or None when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ARRAYS}
            meta = json.loads(str(npz["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("decoded cache %s is unreadable (%s); decoding again", path, err)
        return None
    return arrays, meta


def save(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bool:
    """Write the entry atomically (temp file, fsync, rename); False (with a warning) when it cannot."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        share_by_umask(fd)  # a shared cache: readable like any file, not mkstemp's 600
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(dict(meta))), **{key: arrays[key] for key in ARRAYS})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        return True
    except OSError as err:
        log.warning("decoded cache not written to %s (%s); the next run decodes again", path, err)
        return False
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
