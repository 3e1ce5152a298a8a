"""AUDIT ONLY (never a default): the reference study's protocol, measured every epoch.

The reference trained with the test set as Keras ``validation_data`` (its margin layers fed the
true test labels) and reported the best epoch's test accuracy. To show what that protocol does,
this callback scores the TEST set after every validation epoch with the current weights, twice:

* ``audit/test_acc_reference_protocol``: what the reference's Keras run printed as val_acc: the
  head's label-fed ``reference_correct`` for the audit heads (src/losses/reference_*.py); heads
  that took no label (the softmax baseline) score their plain label-free prediction;
* ``audit/test_acc_label_free``: the same weights, label-free prediction (``predict_labels``).

Both land in the per-epoch history of the run record (EpochHistory). They are logged only: the
checkpoint is still chosen on val/acc and the test set is still evaluated once at the end, so a
report can take from one run the reference's "max over epochs on test" and the honest figure.
Switched on by the callbacks entry ``reference_audit`` (conf/experiment/reference_audit.yaml).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from src.losses.reference_protocol import ReferenceHead

REFERENCE_KEY = "audit/test_acc_reference_protocol"
LABEL_FREE_KEY = "audit/test_acc_label_free"


class ReferenceProtocolAudit(pl.Callback):
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        reference, label_free = self.score_test_set(trainer, pl_module)
        # Logged, never monitored: ModelCheckpoint watches val/acc only.
        pl_module.log(REFERENCE_KEY, reference, on_epoch=True)
        pl_module.log(LABEL_FREE_KEY, label_free, on_epoch=True)

    @staticmethod
    def score_test_set(trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[float, float]:
        datamodule = trainer.datamodule
        if datamodule is None:
            raise RuntimeError("the reference-protocol audit reads the test split from a LightningDataModule")
        datamodule.setup("test")  # loads the test split once; a no-op afterwards
        head = pl_module.head
        was_training = pl_module.training
        pl_module.eval()
        reference_sum = label_free_hits = total = 0.0
        try:
            with torch.no_grad():
                for images, labels in datamodule.test_dataloader():
                    images, labels = images.to(pl_module.device), labels.to(pl_module.device)
                    embeddings = pl_module.embed(images)
                    free = pl_module.predict_labels(images, embeddings) == labels
                    label_free_hits += float(free.sum())
                    if isinstance(head, ReferenceHead):
                        reference_sum += float(head.reference_correct(embeddings, labels).sum())
                    else:  # no label input in the reference's layer: its protocol is label-free
                        reference_sum += float(free.sum())
                    total += labels.numel()
        finally:
            pl_module.train(was_training)
        return reference_sum / max(total, 1.0), label_free_hits / max(total, 1.0)
