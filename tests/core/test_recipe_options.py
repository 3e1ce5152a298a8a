"""The recipe switches: EMA weights (validated, checkpointed and tested) and hflip test-time
augmentation (label-free, mirror-invariant)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from src.callbacks.ema import EMA
from src.training.pipeline import build, run

EMA_OVERRIDE = "callbacks.ema={_target_:src.callbacks.ema.EMA,decay:0.9}"


def _trainer(tmp_path: Path, *callbacks: pl.Callback) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=2, limit_train_batches=4, logger=False, callbacks=list(callbacks), default_root_dir=tmp_path,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
    )


def test_test_scores_the_ema_weights_that_validation_selected(tiny_config, tmp_path: Path) -> None:
    datamodule, model = build(tiny_config())
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/acc", mode="max")
    trainer = _trainer(tmp_path, EMA(decay=0.9), best)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)

    saved = torch.load(best.best_model_path, weights_only=True)
    averaged, raw = saved["state_dict"], saved["current_model_state"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)  # the two really differ
    # Lightning's own callback would have loaded `raw` back before the test; ours keeps the EMA.
    for key, value in model.state_dict().items():
        assert torch.equal(value, averaged[key]), key


def test_ema_resume_restores_raw_and_averaged_weights(tiny_config, tmp_path: Path) -> None:
    datamodule, model = build(tiny_config())
    last = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path, EMA(decay=0.9), last).fit(model, datamodule=datamodule)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)

    datamodule, resumed = build(tiny_config())
    ema = EMA(decay=0.9)
    trainer = _trainer(tmp_path, ema)  # max_epochs=2 again: nothing left to train, only the restore runs
    trainer.fit(resumed, datamodule=datamodule, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    # After fit the callback copies the average into the model, so both now hold the EMA weights,
    # and the average it restored is the saved one.
    for key, value in ema._average_model.module.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key]), key


def test_ema_run_records_finished(tiny_config, tmp_path: Path) -> None:
    metrics = run(tiny_config(EMA_OVERRIDE), tmp_path / "run")
    assert 0.0 <= metrics["test_acc"] <= 1.0 and Path(metrics["best_checkpoint"]).exists()


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_ema_decay_out_of_range_is_a_clear_error(decay: float) -> None:
    with pytest.raises(ValueError, match=r"callbacks\.ema\.decay=.* must be in \(0, 1\)"):
        EMA(decay=decay)


def test_tta_predictions_do_not_change_when_the_images_are_mirrored(tiny_config) -> None:
    _, model = build(tiny_config("model.tta_hflip=true", "channels_last=false"))
    model.eval()
    images = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.predict_labels(images), model.predict_labels(images.flip(-1)))
        # ...which plain prediction does not promise: it differs for some of these random images.
        model.tta_hflip = False
        plain = model.predict_labels(images)
        assert torch.equal(plain, model.head.predict(model.embed(images)))
        assert not torch.equal(plain, model.predict_labels(images.flip(-1)))


def test_tta_is_the_argmax_of_the_summed_scores(tiny_config) -> None:
    _, model = build(tiny_config("model.tta_hflip=true", "loss=arcface"))
    model.eval()
    images = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = (model(images) + model(images.flip(-1))).argmax(dim=1)
        assert torch.equal(model.predict_step(images), expected)
