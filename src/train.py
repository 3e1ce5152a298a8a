"""Entry point: ``python -m src.train [overrides]`` (add ``-m`` for a Hydra multirun)."""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from src.training.compose import register_resolvers

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
    try:
        check_config(cfg)  # a mistake is reported before the heavy imports and any data
        from src.training.pipeline import run  # heavy imports after Hydra has parsed the command line

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
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when Hydra created it and nothing was written


if __name__ == "__main__":
    from src.cli import cli

    cli(main)  # Hydra's own errors (unknown option or key, bad override) in one line, exit 2
