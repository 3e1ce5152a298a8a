"""Which process owns the run folder when the DDP processes are started from outside.

Under SLURM (one task per DDP process: ``srun``, or ``hydra/launcher=slurm`` with
``tasks_per_node=N``) and under ``torchrun`` every rank runs the whole Hydra job, so every rank
would check the run folder, write its config and claim it. The first one to write made the
others refuse the folder ("already holds a run"), and a refused rank 0 left the other ranks
waiting in the process group forever. Here only global rank 0 admits the command and writes; the
other ranks never touch the folder and take rank 0's decision over the process group, which is
opened early for that (Lightning then finds it open and uses it):

* ``launched_world()``: ``(global rank, world size)`` of a process started that way, else ``(0, 1)``;
* ``agree(decide)``: rank 0 runs ``decide()`` (admission: refuse, start, resume from a checkpoint,
  nothing to do) and sends the outcome to every rank; a refusal is raised on every rank as the
  same one-line error, so that the whole job fails instead of one rank waiting;
* ``check_launch(trainer, processes)``: the layouts that cannot work, as one-line ``ConfigError``s
  before anything starts: SLURM tasks per node different from ``trainer.devices`` (Lightning
  starts one DDP process per SLURM task), and ``--multirun`` with a DDP strategy that would start
  ranks 1..N-1 by re-running the command line (the whole sweep, in every worker).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Strategies whose ranks 1..N-1 Lightning starts by running the command line again.
RELAUNCHING_STRATEGIES = ("ddp", "fsdp", "deepspeed")
MULTIPROCESS_STRATEGY = "src.training.distributed.MultiprocessDDPStrategy"
# How long the other ranks wait for rank 0's decision (rank 0 only reads the folder; seconds on
# any file system). The process group keeps Lightning's own default for training.
DECISION_TIMEOUT = timedelta(minutes=5)


def _slurm_detected() -> bool:
    """Lightning's test for running under SLURM (``SLURMEnvironment.detect``), without its warning
    that srun exists but is not used."""
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def _cluster_environment() -> Any:
    """Lightning's environment for externally started ranks (torchrun first, as Lightning does), or None."""
    from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        return TorchElasticEnvironment()
    if _slurm_detected() and int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return SLURMEnvironment(auto_requeue=False)
    return None


def slurm_tasks_per_node() -> int | None:
    """``SLURM_NTASKS_PER_NODE`` of a SLURM job step Lightning would treat as its DDP layout, else None."""
    from lightning_fabric.plugins.environments import TorchElasticEnvironment

    value = os.environ.get("SLURM_NTASKS_PER_NODE", "")
    if TorchElasticEnvironment.detect() or not _slurm_detected() or not value:
        return None
    try:
        return int(value.split("(")[0].split(",")[0])  # "2" or "2(x3)" on several nodes
    except ValueError:
        return None


def launched_world() -> tuple[int, int]:
    """(global rank, world size) when SLURM or torchrun started this process as one of several; (0, 1) otherwise."""
    env = _cluster_environment()
    if env is None:
        return 0, 1
    return int(env.global_rank()), int(env.world_size())


def is_owner() -> bool:
    """True in the one process that may write the run folder."""
    return launched_world()[0] == 0


def _backend(trainer: Mapping[str, Any]) -> str:
    """The backend Lightning would open the process group with for ``trainer`` (cfg.trainer)."""
    strategy = trainer.get("strategy")
    if isinstance(strategy, Mapping) and strategy.get("process_group_backend"):
        return str(strategy["process_group_backend"])
    import torch

    accelerator = str(trainer.get("accelerator", "auto"))
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


def open_process_group(trainer: Mapping[str, Any]) -> None:
    """Opens the default process group as Lightning's DDP strategy would (same environment,
    backend and timeout); Lightning sees it open and uses it."""
    import torch.distributed as dist
    from lightning_fabric.utilities.distributed import _init_dist_connection

    if dist.is_initialized():
        return
    env = _cluster_environment()
    if env is None:
        return
    backend = _backend(trainer)
    if backend == "nccl":
        import torch

        torch.cuda.set_device(env.local_rank())
    _init_dist_connection(env, backend, timeout=timedelta(minutes=30))  # Lightning's default_pg_timeout


def agree(decide: Callable[[], T], trainer: Mapping[str, Any]) -> T:
    """``decide()`` on rank 0, its outcome on every rank; a single process just calls it.

    ``decide`` must return something picklable. When it raises on rank 0, every rank raises an
    error of the same type with the same message (rank 0's own traceback stays on rank 0)."""
    rank, world = launched_world()
    if world == 1:
        return decide()
    import torch.distributed as dist

    open_process_group(trainer)
    group = dist.new_group(backend="gloo", timeout=DECISION_TIMEOUT)  # objects travel on the CPU whatever trains
    outcome: list[Any] = [None]
    error: BaseException | None = None
    if rank == 0:
        try:
            outcome[0] = ("ok", decide())
        except Exception as err:  # sent to the other ranks, then raised here too
            error = err
            outcome[0] = ("error", type(err), str(err))
    dist.broadcast_object_list(outcome, src=0, group=group)
    dist.destroy_process_group(group)
    if error is not None:
        raise error
    if outcome[0][0] == "error":
        kind, message = outcome[0][1], outcome[0][2]
        log.error("rank %d: rank 0 refused the run: %s", rank, message)
        try:
            raised = kind(message)
        except Exception:  # an error type that does not take one message
            raised = RuntimeError(f"{kind.__name__}: {message}")
        raise raised
    return outcome[0][1]


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_launch(t: Mapping[str, Any], processes: int, multirun: bool | None = None) -> None:
    """One-line ``ConfigError``s for DDP layouts that would fail late or hang (cfg.trainer ``t``,
    ``processes`` per node as ``trainer.devices`` asks)."""
    from src.config.checks import fail

    strategy = t.get("strategy", "auto")
    name = strategy.get("_target_") if isinstance(strategy, Mapping) else str(strategy)
    tasks = slurm_tasks_per_node()
    if tasks is not None and tasks != processes:
        # Lightning's SLURM environment starts one DDP process per SLURM task, never more.
        fail(
            "trainer.devices", t.get("devices"),
            f"this SLURM job runs {tasks} task(s) per node (SLURM_NTASKS_PER_NODE={tasks}) and Lightning makes one "
            f"DDP process of each task: trainer.devices must equal it; submit with hydra.launcher.tasks_per_node="
            f"{processes} (srun --ntasks-per-node={processes}) or set trainer.devices={tasks}",
        )
    external = _cluster_environment() is not None
    multirun = _multirun() if multirun is None else multirun
    if multirun and processes > 1 and not external and name in RELAUNCHING_STRATEGIES:
        fail(
            "trainer.strategy", name,
            "under --multirun this strategy starts ranks 1..N-1 by re-running the command line, i.e. the whole "
            "sweep in every worker; use trainer=ddp_cpu (multiprocessing workers, also on GPUs: "
            "trainer.accelerator=gpu trainer.strategy.process_group_backend=nccl), or hydra/launcher=slurm with "
            f"hydra.launcher.tasks_per_node={processes}",
        )
