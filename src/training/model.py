"""One LightningModule for every (backbone, loss head) pair.

Prediction is label-free everywhere: ``head.predict(backbone(images))``. Labels enter only the
training loss and the metrics that compare predictions with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from src.losses.base import LossHead
from src.losses.reference_protocol import ReferenceHead
from src.training.dispatch import FastFxName

# A field of StageResults with this metadata key set holds only what its own process saw: it is not
# sent back from DDP workers (src/training/distributed.py), and its reader must cope with finding it empty.
RANK_LOCAL = "rank_local"


@dataclass
class StageResults:
    """What the model keeps from its last validation and test epochs, read after ``trainer.fit`` /
    ``trainer.test`` (the run record, ``src.evaluate``, the post-test analyses). Every field is sent
    back from DDP worker processes unless it is marked ``RANK_LOCAL`` (``shipped``)."""

    # The last epoch's confusion matrices (synchronised over processes by torchmetrics), set by
    # src/callbacks/confusion.py.
    val_confusion: torch.Tensor | None = None
    test_confusion: torch.Tensor | None = None
    # The last test's label-free predictions, batch by batch.
    test_predictions: list[torch.Tensor] = field(default_factory=list)
    # The last test's embeddings and labels, kept for the post-test analyses (src/analysis/embeddings.py).
    # Under DDP each worker saw only its shard: the main process embeds the test set again instead.
    test_embeddings: list[torch.Tensor] = field(default_factory=list, metadata={RANK_LOCAL: True})
    test_labels: list[torch.Tensor] = field(default_factory=list, metadata={RANK_LOCAL: True})

    def start_test(self) -> None:
        self.test_predictions, self.test_embeddings, self.test_labels = [], [], []

    def set_confusion(self, stage: str, matrix: torch.Tensor) -> None:
        if stage == "val":
            self.val_confusion = matrix
        elif stage == "test":
            self.test_confusion = matrix
        else:
            raise ValueError(f"stage={stage!r}: confusion matrices are kept for val and test")

    def shipped(self) -> dict[str, Any]:
        """The fields a DDP worker sends back to the main process, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get(RANK_LOCAL)}

    def receive(self, shipped: dict[str, Any]) -> None:
        """Take what ``shipped`` gave in another process."""
        names = {f.name for f in fields(self)}
        for name, value in shipped.items():
            if name not in names:
                raise KeyError(f"{name} is not a field of StageResults")
            setattr(self, name, value)


class MarginClassifier(FastFxName, pl.LightningModule):
    def __init__(
        self,
        backbone: nn.Module,
        head: LossHead,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        class_names: list[str] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        tta_hflip: bool = False,
    ) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        c = head.num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(c)]
        # Test-time augmentation: validation, test and predict average the scores of each image and
        # its mirror image (label-free; only sensible when training also flipped, data.hflip=true).
        self.tta_hflip = bool(tta_hflip)
        if channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        # Kept out of the module tree (plain attribute) so checkpoints hold one copy of the weights.
        object.__setattr__(self, "_compiled_backbone", torch.compile(self.backbone) if compile else None)
        self.val_acc = MulticlassAccuracy(c, average="micro")
        self.val_acc_macro = MulticlassAccuracy(c, average="macro")
        self.val_confusion = MulticlassConfusionMatrix(c)
        self.test_acc = MulticlassAccuracy(c, average="micro")
        self.test_acc_macro = MulticlassAccuracy(c, average="macro")
        self.test_confusion = MulticlassConfusionMatrix(c)
        # Leakage check: the argmax of the margin logits built with the true label, logged under its
        # own name, never used to select. It puts a margin on the true class only, a leak that
        # *lowers* accuracy; the reference's own leak is reproduced by the audit heads (below).
        self.test_acc_leaky = MulticlassAccuracy(c, average="micro")
        # Audit heads only (src/losses/reference_*.py): the reference's real mechanism, its layer
        # fed the true label at test time. A mean, not an accuracy metric: with the one-hot
        # broadcast a sample's Keras 'accuracy' is a share of its batch's margin placements.
        self.test_acc_reference_protocol = MeanMetric()
        self.results = StageResults()

    # --- inference -------------------------------------------------------------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        # Not `compiled or backbone`: bool() of a compiled module calls its __len__, which raises.
        backbone = self._compiled_backbone if self._compiled_backbone is not None else self.backbone
        return backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Label-free class scores."""
        return self.head.scores(self.embed(images))

    def predict_labels(self, images: torch.Tensor, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Label-free predicted classes; ``embeddings`` of ``images`` are reused when given."""
        if embeddings is None:
            embeddings = self.embed(images)
        if not self.tta_hflip:
            return self.head.predict(embeddings)
        # Mean of raw scores, not of softmax probabilities: the margin heads' scores are cosines
        # whose softmax depends on a scale the head may not have; the mean's argmax needs none.
        mirrored = self.head.scores(self.embed(images.flip(-1)))
        return (self.head.scores(embeddings) + mirrored).argmax(dim=1)

    def predict_step(self, batch: Any, batch_idx: int = 0) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.predict_labels(images)

    # --- steps -----------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        embeddings = self.embed(images)
        loss = self.head(embeddings, labels)
        n = int(labels.shape[0])
        # Each self.log costs Python time on every step (a few percent of a ~30 ms bf16 CPU step;
        # docs/performance.md), so: the per-step loss only on the steps a logger or a shown progress
        # bar reads it (Lightning turns a per-step prog_bar value into a Python float after every
        # step, bar or no bar: a host sync on a GPU); the epoch values as running sums on the device
        # (in-place adds, no host sync), logged once at the end of the epoch (log_train_epoch).
        bar = self._progress_bar_shown()
        if bar or self._loggers_read_this_step():
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=bar, batch_size=n)
        with torch.no_grad():
            correct = (self.head.predict(embeddings.detach()) == labels).sum()
            if self._epoch_sums is None or self._epoch_sums[0].device != loss.device:
                self._epoch_sums = (torch.zeros((), device=loss.device), torch.zeros((), dtype=torch.long,
                                                                                    device=loss.device))
            # loss * n in float32, added in batch order: the sum Lightning kept for an on_epoch self.log.
            self._epoch_sums[0].add_(loss.detach().float() * n)
            self._epoch_sums[1].add_(correct)
        self._epoch_count += n
        return loss

    # The epoch's training figures: running sums over the batches trained since the epoch started
    # (or since fitting started or resumed: Lightning does not checkpoint logged values, so a run
    # resumed mid-epoch reports the batches it trained after the resume, as before), kept on the
    # device and logged once per epoch. They must be in trainer.callback_metrics when EpochHistory's
    # on_train_epoch_end runs, and Lightning calls the callbacks' on_train_epoch_end before the
    # module's: so EpochHistory calls log_train_epoch first, and the module's own hook logs whatever
    # is still pending (no EpochHistory) before ModelCheckpoint / EarlyStopping, which run after it.
    _epoch_sums: tuple[torch.Tensor, torch.Tensor] | None = None  # (sum of loss * n, correct)
    _epoch_count: int = 0  # images, counted on the host (no sync)

    def _reset_epoch_sums(self) -> None:
        self._epoch_sums, self._epoch_count = None, 0

    def on_train_start(self) -> None:
        self._reset_epoch_sums()

    def on_train_epoch_start(self) -> None:
        self._reset_epoch_sums()

    def on_train_epoch_end(self) -> None:
        self.log_train_epoch()

    def log_train_epoch(self) -> None:
        """Log ``train/loss_epoch`` and ``train/acc`` (the epoch's mean loss and exact accuracy) once,
        from an ``on_train_epoch_end`` hook; later calls in the same epoch log nothing.

        Logged as this rank's mean weighted by its image count with ``sync_dist``: Lightning then
        all-reduces mean * count and the counts, so under DDP the figure is total / total over all
        ranks (not a mean of the ranks' means), as when every step was logged."""
        if self._epoch_sums is None or self._epoch_count == 0:
            return
        loss_sum, correct = self._epoch_sums
        n = self._epoch_count
        self._reset_epoch_sums()
        self.log("train/loss_epoch", loss_sum / n, on_step=False, on_epoch=True, sync_dist=True, batch_size=n)
        self.log("train/acc", correct.float() / n, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=n)

    def _progress_bar_shown(self) -> bool:
        return self._trainer is not None and self._trainer.progress_bar_callback is not None

    def _loggers_read_this_step(self) -> bool:
        """Whether Lightning sends this step's values to the loggers: its ``should_update_logs``
        (every ``log_every_n_steps`` batches that stepped, counting this one, and when the run stops).
        Lightning's own counter is read so that both agree after a mid-epoch resume too; it is private,
        hence the fallback to ``global_step``."""
        trainer = self._trainer
        if trainer is None:
            return True
        if trainer.log_every_n_steps == 0:
            return False
        stepped = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)
        return (int(stepped) + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        embeddings = self.embed(images)
        preds = self.predict_labels(images, embeddings)
        self.log("val/loss", self.head(embeddings, labels), on_epoch=True, sync_dist=True)
        self.val_acc(preds, labels)
        self.val_acc_macro(preds, labels)
        self.val_confusion.update(preds, labels)  # computed and reset by ConfusionMatrixLogger
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        self.log("val/acc_macro", self.val_acc_macro, on_epoch=True)

    def on_test_epoch_start(self) -> None:
        self.results.start_test()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        embeddings = self.embed(images)
        preds = self.predict_labels(images, embeddings)
        self.results.test_predictions.append(preds.detach().cpu())
        self.results.test_embeddings.append(embeddings.detach().float().cpu())
        self.results.test_labels.append(labels.detach().cpu())
        self.test_acc(preds, labels)
        self.test_acc_macro(preds, labels)
        self.test_confusion.update(preds, labels)
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/acc_macro", self.test_acc_macro, on_epoch=True)
        if isinstance(self.head, ReferenceHead):
            self.test_acc_reference_protocol.update(self.head.reference_correct(embeddings, labels))
            self.log("test/acc_reference_protocol", self.test_acc_reference_protocol, on_epoch=True)
        elif getattr(self.head, "has_leaky_audit", True):  # False: metric heads without a trained softmax layer
            self.test_acc_leaky(self.head.training_logits(embeddings, labels).argmax(dim=1), labels)
            self.log("test/acc_leaky", self.test_acc_leaky, on_epoch=True)

    # --- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
