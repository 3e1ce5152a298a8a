""""Did you mean": the keys of a config node closest to a mistyped one (``loss.margin`` -> ``loss.m``)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def close_keys(key: str, keys: Iterable[str]) -> list[str]:
    """Keys spelled like ``key`` (difflib), then keys that abbreviate it or that it abbreviates:
    ``margin`` -> ``m`` and ``scale`` -> ``s``, which difflib alone finds too short to match."""
    names = [k for k in keys if not k.startswith("_")]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    close += [k for k in names if k not in close and k[:1] == key[:1] and (key.startswith(k) or k.startswith(key))]
    return close


def unknown_key_line(full_key: str, keys: Iterable[str], component: str | None = None, rejected: bool = False) -> str:
    """One line for a key the config does not have. ``component``: the ``_target_`` of the node (a
    new ``+key=`` reaches its constructor); ``rejected``: that constructor refused the key already."""
    prefix, _, key = full_key.rpartition(".")
    names = [k for k in keys if not k.startswith("_")]
    close = [f"{prefix}.{k}" if prefix else k for k in close_keys(key, names)]
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    listed = ", ".join(names) if len(names) <= 10 else ""
    if rejected:
        return f"{full_key} is not a valid setting of {component}; {hint}{prefix} takes: {listed or 'see its config'}"
    has = f"{prefix} has: {listed}; " if prefix and listed else ""
    if component:
        return (f"{full_key} is not a config key; {hint}({has}a new key is added with +{full_key}=..., "
                f"if {component} takes it)")
    return f"{full_key} is not a config key; {hint}({has}a new key is added with +{full_key}=...)"


def settings_line(group: str, node: Any) -> str:
    """``${config_keys:loss,${loss}}`` in ``--help``: the chosen option's keys with their values, as
    they are typed (``loss.m=0.5  loss.s=30.0``); interpolations are shown unresolved."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(node, DictConfig):
        return "(none)"
    values = OmegaConf.to_container(node, resolve=False)
    shown = [f"{group}.{k}={v}" for k, v in values.items() if not str(k).startswith("_")]
    return "  ".join(shown) or "(none)"
