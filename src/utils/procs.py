"""Linux's process table, read from /proc: a process's children, its name, whether it still runs.
Used by a local sweep's launcher to find and stop its job workers (src/train.py). Stdlib only, so
that src/train.py can import it before its heavy imports. Off Linux every reader is empty."""

from __future__ import annotations

import contextlib
import os


def _stat_fields(pid: int | str) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (which may itself hold spaces and
    parentheses): state first, then the parent's pid. Empty when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def children(pid: int, skip: bytes | None = None) -> list[int]:
    """The processes whose parent is ``pid``, leaving out any whose command line contains ``skip``."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            fields = _stat_fields(entry)
            if len(fields) < 2 or int(fields[1]) != pid:
                continue
            if skip is not None and skip in command_line(int(entry)):
                continue
            found.append(int(entry))
    return found


def command_line(pid: int) -> bytes:
    """/proc/PID/cmdline (NUL-separated arguments); empty when the process is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie waiting for its parent."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != b"Z"


def process_name(pid: int) -> str:
    """/proc/PID/comm, the 15-byte name a process can set itself; empty when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def set_process_name(name: str) -> None:
    """Renames this process (first 15 bytes kept); nothing happens off Linux."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write(name)
