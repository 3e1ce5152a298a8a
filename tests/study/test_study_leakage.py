"""Leakage audit: the reference protocol's predictions (argmax of the margin logits built with the
label handed in) depend on the labels; the honest, label-free predictions do not."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from src.training.pipeline import build


def test_leaky_predictions_depend_on_labels_honest_do_not(tiny_config) -> None:
    cfg = tiny_config("loss=arcface", "loss.m=2.0")
    datamodule, model = build(cfg)
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=datamodule)
    datamodule.setup("test")
    images, labels = datamodule._test
    permuted = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]
    assert (permuted != labels).float().mean() > 0.5

    # Through trainer.test, as the pipeline runs it.
    results, predictions = [], []
    for test_labels in (labels, permuted):
        datamodule._test = (images, test_labels)
        results.append(trainer.test(model, datamodule=datamodule, verbose=False)[0])
        predictions.append(torch.cat(model.results.test_predictions))
    datamodule._test = (images, labels)
    assert torch.equal(predictions[0], predictions[1])  # honest predictions ignore the labels
    honest_acc = results[0]["test/acc"]
    assert honest_acc > 0.5  # the model has learnt the synthetic classes
    # The audit number is not the accuracy: with the true labels the 2-rad margin pushes the true
    # class's logit down, so the leaky argmax almost never picks it.
    assert results[0]["test/acc_leaky"] < honest_acc - 0.3

    # The leaky predictions move with the labels handed in; scored against the true labels, the
    # same model gets a different "accuracy" depending on which labels it was fed.
    model.eval()
    with torch.no_grad():
        emb = torch.cat([model.embed(x) for x, _ in datamodule.test_dataloader()])
        leaky_true = model.head.training_logits(emb, labels).argmax(1)
        leaky_perm = model.head.training_logits(emb, permuted).argmax(1)
        honest = model.head.predict(emb)
    assert (leaky_true != leaky_perm).float().mean() > 0.3
    acc_true = (leaky_true == labels).float().mean()
    acc_perm = (leaky_perm == labels).float().mean()
    assert acc_perm > acc_true + 0.2
    assert torch.equal(honest, torch.cat(predictions[:1]))
