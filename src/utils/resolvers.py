"""OmegaConf resolvers used by conf/hydra: unique run folders and optional name suffixes."""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf

# One id per process: every job of a sweep shares it, two sweeps started in the same second differ.
_RUN_UID = f"{os.getpid():x}{secrets.token_hex(2)}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("run_uid"):
        OmegaConf.register_new_resolver("run_uid", lambda: _RUN_UID)
    if not OmegaConf.has_resolver("suffix"):
        # "_<text>" when text is non-empty, else "" (keeps folder names tidy without overrides).
        OmegaConf.register_new_resolver("suffix", lambda text: f"_{text}" if text else "")
