"""Entry point: ``python -m src.train [overrides]`` (add ``-m`` for a Hydra multirun)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from src.utils.resolvers import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Runs one job and returns its best validation accuracy (the value a sweeper optimises)."""
    from src.errors import ConfigError
    from src.pipeline import run  # heavy imports after Hydra has parsed the command line

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return run(cfg, Path(HydraConfig.get().runtime.output_dir))["val_acc_best"]
    except ConfigError as err:
        if cfg.get("debug"):
            raise
        print(f"error: {err}", file=sys.stderr)
        if multirun:  # the job's record says why; the sweep goes on
            return math.nan
        sys.exit(2)
    except Exception as err:
        # The run record already says "failed" and why; in a sweep the other jobs go on.
        if multirun and not cfg.get("debug"):
            print(f"error: job failed: {type(err).__name__}: {err}", file=sys.stderr)
            return math.nan
        raise


if __name__ == "__main__":
    main()
