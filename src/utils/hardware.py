"""What the hardware can do, decided by asking PyTorch rather than assuming a machine.

* ``resolve_precision("auto", accelerator)``: ``bf16-mixed`` where the device has bf16 matrix units
  (CPU: AMX or AVX512-BF16 as PyTorch reports them; CUDA: ``torch.cuda.is_bf16_supported``),
  ``32-true`` elsewhere, with the reason in words. On an AVX2-only CPU bf16 is emulated and several
  times slower than fp32, so ``auto`` never picks it there.
* ``flush_denormals()``: flush-to-zero / denormals-are-zero on the calling thread *and* on every
  OpenMP worker thread. The flag lives in each thread's MXCSR register; ``torch.set_flush_denormal``
  only sets the caller's. Worker threads created later inherit it, but a pool that already exists
  (a test process, the second job of a multirun) keeps computing subnormals on the slow microcode
  path: in bf16 training on a CPU the gradients drift into the subnormal range after a few hundred
  steps and steps become ~30x slower (docs/performance.md). So the flag is also set from inside an
  OpenMP parallel region, once per worker, and then checked on a tensor split across all workers.
* ``device_kind(accelerator)``: the device (cpu | cuda | mps) a Trainer ``accelerator`` ends up on.
* ``resolve_threads("auto" | N, parallel_jobs)``: intra-op threads. ``auto`` is the cores this
  process may run on (its CPU affinity, not the machine's count) divided by the jobs that run side
  by side (the joblib launcher's ``n_jobs`` in a multirun), at least 1.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

# A float32 subnormal (about 1e-40) as raw bits: converting the number itself on a flushing thread
# would already give 0.
_SUBNORMAL_BITS = 0x00011111
# Large enough that ATen splits one elementwise op over every OpenMP worker (grain size 32768).
_PROBE_NUMEL = 1 << 20


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str


def device_kind(accelerator: str) -> str:
    """cpu | cuda | mps: the device ``accelerator`` ends up on (``auto`` resolved like Lightning)."""
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "mps":
        return "mps"
    if accelerator == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
    return "cpu"


def cpu_model() -> str:
    """``lscpu``'s model name (from /proc/cpuinfo): speed figures only compare on the same CPU."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def cpu_has_bf16_units() -> tuple[bool, str]:
    """(True, what) when PyTorch reports AMX tiles or AVX512-BF16 on this CPU."""
    cpu = getattr(torch, "cpu", None)
    amx = bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    avx512_bf16 = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    units = [name for name, present in (("AMX", amx), ("AVX512-BF16", avx512_bf16)) if present]
    if units:
        return True, " and ".join(units)
    capability = torch.backends.cpu.get_cpu_capability()
    return False, f"no AMX or AVX512-BF16 (CPU capability {capability}: bf16 would be emulated, slower than fp32)"


def resolve_precision(requested: str, device_kind: str) -> PrecisionChoice:
    """The Trainer precision for ``requested`` on ``device_kind`` (cpu | cuda | mps)."""
    if requested != "auto":
        return PrecisionChoice(requested, "set in the config")
    if device_kind == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16-mixed", f"auto: {torch.cuda.get_device_name(0)} supports bf16")
        return PrecisionChoice("32-true", "auto: this CUDA GPU has no bf16 support")
    if device_kind == "cpu":
        has_units, what = cpu_has_bf16_units()
        if has_units:
            return PrecisionChoice("bf16-mixed", f"auto: this CPU has {what}")
        return PrecisionChoice("32-true", f"auto: {what}")
    return PrecisionChoice("32-true", f"auto: 32-true on {device_kind}")


@dataclass(frozen=True)
class ThreadsChoice:
    threads: int
    reason: str


def usable_cores() -> int:
    """The cores this process may run on (``sched_getaffinity``; ``os.cpu_count`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(requested: int | str, parallel_jobs: int = 1, cores: int | None = None) -> ThreadsChoice:
    """Intra-op threads for ``requested`` (``auto`` or a positive int) with ``parallel_jobs`` side by side."""
    if str(requested) != "auto":
        return ThreadsChoice(int(requested), "set in the config")
    cores = usable_cores() if cores is None else int(cores)
    jobs = max(1, int(parallel_jobs))
    if jobs == 1:
        return ThreadsChoice(cores, f"auto: all {cores} core(s) of this process's CPU affinity")
    threads = max(1, cores // jobs)
    return ThreadsChoice(threads, f"auto: {cores} core(s) of this process's CPU affinity / {jobs} parallel jobs")


def launcher_parallel_jobs(launcher: dict | None, multirun: bool, cores: int | None = None) -> int:
    """How many jobs Hydra's launcher runs side by side on this machine: the joblib launcher's
    ``n_jobs`` in a multirun (joblib's -1 = all cores, -2 = all but one, ...), else 1."""
    if not multirun or not launcher or "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n = int(launcher.get("n_jobs") or 1)
    if n < 0:
        n = max(1, (usable_cores() if cores is None else cores) + 1 + n)
    return max(1, n)


def _loaded_openmp() -> str | None:
    """Path of the GNU OpenMP runtime PyTorch computes with (its wheels bundle one in torch/lib).

    Other wheels bundle their own copy (scikit-learn's ``scikit_learn.libs/libgomp-<hash>.so``),
    loaded beside it once they are imported; a team started in that runtime would never reach
    PyTorch's workers. So the copy inside PyTorch's folder comes first."""
    try:
        with open("/proc/self/maps") as maps:
            paths = set(re.findall(r"(/\S*libgomp[^/\s]*\.so[.\d]*)", maps.read()))
    except OSError:
        return None
    torch_dir = os.path.dirname(os.path.realpath(torch.__file__))
    ranked = sorted(paths, key=lambda p: (not os.path.realpath(p).startswith(torch_dir + os.sep), p))
    return ranked[0] if ranked else None


def _set_on_openmp_workers(flag: bool, threads: int) -> bool:
    """Run ``torch.set_flush_denormal(flag)`` once on every thread of an OpenMP team of ``threads``.

    ``GOMP_parallel(fn, data, n, flags)`` runs ``fn(data)`` on each of the n threads of the team the
    calling thread owns, the same pool ATen's ``parallel_for`` uses. The callback is Python: ctypes
    takes the GIL in each worker, and releases it in the caller for the duration of the call.
    """
    path = _loaded_openmp()
    if path is None:
        return False
    try:
        gomp = ctypes.CDLL(path)
        parallel = gomp.GOMP_parallel
    except (OSError, AttributeError):
        return False
    callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    callback = callback_type(lambda _data: torch.set_flush_denormal(flag) and None)
    parallel.argtypes = [callback_type, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    parallel(callback, None, threads, 0)
    return True


def subnormals_flushed_everywhere() -> bool:
    """True when an elementwise op split over every intra-op thread turns subnormal input into 0."""
    probe = torch.full((_PROBE_NUMEL,), _SUBNORMAL_BITS, dtype=torch.int32).view(torch.float32)
    return bool((probe * 1.5).count_nonzero() == 0)


def flush_denormals(enabled: bool = True) -> str:
    """Set (or clear) flush-to-zero on this thread and on every OpenMP worker; returns what happened."""
    if not torch.set_flush_denormal(enabled):
        return "not supported on this CPU (no SSE3 DAZ): subnormals are computed"
    threads = torch.get_num_threads()
    on_workers = threads > 1 and _set_on_openmp_workers(enabled, threads)
    if not enabled:
        return "off: subnormal numbers are computed exactly (and slowly on x86 CPUs)"
    if subnormals_flushed_everywhere():
        where = f"this thread and {threads - 1} OpenMP worker(s)" if on_workers else f"{threads} thread(s)"
        return f"on ({where})"
    log.warning("flush-to-zero is not in effect on every intra-op thread; bf16 CPU training may slow down")
    return f"on for this thread only ({threads} intra-op threads; the workers could not be reached)"
