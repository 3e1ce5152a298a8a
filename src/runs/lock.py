"""One training process per run folder.

Rerunning a sweep command continues the sweep, so two commands started side by side (a second
terminal, a restarted background job while the first is still alive) would otherwise both resume
the same unfinished run and write the same checkpoints and record. ``hold(folder)`` takes an
exclusive ``flock`` on the folder itself for as long as the run trains; a second process is
refused with a one-line ``RunFolderError``. The kernel drops the lock when its process ends,
however it ends (SIGKILL and power loss included), so a lock never goes stale and no lock file is
left behind. Only the main process of a distributed run locks (its workers share its folder).
Where ``flock`` is unavailable (Windows, some network file systems) the check is skipped.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from src.errors import RunFolderError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID")


def is_main_process() -> bool:
    """False in the worker processes of a distributed run (any rank variable above 0)."""
    return all(os.environ.get(var, "0").strip() in ("", "0") for var in RANK_VARIABLES)


@contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Create ``folder`` if needed and keep it locked for this process until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None or not is_main_process():
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            resume = f"python -m src.train --resume {shlex.quote(str(folder))}"
            raise RunFolderError(
                f"run folder {folder} is in use: another process is training in it; name another folder, or wait "
                f"for that process to end and continue the run with: {resume}"
            ) from None
        except OSError as err:  # e.g. ENOLCK on a network file system: run unguarded, say so
            log.warning("cannot lock run folder %s (%s): not guarded against a second process", folder, err)
        yield
    finally:
        os.close(fd)  # releases the lock
