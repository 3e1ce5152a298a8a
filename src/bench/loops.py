"""The two sides the overhead benchmark compares, on the same model and batches: the plain PyTorch
training and inference steps (``BareTrainer``, ``BarePredictor``), and the smallest LightningModule
around the same backbone and head (``MinimalModule``: what Lightning's own loop costs)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.bench.common import sync
from src.training.model import MarginClassifier


class BareTrainer:
    """The plain PyTorch training step on copies of ``model``'s backbone and head."""

    def __init__(self, model: MarginClassifier, cfg: DictConfig, batches: Iterator, total_steps: int,
                 autocast: Callable[[], AbstractContextManager], scaler: bool, device: str) -> None:
        self.backbone, self.head = copy.deepcopy(model.backbone), copy.deepcopy(model.head)
        self.embed = torch.compile(self.backbone) if cfg.compile else self.backbone
        params = list(self.backbone.parameters()) + list(self.head.parameters())
        self.optimizer = instantiate(cfg.optimizer)(params=params)
        factory = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
        self.scheduler = factory(optimizer=self.optimizer, total_steps=total_steps) if factory else None
        self.scaler = torch.amp.GradScaler(device) if scaler else None
        self.autocast, self.device, self.batches = autocast, device, batches
        self.backbone.train()
        self.head.train()

    def step(self, phases: dict[str, float] | None = None) -> tuple[float, int]:
        """One training step; returns (seconds, images). With ``phases``, adds each phase's time
        to it (syncing the device between phases)."""
        start = mark = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal mark
            if phases is not None:
                sync(self.device)
                now = time.perf_counter()
                phases[name] = phases.get(name, 0.0) + now - mark
                mark = now

        images, labels = next(self.batches)
        lap("data")
        with self.autocast():
            loss = self.head(self.embed(images), labels)
        lap("forward+loss")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            lap("backward")
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            lap("backward")
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        lap("optimiser")
        sync(self.device)
        return time.perf_counter() - start, int(labels.shape[0])


class BarePredictor:
    """The plain inference step: ``head.predict(backbone(x))`` under ``torch.no_grad``."""

    def __init__(self, model: MarginClassifier, cfg: DictConfig, batches: Iterator,
                 autocast: Callable[[], AbstractContextManager], device: str) -> None:
        self.backbone, self.head = copy.deepcopy(model.backbone).eval(), copy.deepcopy(model.head).eval()
        self.embed = torch.compile(self.backbone) if cfg.compile else self.backbone
        self.autocast, self.device, self.batches = autocast, device, batches
        self.outputs: list[torch.Tensor] = []  # kept, as trainer.predict keeps its predictions

    def step(self, phases: dict[str, float] | None = None) -> tuple[float, int]:
        start = time.perf_counter()
        images, labels = next(self.batches)
        with torch.no_grad(), self.autocast():
            self.outputs.append(self.head.predict(self.embed(images)))
        sync(self.device)
        return time.perf_counter() - start, int(labels.shape[0])


class MinimalModule(pl.LightningModule):
    """Lightning's own cost: the same backbone, head, optimiser and schedule in the smallest
    LightningModule (no metrics, no ``self.log``), trained without callbacks or loggers."""

    def __init__(self, model: MarginClassifier) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        self.optimizer_factory, self.scheduler_factory = model.optimizer_factory, model.scheduler_factory

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return self.head(self.backbone(images), labels)

    def configure_optimizers(self) -> Any:
        return MarginClassifier.configure_optimizers(self)  # type: ignore[arg-type]


def on_device(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: str) -> Iterator:
    """The batches on ``device`` (the datamodule keeps them there when a GPU trainer is attached)."""
    for images, labels in batches:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
