"""Speed options as config, each exercised on the CPU: channels_last, compile, precision (margin math
stays float32 under bf16-mixed), batch size, matmul precision."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from src.training.pipeline import build, run


class Spy(pl.Callback):
    """Records, inside Lightning's precision context, what the loss head receives and returns."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []
        self.dtypes: dict[str, set[torch.dtype]] = {"embeddings": set(), "logits": set(), "loss": set()}

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        head = module.head
        head.register_forward_pre_hook(lambda m, args: self.dtypes["embeddings"].add(args[0].dtype))
        head.register_forward_hook(lambda m, args, out: self.dtypes["loss"].add(out.dtype))
        logits = head.training_logits

        @functools.wraps(logits)
        def spy(*args, **kwargs):  # noqa: ANN002, ANN003
            out = logits(*args, **kwargs)
            self.dtypes["logits"].add(out.dtype)
            return out

        head.training_logits = spy

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.batches.append(batch[0])


def fit(cfg, spy: Spy, root: Path) -> pl.LightningModule:
    """A bare fit; ``root`` takes whatever Lightning writes (nothing lands in the working tree)."""
    datamodule, model = build(cfg)
    trainer = instantiate(cfg.trainer, callbacks=[spy], logger=False, limit_val_batches=1, default_root_dir=root,
                          enable_checkpointing=False)  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    return model


@pytest.mark.parametrize("loss", ["arcface"])  # every head: tests/losses (autocast, no Trainer)
def test_bf16_mixed_on_cpu_keeps_margin_math_float32(tiny_config, loss: str, tmp_path: Path) -> None:
    spy = Spy()
    # bf16 is emulated on CPUs without AVX512-BF16 (slow), so: a small backbone, small batches.
    cfg = tiny_config(f"loss={loss}", "backbone=small3d", "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
                      "trainer.limit_train_batches=2", "data.batch_size=8", "data.eval_batch_size=8")
    fit(cfg, spy, tmp_path)
    assert spy.dtypes["embeddings"] == {torch.bfloat16}  # autocast really was on in the backbone
    assert spy.dtypes["logits"] == {torch.float32} and spy.dtypes["loss"] == {torch.float32}


def test_channels_last_and_batch_size_reach_model_and_batches(tiny_config, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy()
    cfg = tiny_config("channels_last=true", "data.batch_size=16", "trainer.max_epochs=1",
                      "trainer.limit_train_batches=2")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # these fits once left checkpoints/ in the repository root
    model = fit(cfg, spy, tmp_path / "root")
    assert not any(cwd.iterdir())
    conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert [len(b) for b in spy.batches] == [16, 16]
    assert all(b.is_contiguous(memory_format=torch.channels_last) for b in spy.batches)


def test_all_speed_options_together_in_a_full_run(tiny_config, tmp_path: Path) -> None:
    """channels_last + bf16-mixed + matmul_precision=medium + batch 16 through src.training.pipeline.run."""
    before = torch.get_float32_matmul_precision()
    try:
        cfg = tiny_config("channels_last=true", "trainer.precision=bf16-mixed", "matmul_precision=medium",
                          "data.batch_size=16", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                          "trainer.limit_val_batches=1")
        metrics = run(cfg, tmp_path / "run")
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    assert math.isfinite(metrics["val_acc_best"]) and 0.0 <= metrics["test_acc"] <= 1.0


def test_compile_option_wraps_the_backbone_without_duplicating_weights(tiny_config, monkeypatch,
                                                                      tmp_path: Path) -> None:
    """compile=true traced through a real fit. The eager backend runs TorchDynamo's graph capture
    but skips Inductor's C++ build (about 30 s cold on the 2-core CI machine)."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    spy = Spy()
    cfg = tiny_config("compile=true", "trainer.max_epochs=1", "trainer.limit_train_batches=2")
    model = fit(cfg, spy, tmp_path)
    assert model._compiled_backbone is not None
    assert not any("_orig_mod" in key for key in model.state_dict())  # checkpoints hold one copy


@pytest.mark.skipif(
    os.environ.get("MARGINLOSS_TEST_COMPILE") != "1",
    reason="torch.compile with Inductor on CPU needs ~30 s cold here (C++ build), over this suite's "
    "budget; run with MARGINLOSS_TEST_COMPILE=1",
)
def test_compile_with_inductor_matches_eager_on_a_tiny_model() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 8 * 8, 3))
    x = torch.randn(2, 1, 8, 8)
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
