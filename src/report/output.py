"""Where a report lands: whole or not at all, and two reports never mix.

A report is ``report.md`` and the files it names at its end (an HTML comment, invisible when
rendered, listing each file with its sha256 as ``sha256sum`` writes it; ``verify`` checks them).
It is built in a private staging folder (``.<out>.partial-*`` beside the output folder, or
``<out>/.partial-*`` where the folder beside it cannot be written), then published under an
exclusive ``flock`` on the output folder:

* an output folder that holds nothing but a report (or nothing yet: the default ``<run>/report``,
  ``outputs/reports/...``): the staging folder and the output folder trade places in one
  ``renameat2(RENAME_EXCHANGE)``, so a reader sees the old report or the new one, whole, at every
  moment, SIGKILL included. Where the kernel or file system has no exchange, two renames: for that
  moment there is no report at all;
* an output folder that also holds other files (``experiments/study/``: its README.md and runs/):
  the report's files are moved in one at a time, ``report.md`` out first and in last, every file
  they replace (and every file of the old report the new one no longer writes) set aside in the
  staging folder. The folder holds the old report, the new one, or no ``report.md`` at all, never
  an old ``report.md`` beside new files. A move that fails puts the old files back at once; one
  cut by a kill is put back by the next report (``clean_leftovers``).

Each report holds an ``flock`` on its own staging folder while it lives (the kernel drops it
however the process ends), so the next report to the same folder removes exactly the staging
folders whose report is gone, never a live one's.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from src.utils.io import fsync_dir, fsync_file

LAST = "report.md"  # moved out first and in last: while it is there, the files it names are too
PARTIAL = ".partial-"
JOURNAL = ".moving"  # in a staging folder: the names being moved into a shared output folder
ASIDE = ".replaced"  # in a staging folder: the files those moves replaced, kept to put back
MANIFEST_START = "<!-- the files of this report, written with it (sha256sum lines; src/report/output.py verify()):"
MANIFEST_END = "-->"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def new_report_folder(base: Path) -> Path:
    """A new folder ``base/<time>_<random>``: two reports started in the same second get two."""
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=time.strftime("%Y-%m-%d_%H-%M-%S_"), dir=base))
    folder.chmod(0o755)  # mkdtemp's 0700 is for secrets; a report is for reading
    return folder


def exchange(a: Path, b: Path) -> bool:
    """Swap the two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    kernel, C library or file system cannot."""
    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def manifest(out: Path) -> dict[str, str]:
    """The files (name -> sha256) that ``out/report.md`` says belong to it; {} for none or an older
    report that names none."""
    try:
        text = (out / LAST).read_text()
    except (OSError, ValueError):
        return {}
    start = text.rfind(MANIFEST_START)
    if start < 0:
        return {}
    files = {}
    for line in text[start + len(MANIFEST_START):].splitlines():
        digest, sep, name = line.strip().partition("  ")
        if sep and len(digest) == 64 and name:
            files[name] = digest
    return files


def verify(out: Path) -> list[str]:
    """What keeps ``out`` from holding one whole report ([] when nothing does)."""
    if not (out / LAST).is_file():
        return [f"{out / LAST} does not exist"]
    files = manifest(out)
    if not files:
        return [f"{out / LAST} names no files (written before reports listed their files)"]
    problems = []
    for name, digest in sorted(files.items()):
        try:
            if _sha256(out / name) != digest:
                problems.append(f"{out / name} is not the file {LAST} was written with")
        except OSError:
            problems.append(f"{out / name} is missing")
    return problems


@contextlib.contextmanager
def publish(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder; when the block ends without error, put its files in ``out``
    (above). Raises ``OSError`` (naming the path) when ``out`` cannot be written; nothing changes
    in ``out`` then."""
    out = Path(os.path.realpath(out))
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(out))
    with _locked(out):  # made and locked under the lock, so no report ever finds it unlocked
        staging, beside = _new_staging(out)
        alive = os.open(staging, os.O_RDONLY)
        with contextlib.suppress(OSError):
            fcntl.flock(alive, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield staging
        names = _seal(staging)
        with _locked(out):
            clean_leftovers(out, keep=staging)
            if beside and _only_a_report(out, names):
                old = _swap(staging, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                _move_in(staging, out, names)
    finally:
        os.close(alive)
        shutil.rmtree(staging, ignore_errors=True)


def clean_leftovers(out: Path, keep: Path | None = None) -> list[Path]:
    """Remove the staging folders of reports to ``out`` that are gone (killed), after putting back
    what a cut move into ``out`` had set aside; a live report's (it holds its ``flock``) is left."""
    out = Path(os.path.realpath(out))
    found = list(out.parent.glob(glob.escape(f".{out.name}{PARTIAL}") + "*"))
    if out.is_dir():
        found += out.glob(glob.escape(PARTIAL) + "*")
    removed = []
    for folder in sorted(found):
        if folder == keep or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its report is still running
            os.close(fd)
            continue
        except OSError:
            pass  # no locks here (some network file systems): a staging folder is left only by a kill
        try:
            _put_back(folder, out)
        finally:
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _new_staging(out: Path) -> tuple[Path, bool]:
    """A new staging folder for the folder ``out`` and whether it lies beside ``out`` (so the two can
    trade places): where the folder above cannot be written, or ``out`` is a mount point, inside it."""
    if os.stat(out).st_dev == os.stat(out.parent).st_dev:
        with contextlib.suppress(OSError):
            return _mkdir_new(out.parent, f".{out.name}{PARTIAL}"), True
    return _mkdir_new(out, PARTIAL), False


def _mkdir_new(where: Path, prefix: str) -> Path:
    while True:
        path = where / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)  # the umask's mode, as a folder made by mkdir
        except FileExistsError:
            continue
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(where)) from None
        return path


def _seal(staging: Path) -> set[str]:
    """Make the built files durable and list them (with their sha256) at the end of ``report.md``;
    returns their names (paths relative to ``staging``)."""
    files = sorted(p for p in staging.rglob("*") if p.is_file() and not p.is_symlink())
    names = {p.relative_to(staging).as_posix() for p in files}
    if LAST not in names:
        raise FileNotFoundError(errno.ENOENT, f"the report wrote no {LAST}", str(staging / LAST))
    report = staging / LAST
    lines = [f"{_sha256(p)}  {p.relative_to(staging).as_posix()}" for p in files if p != report]
    listing = "\n".join([MANIFEST_START, *lines, MANIFEST_END])
    report.write_text(report.read_text().rstrip("\n") + "\n\n" + listing + "\n")
    for path in files:
        fsync_file(path)
    for folder in {p.parent for p in files}:
        fsync_dir(folder)
    return names


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the folder at ``out`` (made if missing). A report that swapped a
    new folder in meanwhile leaves the lock on the old one: then lock the folder now there."""
    while True:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held, now = os.fstat(fd), os.stat(out)
        except FileNotFoundError:
            os.close(fd)
            continue
        except OSError:  # no locks here: unguarded, as the run folder lock is
            break
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _only_a_report(out: Path, names: set[str]) -> bool:
    """Whether ``out`` holds nothing but (an older) report, so the new one may replace it whole."""
    if not out.is_dir():
        return True
    known = {LAST, *names, *manifest(out)}
    with os.scandir(out) as entries:
        return all(entry.is_file(follow_symlinks=False) and entry.name in known for entry in entries)


def _swap(staging: Path, out: Path) -> Path:
    """Put ``staging`` at ``out``; returns the path that now holds the old folder."""
    with contextlib.suppress(OSError):
        os.chmod(staging, stat.S_IMODE(os.stat(out).st_mode))  # the folder keeps its mode
    if exchange(staging, out):
        fsync_dir(out.parent)
        return staging
    old = out.parent / f".{out.name}{PARTIAL}{secrets.token_hex(4)}"  # a leftover's name, should a kill come
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    fsync_dir(out.parent)
    return old


def _move_in(staging: Path, out: Path, names: set[str]) -> None:
    """Move the report's files into a folder shared with other files (above)."""
    aside = staging / ASIDE
    aside.mkdir()
    stale = sorted(n for n in manifest(out) if n not in names and (out / n).is_file())
    journal = staging / JOURNAL
    journal.write_text("".join(f"{name}\n" for name in sorted(names)))
    with open(journal) as f:
        os.fsync(f.fileno())
    fsync_dir(staging)
    try:
        _set_aside(out, LAST, aside)  # from here until the last move there is no report.md
        for name in sorted(names - {LAST}):
            _set_aside(out, name, aside)
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out / name)
        for name in stale:
            _set_aside(out, name, aside)
        os.replace(staging / LAST, out / LAST)
    except BaseException:
        _put_back(staging, out)
        raise
    fsync_dir(out)


def _set_aside(out: Path, name: str, aside: Path) -> None:
    if (out / name).is_file() and not (out / name).is_symlink():
        (aside / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(out / name, aside / name)


def _put_back(staging: Path, out: Path) -> None:
    """Undo a move into a shared folder that did not end: the new files out, the old ones back. A
    move that ended (``report.md`` went in last) or never began is left alone."""
    journal = staging / JOURNAL
    if not journal.is_file() or not (staging / LAST).is_file():
        return
    for name in journal.read_text().splitlines():
        if name and name != LAST and not (staging / name).exists():  # moved in: the new file
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
    aside = staging / ASIDE
    for path in sorted(aside.rglob("*")) if aside.is_dir() else []:
        if path.is_file():
            target = out / path.relative_to(aside)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    fsync_dir(out)
