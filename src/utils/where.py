"""Where a job ran, for the run record (``src.training.records``): host, SLURM ids, CPU, GPU, threads.

Speed figures and the precision ``auto`` chose only compare between runs on the same CPU, and a
cloud VM's ``lscpu`` model name is often just "Intel(R) Xeon(R) Processor". So the CPU is named as
``lscpu`` prints it *and* by its family / model / stepping numbers and the flags that decided the
precision (AVX2; AVX512-BF16 and AMX make ``trainer.precision=auto`` pick bf16). The thread count
is the one the run computes with (``torch.get_num_threads()`` after ``threads=`` was applied).
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from typing import Any

# CPU flags that decided the precision (src/utils/hardware.py), in lscpu's spelling.
PRECISION_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
# SLURM's names for the ids of a job, as the record keys them.
SLURM_VARIABLES = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "restart_count": "SLURM_RESTART_COUNT",
    "procid": "SLURM_PROCID",
    "ntasks": "SLURM_NTASKS",
    "nodelist": "SLURM_JOB_NODELIST",
    "partition": "SLURM_JOB_PARTITION",
}


def _lscpu_fields() -> dict[str, str]:
    """``lscpu``'s ``key: value`` lines (C locale); {} where there is no lscpu."""
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, env={**os.environ, "LC_ALL": "C"}, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def _cpuinfo_fields() -> dict[str, str]:
    """The same facts from /proc/cpuinfo (first CPU), under lscpu's names."""
    names = {"model name": "Model name", "cpu family": "CPU family", "model": "Model", "stepping": "Stepping",
             "flags": "Flags"}  # fmt: skip
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if not line.strip():
                    break  # the first CPU's block is enough
                key, _, value = line.partition(":")
                if key.strip() in names:
                    fields.setdefault(names[key.strip()], value.strip())
    except OSError:
        pass
    return fields


@functools.lru_cache(maxsize=1)
def cpu_facts() -> dict[str, Any]:
    """The CPU as lscpu names it, its family / model / stepping, and which precision flags it has."""
    fields = _lscpu_fields() or _cpuinfo_fields()
    flags = set(fields.get("Flags", "").split())
    facts: dict[str, Any] = {
        "model_name": fields.get("Model name") or platform.processor() or "unknown CPU",
        "family": fields.get("CPU family"),
        "model": fields.get("Model"),
        "stepping": fields.get("Stepping"),
        "flags": [flag for flag in PRECISION_FLAGS if flag in flags],
        "arch": platform.machine(),
    }
    try:
        facts["cores_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        facts["cores_usable"] = os.cpu_count()
    return facts


def cpu_line(facts: dict[str, Any] | None = None) -> str:
    """``Intel(R) Xeon(R) Processor (family 6 model 207 stepping 2; avx2 avx512_bf16 amx_bf16)``."""
    facts = facts or cpu_facts()
    numbers = " ".join(f"{key} {facts[key]}" for key in ("family", "model", "stepping") if facts.get(key))
    flags = " ".join(facts["flags"]) or "none of " + "/".join(PRECISION_FLAGS)
    inside = "; ".join(part for part in (numbers, flags) if part)
    return f"{facts['model_name']} ({inside})"


def gpu_model() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def slurm_ids() -> dict[str, str] | None:
    """The SLURM job this process runs in (ids as SLURM gives them), or None outside SLURM."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    return {key: os.environ[var] for key, var in SLURM_VARIABLES.items() if os.environ.get(var)}


def where() -> dict[str, Any]:
    """Every fact above; ``threads`` as this process computes with now."""
    import torch

    return {
        "host": socket.gethostname(),
        "slurm": slurm_ids(),
        "cpu": cpu_facts(),
        "gpu": gpu_model(),
        "threads": torch.get_num_threads(),
    }


def machine_line(facts: dict[str, Any]) -> str:
    """The record's one-line ``machine``: host, architecture, CPU, threads, device."""
    cpu = facts["cpu"]
    device = facts["gpu"] or "cpu"
    return f"{facts['host']} {cpu['arch']} {cpu_line(cpu)}, {facts['threads']} threads, {device}"
