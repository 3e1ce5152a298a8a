"""A folder made read-only for the code under test, also when the tests run as root (where
``chmod`` stops no write): a read-only bind mount where this process may mount, else a simulated
one, an audit hook (``sys.addaudithook``) that fails every write below the folder with ``EROFS``
as the kernel would (open for writing, mkdir, rename, remove, chmod, ...), and ``os.access``
answering no for ``W_OK`` there."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

_BLOCKED: list[str] = []
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# audit event -> the positions of its arguments that are paths written to
_EVENTS = {"os.mkdir": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.chmod": (0,),
           "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,), "os.link": (0, 1), "os.symlink": (1,),
           "shutil.rmtree": (0,), "shutil.move": (0, 1), "shutil.copyfile": (1,)}  # fmt: skip
_installed = False


def _blocked(path: Any) -> str | None:
    if not isinstance(path, (str, bytes, os.PathLike)):
        return None
    full = os.path.abspath(os.fsdecode(path))
    return full if any(full == root or full.startswith(root + os.sep) for root in _BLOCKED) else None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _BLOCKED:
        return
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None))[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and bool(flags & _WRITE_FLAGS))
        paths = [path] if writes else []
    elif event in _EVENTS:
        paths = [args[i] for i in _EVENTS[event] if i < len(args)]
    else:
        return
    for path in paths:
        full = _blocked(path)
        if full is not None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), full)


@contextmanager
def _simulated(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    global _installed
    if not _installed:
        sys.addaudithook(_hook)  # for the life of the process; idle while nothing is blocked
        _installed = True
    real_access = os.access

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if mode & os.W_OK and _blocked(path) is not None:
            return False
        return real_access(path, mode, *args, **kwargs)

    _BLOCKED.append(os.path.abspath(folder))
    monkeypatch.setattr(os, "access", access)
    try:
        yield
    finally:
        _BLOCKED.remove(os.path.abspath(folder))


@contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch, how: str = "any") -> Iterator[str]:
    """``folder`` read-only for the block; yields how (``mount`` or ``simulated``). ``how``: ``any``
    (a mount where possible), ``mount`` (skips the test where this process may not mount) or
    ``simulated``."""
    if how == "simulated":
        with _simulated(folder, monkeypatch):
            yield "simulated"
        return
    try:
        done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
    except OSError:  # no mount command
        done = subprocess.CompletedProcess([], 1)
    if done.returncode == 0:
        try:
            probe = folder / ".probe"
            try:
                probe.write_text("")
            except OSError:
                yield "mount"
                return
            probe.unlink()  # an old kernel ignoring ro on a first bind: simulate instead
        finally:
            subprocess.run(["umount", str(folder)], capture_output=True)
    if how == "mount":
        pytest.skip("this process may not mount a folder read-only here; the simulated variant covers it")
    with _simulated(folder, monkeypatch):
        yield "simulated"
