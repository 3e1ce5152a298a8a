"""Entry point: ``python -m src.train [overrides]`` (add ``-m`` for a Hydra multirun)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

# Ctrl-C before the run starts (during Python's imports, Hydra's composition, the config checks):
# one line and exit 130. Left to Python, a KeyboardInterrupt raised inside an import printed a
# traceback (once numpy's lazy import turned it into a RecursionError, exit 1). Nothing has been
# written yet, so the process ends at once; the run folder Hydra made, still empty, goes with it.
# Installed before the heavy imports below, only when started from the command line with Python's
# own handler in place (a background job that ignores SIGINT keeps ignoring it); ``main`` gives
# SIGINT back to Python just before the run admits its folder. SIGTERM likewise (one line, 143).
_STARTING: dict[str, str | None] = {"folder": None}


def _ctrl_c_while_starting(signum: int, frame: object) -> None:
    os.write(2, b"interrupted (Ctrl-C) before the run started: nothing was written\n")
    folder = _STARTING["folder"]
    if folder:
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when Hydra created it and nothing was written
    os._exit(130)


def _sigterm_while_starting(signum: int, frame: object) -> None:
    os.write(2, b"terminated (SIGTERM) before the run started: nothing was written\n")
    folder = _STARTING["folder"]
    if folder:
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    os._exit(143)


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
