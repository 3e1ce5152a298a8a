"""OmegaConf resolvers used by conf/hydra: unique run folders named by their overrides."""

from __future__ import annotations

import hashlib
import os
import secrets

from omegaconf import OmegaConf

# One id per process: every job of a sweep shares it, two sweeps started in the same second differ.
_RUN_UID = f"{os.getpid():x}{secrets.token_hex(2)}"
# File names are limited to 255 bytes; long override lists keep their start plus a hash of the rest.
MAX_NAME = 120


def folder_suffix(text: str) -> str:
    """``"_" + text`` made safe as one folder name ("" when there are no overrides)."""
    if not text:
        return ""
    name = str(text).replace("/", "-")
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9]}~{digest}"
    return f"_{name}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("run_uid"):
        OmegaConf.register_new_resolver("run_uid", lambda: _RUN_UID)
    if not OmegaConf.has_resolver("suffix"):
        OmegaConf.register_new_resolver("suffix", folder_suffix)
