"""Memory checked before it is spent: a batch or a model that cannot fit is refused in one line.

Part of ``src.training.validate.check_model``. One image goes through the backbone already built
for the check; every module's output is counted (what autograd keeps for the backward pass), so a
training batch needs about ``batch_size x (input + activations) x 3`` (activations, their gradients,
the workspace) plus the weights with their gradients and two optimiser moments. The limit is the
least of what the machine has free now, the cgroup's ``memory.max`` and ``RLIMIT_AS``; on a GPU,
the device's free memory. An estimate: it refuses only what cannot fit (a batch of 10^12 images),
never a run that might.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from src.config.checks import fail
from src.data.inputs import available_memory

TRAIN_FACTOR = 3  # activations, their gradients, scratch
CGROUP_MAX = Path("/sys/fs/cgroup/memory.max")


def memory_limit(accelerator: str) -> tuple[int, str] | None:
    """(bytes, what) that this process may use on ``accelerator``, or None when unknown."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return int(free), "free on the GPU"
        return None
    limits: list[tuple[int, str]] = []
    free = available_memory()
    if free:
        limits.append((free, "available on this machine"))
    try:
        text = CGROUP_MAX.read_text().strip()
        if text.isdigit():
            limits.append((int(text), "the cgroup's memory.max"))
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1):
        limits.append((int(soft), "RLIMIT_AS (ulimit -v)"))
    return min(limits) if limits else None


def per_image_bytes(backbone: torch.nn.Module, sample: torch.Tensor) -> int:
    """Bytes of every module output for one image (the activations a training step keeps)."""
    total = [sample.numel() * sample.element_size()]

    def count(_module: Any, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    hooks = [m.register_forward_hook(count) for m in backbone.modules()]
    try:
        with torch.no_grad():
            backbone.eval()(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return total[0]


def _size(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def check_memory(c: Mapping[str, Any], backbone: torch.nn.Module, sample: torch.Tensor) -> None:
    """``ConfigError`` naming the key, the size and the limit when a batch or the model cannot fit."""
    limit = memory_limit(str((c.get("trainer") or {}).get("accelerator", "auto")))
    if limit is None:
        return
    cap, what = limit
    weights = 4 * sum(p.numel() * p.element_size() for p in backbone.parameters())  # + grads, 2 moments
    if weights > cap:
        fail("backbone", (c.get("backbone") or {}).get("_target_"),
             f"its weights, gradients and optimiser state need {_size(weights)}, more than the {_size(cap)} {what}")
    image = per_image_bytes(backbone, sample)
    data = c.get("data") or {}
    for key, factor in (("batch_size", TRAIN_FACTOR), ("eval_batch_size", 1)):
        size = data.get(key)
        if isinstance(size, int) and weights + size * image * factor > cap:
            need = weights + size * image * factor
            fail(f"data.{key}", size, f"one batch needs about {_size(need)} ({_size(image * factor)} an image), more "
                 f"than the {_size(cap)} {what}; lower data.{key}")
