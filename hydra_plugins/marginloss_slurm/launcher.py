"""``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): Hydra's submitit SLURM launcher with
the additions of ``src.cluster.slurm`` (job states without accounting, failed jobs that do not
stop the sweep, DDP tasks that end together, a checkpoint before each requeue).

Hydra loads launchers only from the ``hydra_plugins`` package and imports every module in it at
start-up, so this one stays small and imports nothing heavy. Without the launchers extra
(``pip install -e '.[launchers]'``) it defines nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurmLauncher
except ImportError:  # the launchers extra is not installed
    _SubmititSlurmLauncher = None

if _SubmititSlurmLauncher is not None:

    class SlurmLauncher(_SubmititSlurmLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
            from src.cluster.slurm import launch

            return launch(self, job_overrides, initial_job_idx)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:  # runs in each SLURM task
            from src.cluster.slurm import run_task

            return run_task(super().__call__, *args, **kwargs)
