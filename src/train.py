"""Entry point: ``python -m src.train [overrides]`` (add ``-m`` for a Hydra multirun)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from src.utils import procs

# Ctrl-C before the run starts (during Python's imports, Hydra's composition, the config checks):
# one line and exit 130. Left to Python, a KeyboardInterrupt raised inside an import printed a
# traceback (once numpy's lazy import turned it into a RecursionError, exit 1). Nothing has been
# written yet, so the process ends at once; the run folder Hydra made, still empty, goes with it.
# Installed before the heavy imports below, only when started from the command line with Python's
# own handler in place (a background job that ignores SIGINT keeps ignoring it); ``main`` gives
# SIGINT back to Python just before the run admits its folder. SIGTERM likewise (one line, 143).
_STARTING: dict[str, str | None] = {"folder": None}


def _ctrl_c_while_starting(signum: int, frame: object) -> None:
    _stop_sweep_if_launcher(b"interrupted (Ctrl-C)", 130)
    os.write(2, b"interrupted (Ctrl-C) before the run started: nothing was written\n")
    folder = _STARTING["folder"]
    if folder:
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when Hydra created it and nothing was written
    os._exit(130)


def _sigterm_while_starting(signum: int, frame: object) -> None:
    _stop_sweep_if_launcher(b"terminated (SIGTERM)", 143)
    os.write(2, b"terminated (SIGTERM) before the run started: nothing was written\n")
    folder = _STARTING["folder"]
    if folder:
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    os._exit(143)


def _stop_sweep_if_launcher(what: bytes, code: int) -> None:
    """In a local multirun's launcher (joblib), whose worker processes hold the running jobs: stop
    those jobs (``_stop_and_wait``) and exit ``code``. Elsewhere, return. Ctrl-C goes the same way as
    SIGTERM: a terminal's Ctrl-C reaches the workers too, and the SIGTERM that follows it only asks
    again for the stop already under way (after the current batch, reported as Ctrl-C)."""
    workers = _launcher_workers()
    if workers:
        os.write(2, what + b": stopping the sweep's running jobs; each records interrupted\n")
        _stop_and_wait(workers)
        os._exit(code)


def _launcher_workers() -> list[int]:
    """This process's children that run jobs (joblib's loky workers); not the resource trackers,
    which ignore SIGTERM and end with their last user. Empty off Linux."""
    return procs.children(os.getpid(), skip=b"resource_tracker")


# Linux process names (/proc/PID/comm, 15 bytes) that a stopping sweep and its stopped jobs take:
# how a worker knows that its launcher is stopping, and the launcher that the worker is done. A
# worker that exits instead makes joblib declare the pool broken and SIGKILL its siblings mid-save.
_SWEEP_STOPPING, _JOB_STOPPED = "sweep-stopping", "job-stopped"


def _stop_and_wait(workers: list[int], grace_s: float = 120.0) -> None:
    """SIGTERM to each worker: its run saves a checkpoint, records ``interrupted`` and says so
    (``_hold_worker``); once all have, or after ``grace_s``, SIGKILL them, which is safe as
    checkpoints and records are written atomically. Left alone, the workers outlived the launcher
    and trained on, holding their run folders."""
    import time

    procs.set_process_name(_SWEEP_STOPPING)
    for pid in workers:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(procs.process_name(pid) not in ("", _JOB_STOPPED) for pid in workers):
        time.sleep(0.1)
    for pid in workers:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _hold_worker(code: int) -> None:
    """A sweep job stopped by its stopping launcher (``_stop_and_wait``), in a launcher's worker
    process: its record already says ``interrupted``; say so and wait for the launcher to end this
    process, since returning would hand the worker the sweep's next job."""
    import logging
    import multiprocessing
    import time

    parent = os.getppid()
    if multiprocessing.parent_process() is None or procs.process_name(parent) != _SWEEP_STOPPING:
        return  # a sequential sweep, or this worker alone was signalled: SystemExit as before
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    procs.set_process_name(_JOB_STOPPED)
    while os.getppid() == parent:  # the launcher SIGKILLs this process; should it die first, exit
        time.sleep(0.2)
    os._exit(code)


def _started() -> None:
    """From here on Ctrl-C is Python's KeyboardInterrupt again (the run records ``interrupted``),
    and SIGTERM is the run's (src/callbacks/signals.py's StartupStop, then Lightning's)."""
    if signal.getsignal(signal.SIGINT) is _ctrl_c_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is _sigterm_while_starting:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _ctrl_c_while_starting)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # likewise SIGTERM: one line and 143
        signal.signal(signal.SIGTERM, _sigterm_while_starting)

import math  # noqa: E402  (after the Ctrl-C handler: the imports below take seconds)
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from src.training.compose import register_resolvers  # noqa: E402

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Runs one job and returns its best validation accuracy (the value a sweeper optimises)."""
    from src.cli import job_started
    from src.errors import ConfigError
    from src.training.validate import check_config

    job_started()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    # A sweep job returns NaN on failure so that the other jobs go on; a job run by several processes
    # (SLURM tasks, torchrun) exits non-zero instead, so that SLURM ends its other ranks and says failed.
    keep_going = multirun and _world_size() == 1
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    if not multirun:
        _STARTING["folder"] = str(output_dir)
    try:
        check_config(cfg)  # a mistake is reported before the heavy imports and any data
        from src.training.pipeline import run  # heavy imports after Hydra has parsed the command line

        _started()
        return run(cfg, output_dir, checked=True)["val_acc_best"]
    except SystemExit as err:
        from src.callbacks.signals import EXIT_SIGINT, EXIT_SIGTERM

        if multirun and err.code in (EXIT_SIGINT, EXIT_SIGTERM):
            _hold_worker(int(err.code))
        raise
    except ConfigError as err:
        if cfg.get("debug"):
            raise
        print(f"error: {err}", file=sys.stderr)
        if multirun:  # the job's folder says why it did not run; the sweep goes on
            from src.errors import RunFolderError
            from src.training.admission import record_rejected

            if not isinstance(err, RunFolderError):
                record_rejected(output_dir, cfg, err)
            if keep_going:
                return math.nan
            sys.exit(2)
        _remove_if_empty(output_dir)  # a rejected single run leaves nothing behind
        sys.exit(2)
    except OSError as err:  # a full disk, a read-only folder: the record (if writable) says failed
        if cfg.get("debug"):
            raise
        from src.utils.io import describe_os_error

        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        if keep_going:
            return math.nan
        sys.exit(1)
    except Exception as err:
        from src.errors import UserError

        # The run record already says "failed" and why; in a sweep the other jobs go on.
        if multirun and not cfg.get("debug"):
            print(f"error: job failed: {type(err).__name__}: {err}", file=sys.stderr)
            if keep_going:
                return math.nan
            sys.exit(1)
        if isinstance(err, UserError) and not cfg.get("debug"):
            print(f"error: {err}", file=sys.stderr)  # diagnosed: one line, no traceback
            sys.exit(1)
        raise


def _world_size() -> int:
    from src.training.ranks import launched_world

    return launched_world()[1]


def _remove_if_empty(folder: Path) -> None:
    from src.cli import made_by_this_command

    if made_by_this_command(folder):  # never an empty folder the user had made beforehand
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when nothing was written


if __name__ == "__main__":
    try:
        from src.cli import cli

        cli(main)  # Hydra's own errors (unknown option or key, bad override) in one line, exit 2
    finally:
        _started()  # also when the command ends before its run (src.train run in a test's process)
