"""OmegaConf resolvers used by conf/: unique run folders named by their overrides, and short labels.

Sweep job folders (``hydra.sweep.subdir``) start with what the sweep varies, e.g. ``3_loss.m=4``:
``src.utils.swept.SweptKeys`` (a Hydra callback) records the swept keys when the multirun starts,
and ``job_subdir`` keeps only those overrides, in the order they were typed, never truncated.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import OmegaConf

# One id per process: every job of a sweep shares it, two sweeps started in the same second differ.
_RUN_UID = f"{os.getpid():x}{secrets.token_hex(2)}"
# File names are limited to 255 bytes; long override lists keep their start plus a hash of the rest.
MAX_NAME = 120
# Set by SweptKeys in the launching process; an environment variable so that launcher workers
# (joblib processes, SLURM jobs) inherit it.
SWEPT_ENV = "MARGINLOSS_SWEPT_KEYS"
# A job folder name made of swept overrides only is cut (with a hash) only past this many bytes,
# where the file system would refuse it anyway.
MAX_SWEPT_NAME = 240
# Loss parameters that are margins: they name the loss in figure titles.
MARGIN_KEYS = ("m", "m1", "m2", "m3", "margin")


def folder_suffix(text: str) -> str:
    """``"_" + text`` made safe as one folder name ("" when there are no overrides)."""
    if not text:
        return ""
    name = str(text).replace("/", "-")
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9]}~{digest}"
    return f"_{name}"


def run_suffix(text: str) -> str:
    """``folder_suffix`` as one shell word and one plain Hydra value: ``loss=arcface,loss.m=0.5`` ->
    ``_loss-arcface_loss.m-0.5`` (no ``=``, ``,``, ``+`` or quotes: the printed folder pastes as it is)."""
    name = folder_suffix(text)
    name = name.replace("=", "-").replace(",", "_").replace("~", "-")
    return re.sub(r"[^A-Za-z0-9._-]", "", name)


def override_key(override: str) -> str:
    """``"++data.train_subset=6000" -> "data.train_subset"`` (the key as the config names it)."""
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys() -> list[str]:
    """The keys the running multirun sweeps over, as recorded by ``SweptKeys`` ([] if unknown)."""
    return [k for k in os.environ.get(SWEPT_ENV, "").split(",") if k]


def job_subdir(num: Any, task_overrides: Iterable[str] | None, fallback: str = "") -> str:
    """``<num>_<swept overrides>`` for a sweep job, e.g. ``0_loss.m=2`` or ``5_loss=arcface,seed=2``.

    Constant overrides are left out (they are the same for every job: see the sweep's
    ``multirun.yaml``). Without recorded swept keys the job is named ``<num><fallback>``, the
    ``folder_suffix`` of Hydra's ``override_dirname``, as before.
    """
    keys = swept_keys()
    by_key = {override_key(str(o)): str(o).lstrip("+~") for o in (task_overrides or [])}
    swept = [by_key[k] for k in keys if k in by_key]
    if not swept:
        return f"{num}{folder_suffix(fallback)}"
    name = ",".join(swept).replace("/", "-")
    if len(name.encode()) > MAX_SWEPT_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name.encode()[: MAX_SWEPT_NAME - 9].decode(errors='ignore')}~{digest}"
    return f"{num}_{name}"


def margin_label(loss: Mapping[str, Any] | None) -> str:
    """The margin parameters of a loss config, e.g. ``"m=0.5"`` or ``"m1=1, m2=0.5, m3=0"``."""
    if not loss:
        return ""
    return ", ".join(f"{k}={loss[k]}" for k in MARGIN_KEYS if k in loss and loss[k] is not None)


def register_resolvers() -> None:
    """The resolvers above; ``src.training.compose.register_resolvers`` adds the data's own."""
    if not OmegaConf.has_resolver("run_uid"):
        OmegaConf.register_new_resolver("run_uid", lambda: _RUN_UID)
    if not OmegaConf.has_resolver("suffix"):
        OmegaConf.register_new_resolver("suffix", folder_suffix)
    if not OmegaConf.has_resolver("run_suffix"):
        OmegaConf.register_new_resolver("run_suffix", run_suffix)
    if not OmegaConf.has_resolver("job_subdir"):
        OmegaConf.register_new_resolver("job_subdir", job_subdir)
    if not OmegaConf.has_resolver("margin_label"):
        OmegaConf.register_new_resolver("margin_label", margin_label)
