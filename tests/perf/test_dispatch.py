"""The dispatch trims (src/training/dispatch.py) remove Lightning's per-step dispatch work and
nothing else; the Lightning behaviour each one relies on is pinned here."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.core.hooks import ModelHooks
from pytorch_lightning.profilers import SimpleProfiler

from src.callbacks.nonfinite import NonFiniteGuard
from src.training.dispatch import PER_BATCH_HOOKS, FastFxName, QuietProfiler, skip_noop_batch_hooks
from src.training.pipeline import build, build_trainer


def _docstring_only(*args: Any, **kwargs: Any) -> None:
    """Nothing."""


@pytest.mark.parametrize("base", [pl.Callback, ModelHooks])
def test_the_shadowed_hooks_are_no_ops_in_this_lightning(base: type) -> None:
    # Shadowing is only sound while Lightning's own versions do nothing: the same bytecode as a
    # function with a docstring alone.
    for name in PER_BATCH_HOOKS:
        assert getattr(base, name).__code__.co_code == _docstring_only.__code__.co_code, name


class Counting(pl.Callback):
    """Overrides two per-batch hooks and counts them; inherits the rest."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.calls["on_train_batch_end"] += 1

    def on_before_backward(self, *args: Any) -> None:
        self.calls["on_before_backward"] += 1


def test_only_inherited_no_ops_are_shadowed_and_the_class_is_untouched() -> None:
    counting, guard = Counting(), NonFiniteGuard()
    shadowed = skip_noop_batch_hooks([counting, guard])
    assert counting.on_train_batch_end is not None and counting.on_before_backward is not None
    assert counting.on_after_backward is None and counting.on_validation_batch_end is None
    assert set(shadowed["Counting"]) == set(PER_BATCH_HOOKS) - {"on_train_batch_end", "on_before_backward"}
    assert guard.on_train_batch_end is not None  # NonFiniteGuard's own per-step check keeps running
    assert Counting.on_after_backward is pl.Callback.on_after_backward  # class and other instances intact
    assert Counting().on_after_backward is not None
    assert "on_save_checkpoint" not in vars(guard)  # Lightning calls that one directly: never shadowed
    # A second call finds nothing left to shadow (the instance attributes are already there).
    assert skip_noop_batch_hooks([counting]) == {}


def _fit(cfg: Any, skip: bool) -> tuple[dict[str, torch.Tensor], Counting, pl.Trainer, dict[str, float]]:
    pl.seed_everything(0, verbose=False)
    datamodule, model = build(cfg)
    counting = Counting()
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None] + [counting]
    if skip:
        trainer = build_trainer(cfg, model, callbacks, [], limit_val_batches=1)
    else:
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=[], limit_val_batches=1)
    trainer.fit(model, datamodule=datamodule)
    tested = trainer.test(model, datamodule=datamodule, verbose=False)[0]  # evaluation hooks shadowed too
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, counting, trainer, tested


def test_a_trimmed_fit_runs_every_overridden_hook_and_ends_with_the_same_weights(tiny_config) -> None:
    # Lightning's dispatchers skip a hook that is not callable (instead of raising); the fit is the
    # same fit: overridden hooks called as often, bit-identical weights, the same test figures.
    cfg = tiny_config("callbacks.embeddings=null", "callbacks.learning_rate=null")  # no logger here
    plain, counted_plain, _, tested_plain = _fit(cfg, skip=False)
    trimmed, counted_trimmed, trainer, tested_trimmed = _fit(cfg, skip=True)
    assert counted_trimmed.on_after_backward is None and trainer.lightning_module.on_train_batch_start is None
    assert isinstance(trainer.profiler, QuietProfiler)
    steps = trainer.global_step
    assert steps > 10 and counted_trimmed.calls == counted_plain.calls
    assert counted_trimmed.calls == {"on_train_batch_end": steps, "on_before_backward": steps}
    assert plain.keys() == trimmed.keys() and all(torch.equal(plain[k], trimmed[k]) for k in plain)
    assert tested_trimmed == tested_plain and "test/acc" in tested_plain


def test_quiet_profiler_times_nothing_and_the_config_can_still_choose_a_real_one(tiny_config) -> None:
    profiler = QuietProfiler()
    with profiler.profile("a") as first, profiler.profile("b") as second:
        assert first is None and second is None
    cfg = tiny_config("trainer.profiler=simple")
    assert isinstance(instantiate(cfg.trainer).profiler, SimpleProfiler)


class Plain(torch.nn.Module):
    pass


class Fast(FastFxName, pl.LightningModule):
    pass


def test_fast_fx_name_is_a_plain_attribute_and_modules_still_register() -> None:
    module = Fast()
    module._current_fx_name = "training_step"
    assert module._current_fx_name == "training_step" and "_current_fx_name" in vars(module)
    module.layer = torch.nn.Linear(2, 2)  # everything else still goes through nn.Module
    module.child = Plain()
    assert {name for name, _ in module.named_children()} == {"layer", "child"}
    assert len(list(module.parameters())) == 2
