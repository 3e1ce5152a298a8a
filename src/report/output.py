"""Where a report lands, written so that two reports never mix: each is built in a private
staging folder inside the output folder, then its files are moved in (``os.replace``, one at a
time, ``report.md`` last) under an exclusive lock on the output folder. A reader sees one report's
complete files; a report killed half-way leaves only its ``.partial-*`` folder behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from src.utils.io import fsync_dir

LAST = "report.md"  # moved last: once it is there, the files it links to are too


def new_report_folder(base: Path) -> Path:
    """A new folder ``base/<time>_<random>``: two reports started in the same second get two."""
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=time.strftime("%Y-%m-%d_%H-%M-%S_"), dir=base))
    folder.chmod(0o755)  # mkdtemp's 0700 is for secrets; a report is for reading
    return folder


@contextlib.contextmanager
def publish(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success move its files into ``out`` under a lock."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        yield staging
        files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: (p.name == LAST, str(p)))
        lock = os.open(out, os.O_RDONLY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for path in files:
                target = out / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
            fsync_dir(out)
        finally:
            os.close(lock)  # closing releases the lock
    finally:
        shutil.rmtree(staging, ignore_errors=True)
