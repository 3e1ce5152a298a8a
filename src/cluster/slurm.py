"""``hydra/launcher=slurm``: Hydra's submitit launcher with what a sweep on a real cluster needs.

The plugin class is ``hydra_plugins.marginloss_slurm.launcher.SlurmLauncher`` (Hydra only loads
launchers from the ``hydra_plugins`` package); it hands its two halves to this module.

In the sweep's own process (``launch``):

* Job states come from ``squeue`` when SLURM accounting is off. submitit asks ``sacct``, which
  then fails on every poll: the log fills with warnings, and a job that ends without a result
  (cancelled, killed) is never seen to end, so the sweep waits forever. One log line says which
  source is used.
* ``srun --kill-on-bad-exit=1``: when one task of a multi-task job (DDP, ``tasks_per_node=N``)
  fails, SLURM ends the others instead of leaving them waiting in the process group.
* Every job is waited for. A job that ends without a result (failed, cancelled, out of requeues)
  is one log line and a NaN, as a failed job is under the local launcher: the other jobs go on,
  the sweep summary lists it (its run record says why) and the sweep exits 1.

In each job (``run_task``): SLURM's warning before the time limit (``SIGUSR2``, sent
``signal_delay_s`` before ``timeout_min``) reaches submitit, which would requeue the job at once,
wherever training is. Here the run first stops after the current batch, saves ``last.ckpt`` and
records ``interrupted`` with the reason; then submitit requeues it (``max_num_timeout`` times), and
the requeued job continues from that checkpoint (``resume=true``). Out of requeues, submitit ends
the job as failed and the record stays ``interrupted``. A warning that comes after training has
finished is ignored: the job ends on its own.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Polls of the job states: at least this often (seconds) once jobs are running.
POLL_S = 30
KILL_ON_BAD_EXIT = "--kill-on-bad-exit=1"


# ------------------------------------------------------------------------------------------
# The sweep's process
# ------------------------------------------------------------------------------------------


def _queue_watcher(delay_s: int = POLL_S) -> Any:
    """A submitit ``SlurmInfoWatcher`` that falls back to ``squeue`` when ``sacct`` cannot answer."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):
        use_squeue: bool | None = None  # None: not known yet

        def _make_command(self) -> list[str] | None:
            command = super()._make_command()
            if command is None or not self.use_squeue:
                return command
            ids = sorted({x.split("_")[0] for x in self._registered - self._finished})
            return ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%N", f"--jobs={','.join(ids)}"]

        def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
            text = string.decode() if isinstance(string, bytes) else string
            if self.use_squeue:
                text = "JobID|State|NodeList\n" + text  # squeue prints what sacct would, without the header
            return super().read_info(text)

        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            try:
                out = subprocess.run(command, capture_output=True, check=True, timeout=60).stdout
            except (subprocess.SubprocessError, OSError) as err:
                if command[0] == "sacct" and self.use_squeue is None:
                    detail = getattr(err, "stderr", b"") or b""
                    reason = detail.decode(errors="replace").strip() or str(err)
                    log.info("job states from squeue: sacct cannot answer (%s)", reason.splitlines()[0])
                    self.use_squeue = True
                    self.update()
                    return
                # A transient failure: the next poll asks again (logged once a minute at most).
                if time.time() - getattr(self, "_warned", 0.0) > 60:
                    log.warning("cannot read job states (%s); trying again", str(err).splitlines()[0])
                    self._warned = time.time()
            else:
                if command[0] == "sacct":
                    self.use_squeue = False
                info = self.read_info(out)
                if self.use_squeue:
                    # A job squeue no longer lists (past MinJobAge) has ended; its result file says how.
                    for job_id in self._registered - self._finished:
                        if job_id not in info and self._info_dict.get(job_id, {}).get("State", "UNKNOWN") != "UNKNOWN":
                            info[job_id] = {"JobID": job_id, "State": "ENDED", "NodeList": ""}
                self._info_dict.update(info)
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

    return QueueWatcher(delay_s=delay_s)


def _failed_return(overrides: Sequence[str]) -> Any:
    """What the sweep gets for a job that ended without a result: NaN, like a failed local job."""
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = math.nan
    return ret


def _first_line(err: BaseException) -> str:
    """What went wrong, in one line, from submitit's error (a job's pickled traceback, or "has not
    produced any output" followed by the job's stderr)."""
    text = str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("error: ")]  # src.train's one-line errors
    if "has not produced any output" in text:  # no result file: the state, and the job's own words
        head = f"{lines[0].split(' with path ')[0]} {lines[1]}" if len(lines) > 1 else text
        return (head + (f"; {ours[-1]}" if ours else ""))[:400]
    # A traceback: its first error is the cause (the later ones are what it was raised as).
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (errors[0] if errors else lines[0] if lines else type(err).__name__)[:400]


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
    """Submit one array job for ``job_overrides`` and wait for every job (Hydra's ``launch``)."""
    import submitit
    from hydra.core.singleton import Singleton
    from hydra.core.utils import filter_overrides
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import SlurmJob

    assert launcher.config is not None and len(job_overrides) > 0
    SlurmJob.watcher = _queue_watcher()  # class-wide: every job of this process is polled through it
    params = dict(launcher.params)
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=params.pop("submitit_folder"), slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    resources = {key if key in base else f"slurm_{key}": value for key, value in params.items()}
    resources["slurm_srun_args"] = [KILL_ON_BAD_EXIT]
    executor.update_parameters(**resources)

    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in launcher.config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(launcher.config.hydra.sweep.mode), 8))
    log.info(f"SLURM sweep into {sweep_dir}")
    arguments = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        arguments.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
    jobs = executor.map_array(launcher, *zip(*arguments, strict=True))
    log.info("submitted SLURM job(s) %s", ", ".join(job.job_id for job in jobs))

    returns = []
    for idx, (job, overrides) in enumerate(zip(jobs, job_overrides, strict=True), start=initial_job_idx):
        try:
            returns.append(job.results()[0])
        except Exception as err:  # submitit: FailedJobError, UncompletedJobError; the record says more
            log.error("job #%d (SLURM %s, %s) ended without a result: %s", idx, job.job_id, job.state, _first_line(err))
            returns.append(_failed_return(overrides))
    return returns


# ------------------------------------------------------------------------------------------
# Each job
# ------------------------------------------------------------------------------------------


class _TimeLimit:
    """Holds submitit's SIGUSR2 handler back until the run has stopped and saved (module docstring)."""

    def __init__(self) -> None:
        self.submitit_handler = signal.getsignal(signal.SIGUSR2)
        self.pending = False

    def install(self) -> None:
        if callable(self.submitit_handler):
            signal.signal(signal.SIGUSR2, self._on_signal)

    def _reason(self) -> str:
        owner = getattr(self.submitit_handler, "__self__", None)  # submitit's SignalHandler
        delayed = getattr(owner, "_delayed", None)
        if owner is None or delayed is None:
            return "SLURM SIGUSR2 (time limit or preemption)"
        timed_out = bool(owner.has_timed_out())
        left = int(delayed._timeout_countdown) - int(timed_out)
        what = "time limit" if timed_out else "preemption"
        if left < 0:
            return f"SLURM {what} (SIGUSR2): no requeue left (hydra.launcher.max_num_timeout)"
        return f"SLURM {what} (SIGUSR2): requeued to continue from last.ckpt ({left} requeue(s) left)"

    def _on_signal(self, signum: int, frame: Any) -> None:
        from src.callbacks.signals import request_stop

        if self.pending:
            return
        self.pending = True
        reason = self._reason()
        log.warning("%s: stopping after the current batch", reason)
        request_stop(reason)

    def hand_over(self) -> None:
        """submitit's own handling, now that the run has saved and recorded: requeue and exit, or
        (out of requeues) an error that ends the job as failed. Only task 0 requeues."""
        signal.signal(signal.SIGUSR2, self.submitit_handler)
        self.submitit_handler(signal.SIGUSR2, None)


def run_task(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """One SLURM task of one sweep job: ``call(*args)`` is Hydra's job (the submitit launcher's
    ``__call__``)."""
    from src.training.ranks import launched_world

    limit = _TimeLimit()
    limit.install()
    rank = launched_world()[0]
    try:
        return call(*args, **kwargs)
    except SystemExit as err:
        if limit.pending:
            limit.hand_over()  # task 0 requeues and exits here (or raises: out of requeues)
        stopped = err.code in (130, 143)  # SIGTERM / Ctrl-C: cancelled, or preempted and requeued
        if rank != 0 and stopped:
            # Stopped together with rank 0, which records the run and answers for the job; a
            # non-zero exit here would make srun end rank 0 before it has done so.
            log.info("rank %d stopped with rank 0 (exit %s); rank 0 reports the job", rank, err.code)
            return None
        if rank == 0 and not stopped and err.code not in (0, None):
            # A multi-process job that failed (src.train exits then instead of returning NaN): as an
            # exception submitit stores it as the job's result, so the sweep learns at once, and the
            # task still exits non-zero.
            why = "its log (.submitit/<job>/*_log.err) says why"
            raise RuntimeError(f"job failed with exit status {err.code}; {why}") from err
        raise
