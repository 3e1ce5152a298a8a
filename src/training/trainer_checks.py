"""The config pass's checks of ``trainer`` (``check_trainer``): Lightning's options from tables,
the devices this machine has, and the process layouts that work on the CPU.

Part of ``src.training.validate.check_config``; the messages come from ``src.config.checks``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any

from src.config.checks import check_bool, check_choice, check_int, check_number, fail, is_int, show
from src.training.ranks import check_launch
from src.utils.hardware import device_kind

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# The precisions a run may use: the weights stay float32 (mixed precision computes in bf16 or fp16
# inside autocast). Lightning's "-true" precisions other than 32 (64-true, bf16-true, 16-true,
# transformer-engine) cast the weights themselves, and the passes after the test (embeddings, the
# analyses) feed the model float32 images outside Lightning's precision plugin: such a run trained,
# then failed with a dtype error. They are refused, naming these.
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "bf16", "16-mixed", "16")
PRECISIONS_ALLOWED = "auto, 32-true, bf16-mixed, or 16-mixed on a CUDA GPU (32, bf16 and 16 are their short names)"
LIGHTNING_ONLY_PRECISIONS = (
    "64-true", "64", "bf16-true", "16-true", "transformer-engine", "transformer-engine-float16",
)  # fmt: skip
# Precisions that need a CUDA GPU (Lightning refuses 16-bit *mixed* precision on the CPU).
CUDA_ONLY_PRECISIONS = ("16-mixed", "16")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp", "deepspeed", "single_device")


def _check_devices(value: Any, kind: str) -> int:
    """Checks ``trainer.devices``; returns how many processes it asks for."""
    import torch

    key = "trainer.devices"
    allowed = "must be auto, -1 (all), an integer >= 1, or a list of device indices"
    if value == "auto":  # Lightning: one CPU process, or every GPU
        return torch.cuda.device_count() if kind == "cuda" else 1
    if value == -1:
        return torch.cuda.device_count() if kind == "cuda" else (os.cpu_count() or 1)
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            fail(key, value, allowed)
        value = int(parts[0]) if len(parts) == 1 and "," not in value else [int(p) for p in parts]
    if is_int(value):
        if value < 1:
            fail(key, value, allowed)
        count = value
        indices: list[int] = []
    elif isinstance(value, (list, tuple)) and value and all(is_int(v) and v >= 0 for v in value):
        if len(set(value)) != len(value):
            fail(key, value, "device indices must be unique")
        count, indices = len(value), list(value)
    else:
        fail(key, value, allowed)
    if kind == "cuda" and torch.cuda.is_available():
        available = torch.cuda.device_count()
        if count > available or any(i >= available for i in indices):
            fail(key, value, f"this machine has {available} CUDA device(s)")
    return count


MULTIPROCESS_STRATEGY = "src.training.distributed.MultiprocessDDPStrategy"


def _check_processes(t: Mapping[str, Any], kind: str, processes: int) -> None:
    """Several processes on the CPU only through ``trainer=ddp_cpu``: with any other strategy
    Lightning starts ranks 1..N-1 by re-running the command line (a ``-m`` sweep then runs again in
    every worker, into its own sweep folder), and ``ddp_spawn``-style workers would not send the
    run's results back for the record."""
    strategy = t.get("strategy", "auto")
    ours = isinstance(strategy, Mapping) and strategy.get("_target_") == MULTIPROCESS_STRATEGY
    if kind == "cpu" and processes > 1 and not ours:
        fail(
            "trainer.devices", t.get("devices"),
            f"{processes} processes on the CPU need trainer=ddp_cpu (e.g. trainer=ddp_cpu trainer.devices="
            f"{processes}); with strategy {show(strategy if isinstance(strategy, str) else strategy.get('_target_'))} "
            "Lightning would re-run the command in every worker",
        )
    if ours and int(t.get("num_nodes", 1) or 1) > 1:
        fail("trainer.num_nodes", t.get("num_nodes"), "trainer=ddp_cpu runs on one machine: must be 1 "
             "(for several machines use trainer=ddp under torchrun or SLURM)")
    if ours and processes < 2:
        fail("trainer.devices", t.get("devices"), "trainer=ddp_cpu needs 2 or more processes (an integer >= 2); "
             "for one process leave trainer=ddp_cpu out")


# Trainer arguments in conf/trainer/*.yaml; any other key is looked up in the Trainer's signature.
COMMON_TRAINER_KEYS = frozenset({
    "_target_", "accelerator", "devices", "num_nodes", "strategy", "precision", "max_epochs", "min_epochs",
    "max_steps", "deterministic", "benchmark", "log_every_n_steps", "num_sanity_val_steps", "enable_progress_bar",
    "gradient_clip_val", "limit_train_batches", "limit_val_batches", "limit_test_batches", "enable_model_summary",
    "plugins", "sync_batchnorm", "use_distributed_sampler",
})  # fmt: skip


def _check_trainer_keys(t: Mapping[str, Any]) -> None:
    unknown = [k for k in t if k not in COMMON_TRAINER_KEYS]
    if not unknown:
        return
    import inspect

    import pytorch_lightning as pl

    allowed = [p for p in inspect.signature(pl.Trainer.__init__).parameters if p not in ("self", "kwargs")]
    for key in unknown:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=2)
            hint = f"; did you mean {' or '.join(f'trainer.{k}' for k in close)}?" if close else ""
            fail(f"trainer.{key}", t[key], f"not an argument of pytorch_lightning.Trainer{hint}")


def check_trainer(t: Mapping[str, Any]) -> None:
    import torch

    _check_trainer_keys(t)
    accelerator = t.get("accelerator", "auto")
    check_choice("trainer.accelerator", accelerator, ACCELERATORS)
    kind = device_kind(accelerator)
    if kind == "cuda" and not torch.cuda.is_available():
        fail("trainer.accelerator", accelerator, "no CUDA GPU is available here; use trainer.accelerator=auto or cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        fail("trainer.accelerator", accelerator, "Apple MPS is not available here; use trainer.accelerator=auto or cpu")
    processes = _check_devices(t.get("devices", "auto"), kind)
    check_int("trainer.num_nodes", t.get("num_nodes", 1), 1)
    _check_processes(t, kind, processes)
    check_launch(t, processes)  # SLURM tasks per node vs devices; --multirun with relaunching DDP

    precision = t.get("precision", "32-true")
    precision = str(precision) if is_int(precision) else precision
    if precision in LIGHTNING_ONLY_PRECISIONS:
        fail("trainer.precision", precision, f"the weights must stay float32 (the embeddings and analyses after the "
             f"test run the model on float32 images); use one of {PRECISIONS_ALLOWED}")
    if precision not in PRECISIONS or isinstance(precision, bool):
        fail("trainer.precision", precision, f"must be one of {PRECISIONS_ALLOWED}")
    if kind != "cuda" and precision in CUDA_ONLY_PRECISIONS:
        fail(
            "trainer.precision", precision,
            f"16-bit mixed precision needs a CUDA GPU and this run is on {kind}; use bf16-mixed or 32-true",
        )

    strategy = t.get("strategy", "auto")
    if not isinstance(strategy, Mapping):
        check_choice("trainer.strategy", strategy, STRATEGIES)

    check_int("trainer.max_epochs", t.get("max_epochs"), 1)
    check_int("trainer.min_epochs", t.get("min_epochs"), 0, t.get("max_epochs"), null=True)
    if t.get("max_steps", -1) != -1:
        check_int("trainer.max_steps", t.get("max_steps"), 1)
    for split in ("train", "val", "test", "predict"):
        key = f"limit_{split}_batches"
        value = t.get(key)
        if value is None:
            continue
        low = 1 if split == "train" else 0
        if is_int(value):
            check_int(f"trainer.{key}", value, low)
        else:
            check_number(
                f"trainer.{key}", value, 0.0, 1.0, low_open=split == "train", null=True,
                what=f"an integer >= {low} (batches) or a fraction",
            )
    check_int("trainer.log_every_n_steps", t.get("log_every_n_steps", 50), 1)
    check_int("trainer.num_sanity_val_steps", t.get("num_sanity_val_steps", 2), -1)
    check_int("trainer.accumulate_grad_batches", t.get("accumulate_grad_batches", 1), 1)
    check_int("trainer.check_val_every_n_epoch", t.get("check_val_every_n_epoch", 1), 1, null=True)
    interval = t.get("val_check_interval")
    if interval is not None:
        if is_int(interval):
            check_int("trainer.val_check_interval", interval, 1)
        else:
            check_number("trainer.val_check_interval", interval, 0.0, 1.0, low_open=True)
    check_number("trainer.gradient_clip_val", t.get("gradient_clip_val"), 0.0, null=True)
    if t.get("gradient_clip_algorithm") is not None:
        check_choice("trainer.gradient_clip_algorithm", t["gradient_clip_algorithm"], ("norm", "value"))
    if t.get("deterministic") not in (None, True, False, "warn"):
        fail("trainer.deterministic", t["deterministic"], "must be true, false or warn")
    if t.get("benchmark") not in (None, True, False):
        fail("trainer.benchmark", t["benchmark"], "must be true, false or null")
    for key in ("enable_progress_bar", "enable_model_summary", "enable_checkpointing", "inference_mode"):
        if key in t and t[key] is not None:
            check_bool(f"trainer.{key}", t[key])
