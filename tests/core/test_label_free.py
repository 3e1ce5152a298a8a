"""Inference never sees labels: permuting the labels handed in beside the images changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from src.training.pipeline import build


@pytest.mark.parametrize(
    "overrides",
    [["loss=softmax"], ["loss=sphereface"], ["loss=arcface"], ["loss=cosface"], ["model.tta_hflip=true"]],
    ids=lambda o: "-".join(o),
)
def test_test_predictions_ignore_labels(tiny_config, tmp_path: Path, overrides: list[str]) -> None:
    cfg = tiny_config(*overrides)
    datamodule, model = build(cfg)
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    honest = torch.cat(model.results.test_predictions)

    images, labels = datamodule._test
    permuted = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    assert (permuted != labels).any()
    datamodule._test = (images, permuted)
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert torch.equal(torch.cat(model.results.test_predictions), honest)


def test_predict_step_takes_images_only(tiny_config) -> None:
    _, model = build(tiny_config("loss=arcface"))
    model.eval()
    images = torch.randn(5, 1, 28, 28)
    a = model.predict_step((images, torch.zeros(5, dtype=torch.long)))
    b = model.predict_step((images, torch.arange(5)))
    assert torch.equal(a, b) and torch.equal(a, model.predict_step(images))
