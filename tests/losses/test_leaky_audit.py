"""Metric heads without a trained softmax layer report no leakage-audit figure (issue 15)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl

from src.losses.contrastive import Contrastive
from src.losses.triplet import Triplet
from src.training.pipeline import build


@pytest.mark.parametrize("cls", [Contrastive, Triplet])
def test_metric_heads_say_when_the_audit_means_nothing(cls) -> None:
    assert not cls(8, 4, softmax_weight=0.0).has_leaky_audit
    assert cls(8, 4, softmax_weight=0.5).has_leaky_audit


@pytest.mark.parametrize(("overrides", "leaky"), [
    (("loss=triplet", "loss.softmax_weight=0"), False),
    (("loss=contrastive", "loss.softmax_weight=0"), False),
    (("loss=contrastive", "loss.softmax_weight=0.5"), True),
    (("loss=arcface",), True),
])
def test_test_acc_leaky_reported_only_where_it_means_something(tiny_config, overrides, leaky: bool) -> None:
    datamodule, model = build(tiny_config(*overrides, "backbone=small2d"))
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         num_sanity_val_steps=0, limit_val_batches=1)
    trainer.fit(model, datamodule=datamodule)
    results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    assert "test/acc" in results
    assert ("test/acc_leaky" in results) is leaky
