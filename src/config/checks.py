"""The one vocabulary of value checks; each failure is a one-line ``ConfigError``.

Two message forms, both unchanged from before the checks were gathered here:

* the config pass (``src.training.validate``): ``trainer.max_epochs=0 is invalid: must be an
  integer >= 1`` (a string value is quoted);
* a component checking its own parameters names itself (``owner``): ``loss.m=2.5 is invalid for
  sphereface: m must be an integer >= 1``.

``ConfigError`` is a ``ValueError``, so a component built directly (not from a config) raises what
Python code expects from a bad argument.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

from src.errors import ConfigError


def show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def invalid(key: str, value: Any, allowed: str, *, owner: str | None = None) -> ConfigError:
    """The error for ``key=value``; ``allowed`` says what is allowed ("must be ...")."""
    if owner is None:
        return ConfigError(f"{key}={show(value)} is invalid: {allowed}")
    return ConfigError(f"{key}={value} is invalid for {owner}: {key.rpartition('.')[2]} {allowed}")


def fail(key: str, value: Any, allowed: str, *, owner: str | None = None) -> NoReturn:
    raise invalid(key, value, allowed, owner=owner)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(
    key: str, value: Any, low: int | None = None, high: int | None = None, *, null: bool = False,
    whole_floats: bool = False, owner: str | None = None,
) -> Any:
    """``value`` as an int in [low, high] (None when ``null`` allows it). ``whole_floats``: 2.0
    counts as 2 (2.5 does not)."""
    if value is None and null:
        return None
    number = int(value) if whole_floats and is_number(value) and float(value).is_integer() else value
    ok = is_int(number) and (low is None or number >= low) and (high is None or number <= high)
    if not ok:
        parts = (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "")
        bounds = " and ".join(b for b in parts if b)
        fail(key, value, "must be " + ("null or " if null else "") + "an integer" + (f" {bounds}" if bounds else ""),
             owner=owner)
    return number


def check_number(
    key: str, value: Any, low: float | None = None, high: float | None = None, *, low_open: bool = False,
    high_open: bool = False, null: bool = False, what: str = "a finite number", owner: str | None = None,
) -> Any:
    """``value`` as a finite float in the range (None when ``null`` allows it)."""
    if value is None and null:
        return None
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high:g}")
        allowed = ("null or " if null else "") + what + (" " + " and ".join(bounds) if bounds else "")
        fail(key, value, f"must be {allowed}", owner=owner)
    return float(value)


def check_bool(key: str, value: Any, *, owner: str | None = None) -> bool:
    if not isinstance(value, bool):
        fail(key, value, "must be true or false", owner=owner)
    return value


def check_choice(key: str, value: Any, choices: tuple[Any, ...], *, owner: str | None = None) -> Any:
    if value not in choices or isinstance(value, bool):
        fail(key, value, f"must be one of {', '.join(str(c) for c in choices)}", owner=owner)
    return value
