"""Trims of Lightning's per-step dispatch: work Lightning does at every training step whatever the
project's callbacks and module implement, removed without changing what runs.

Measured in CPU time on a step whose compute is tiny (docs/performance.md, "Third round"): the three
together take ~0.2 ms off every step, as much on a 1 ms GPU step as on a 30 ms CPU one.

* ``skip_noop_batch_hooks``: Lightning calls every per-batch hook of every callback and of the
  module, overridden or not, each inside a profiler context named after the callback's
  ``state_key`` (a repr of all its settings for ``ModelCheckpoint``). Its dispatchers
  (``_call_callback_hooks``, ``_call_lightning_module_hook``) skip a hook that is not callable, so
  shadowing each inherited no-op with ``None`` on the instance removes the call and nothing else: an
  overridden hook keeps running and ``is_overridden`` reads ``None`` as "not overridden", as before.
  Only per-batch hooks are shadowed, which Lightning calls through the dispatchers alone
  (``on_save_checkpoint``, which it calls directly, is left alone), and of the module only the
  training ones (Lightning reads the signatures of its evaluation batch hooks).
* ``QuietProfiler``: the default profiler's ``profile()`` is a generator-based context manager, built
  and torn down ~30 times a step to time nothing; this one hands back one shared ``nullcontext``.
  ``trainer.profiler=simple`` (or ``advanced``) still profiles.
* ``FastFxName``: Lightning sets ``module._current_fx_name`` around every hook it calls (~34 times a
  step); ``nn.Module.__setattr__`` spends 2 µs on each checking for parameters and submodules that a
  string can never be.

``tests/perf/test_dispatch.py`` pins the Lightning behaviour each relies on, so an upgrade that
changes it fails a test instead of silently skipping a hook.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.core.hooks import ModelHooks
from pytorch_lightning.profilers import PassThroughProfiler

TRAIN_STEP_HOOKS: tuple[str, ...] = (
    "on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_before_zero_grad", "on_train_batch_end",
)
EVAL_BATCH_HOOKS: tuple[str, ...] = (
    "on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end",
    "on_predict_batch_start", "on_predict_batch_end",
)
PER_BATCH_HOOKS = TRAIN_STEP_HOOKS + EVAL_BATCH_HOOKS


def _inherited_noops(obj: object, base: type, hooks: tuple[str, ...]) -> list[str]:
    """The ``hooks`` that ``obj`` takes unchanged from ``base``, where they are no-ops."""
    cls, missing = type(obj), object()
    return [name for name in hooks
            if name not in vars(obj) and getattr(cls, name, None) is getattr(base, name, missing)]


def skip_noop_batch_hooks(
    callbacks: Iterable[pl.Callback], module: pl.LightningModule | None = None
) -> dict[str, list[str]]:
    """Shadow the inherited no-op per-batch hooks of ``callbacks`` (training ones of ``module``) with ``None``.
    Call it on ``trainer.callbacks``, the final list; returns what was shadowed, by class name."""
    # The module's evaluation batch hooks stay: Lightning reads their signatures before each loop.
    targets: list[tuple[object, type, tuple[str, ...]]] = [(c, pl.Callback, PER_BATCH_HOOKS) for c in callbacks]
    if module is not None:
        targets.append((module, ModelHooks, TRAIN_STEP_HOOKS))
    shadowed: dict[str, list[str]] = {}
    for obj, base, hooks in targets:
        names = _inherited_noops(obj, base, hooks)
        for name in names:
            object.__setattr__(obj, name, None)  # an instance attribute: the class keeps its hooks
        if names:
            shadowed.setdefault(type(obj).__name__, []).extend(names)
    return shadowed


_NULL_CONTEXT = nullcontext()


class QuietProfiler(PassThroughProfiler):
    """Lightning's "no profiler", without a context manager built for every action it names."""

    def profile(self, action_name: str) -> AbstractContextManager:  # type: ignore[override]
        return _NULL_CONTEXT


class FastFxName:
    """Mixin for a LightningModule: ``_current_fx_name`` set as a plain attribute."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
