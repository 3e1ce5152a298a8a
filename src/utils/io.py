"""Small file helpers: every record is written atomically so a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any


def fsync_file(path: str | Path) -> None:
    """Flush ``path`` to disk; the flush is best effort, failing to open it raises."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable; best effort (not every platform/filesystem can)."""
    with suppress(OSError):
        fsync_file(folder)


class _Remembering:
    """A file that remembers the first OSError of a write. ``torch.save`` turns a failed write
    (a full disk) into ``RuntimeError: [enforce fail at inline_container.cc:...]``, which says
    nothing to a user; ``atomic_writer`` raises the remembered ``OSError`` instead."""

    def __init__(self, file: IO[Any]) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._file.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


@contextmanager
def atomic_writer(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Yield a temporary file beside ``path``; on success fsync it and rename it over ``path``,
    on any error (Ctrl-C included) delete it, so ``path`` is always either old or complete.
    A failed write raises its ``OSError`` (``[Errno 28] No space left on device: <path>``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # name the file meant, not the temporary one
        raise _with_path(err, path) from err
    file: _Remembering | None = None
    try:
        share_by_umask(fd)
        with os.fdopen(fd, mode) as f:
            file = _Remembering(f)
            yield file  # type: ignore[misc]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if file is not None and file.error is not None and not isinstance(err, OSError):
            raise _with_path(file.error, path) from err
        if isinstance(err, OSError) and not err.filename:
            raise _with_path(err, path) from err
        raise
    fsync_dir(path.parent)


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``os.umask`` can only be
    read by setting it, which for a moment would give another thread's new files the wrong mode)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_by_umask(fd: int) -> None:
    """Give a ``tempfile.mkstemp`` file (always mode 600) the mode ``open()`` would have given it
    (0666 minus the umask: 644 under the usual 022), so results are readable by colleagues on a
    shared machine as every other file of the run is. Best effort: some filesystems have no modes."""
    with suppress(OSError, AttributeError):
        os.fchmod(fd, 0o666 & ~current_umask())


def _with_path(err: OSError, path: Path) -> OSError:
    """The same error naming the file it was writing (a bare ``[Errno 28]`` names none)."""
    return type(err)(err.errno, err.strerror or str(err), str(path)) if err.errno else err


def describe_os_error(err: OSError) -> str:
    """One line for a failed write: what, where, and that the earlier files are intact."""
    where = f" {err.filename}" if err.filename else ""
    what = err.strerror or str(err)
    return (f"cannot write{where}: {what} [errno {err.errno}]; files already there are intact (every write is a "
            "temporary file renamed into place); free space or choose a writable hydra.run.dir (a run that had "
            "started resumes with resume=true)")


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_writer(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # tensors and numpy arrays
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
