"""Embeddings of a whole split, and the analyses ``src.training.pipeline.run`` performs after the test.

``run_analyses`` takes the test embeddings the model kept during the test (the best-validation
weights; embedded afresh if it kept none) and stores their angular geometry and their retrieval /
clustering metrics (``src.analysis.retrieval``); with ``data.held_out_classes`` it also embeds the
held-out classes' test images and runs the open-set verification check and the same retrieval
metrics on them. For the audit's reference heads it adds ``reference_decode``
(src/analysis/reference_decode.py). All go into the run record (keys ``geometry``,
``retrieval``, ``open_set`` with ``open_set.retrieval``, ``reference_decode``) and every logger the trainer has (scalars
``test/geometry/*``, ``test/retrieval/*``, ``test/open_set/*``, ``test/open_set/retrieval/*``; in TensorBoard also
the held-out embeddings in the projector). A failing analysis is recorded as ``{"error": ...}``
and warned about; it never fails a run whose training and test succeeded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from pytorch_lightning.loggers import TensorBoardLogger

from src.analysis.geometry import class_geometry
from src.analysis.open_set import verification_metrics
from src.analysis.reference_decode import reference_decode
from src.analysis.retrieval import RETRIEVAL_KEYS, embedding_metrics
from src.losses.reference_protocol import ReferenceHead

log = logging.getLogger(__name__)


@torch.no_grad()
def embed_batches(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str | None = None,
    limit: int | None = None,
    keep_images: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(embeddings, labels, images or None) on the CPU for at most ``limit`` images of ``batches``.

    The model runs in eval mode on ``device`` (default: where it is) and is put back as found."""
    params = next(model.parameters(), None)
    home = params.device if params is not None else torch.device("cpu")
    device = torch.device(device) if device is not None else home
    was_training = model.training
    model.to(device).eval()
    embed = getattr(model, "embed", model)
    out_emb, out_lab, out_img = [], [], []
    seen = 0
    try:
        for images, labels in batches:
            if limit is not None and seen >= limit:
                break
            take = len(labels) if limit is None else min(len(labels), limit - seen)
            images, labels = images[:take], labels[:take]
            out_emb.append(embed(images.to(device)).float().cpu())
            out_lab.append(labels.cpu())
            if keep_images:
                out_img.append(images.cpu())
            seen += take
    finally:
        model.to(home).train(was_training)
    if not out_emb:
        raise ValueError("no batches to embed")
    images_out = torch.cat(out_img) if keep_images else None
    return torch.cat(out_emb), torch.cat(out_lab), images_out


def thumbnails(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Normalised batch images back to [0, 1] (for the projector's sprite)."""
    return (images.float() * std + mean).clamp(0.0, 1.0)


def _scalars(results: Mapping[str, Any]) -> dict[str, float]:
    tags: dict[str, float] = {}
    geometry = results.get("geometry") or {}
    for key in ("max_intra_deg", "min_inter_deg", "mean_to_center_deg"):
        if isinstance(geometry.get(key), (int, float)):
            tags[f"test/geometry/{key}"] = float(geometry[key])
    if "criterion_holds" in geometry:
        tags["test/geometry/criterion_holds"] = float(bool(geometry["criterion_holds"]))
    open_set = results.get("open_set") or {}
    for key, value in open_set.items():
        if (key in ("roc_auc", "recall_at_1") or key.startswith("tar_far")) and isinstance(value, (int, float)):
            tags[f"test/open_set/{key}"] = float(value)
    decode = results.get("reference_decode") or {}
    for key in ("label_fed_acc", "self_consistent_acc"):
        if isinstance(decode.get(key), (int, float)):
            tags[f"audit/test/{key}"] = float(decode[key])
    for prefix, block in (("test/retrieval", results.get("retrieval")),
                          ("test/open_set/retrieval", open_set.get("retrieval"))):  # fmt: skip
        for key in RETRIEVAL_KEYS:
            value = (block or {}).get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                tags[f"{prefix}/{key}"] = float(value)
    return tags


def _tested_embeddings(model: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The embeddings the model kept during its last test (no second pass), if it kept them."""
    emb, labels = model.results.test_embeddings, model.results.test_labels  # empty in a DDP main process
    if not emb or not labels or len(emb) != len(labels):
        return None, None
    return torch.cat(emb), torch.cat(labels)


def run_analyses(trainer: Any, model: Any, datamodule: Any, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Geometry of the test embeddings and, when classes are held out, the open-set check."""
    options = dict(options or {})
    device = trainer.strategy.root_device
    results: dict[str, Any] = {}
    tested: list[tuple[torch.Tensor, torch.Tensor]] = []

    def test_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
        if not tested:
            emb, labels = _tested_embeddings(model)
            if emb is None:
                emb, labels, _ = embed_batches(model, datamodule.test_dataloader(), device)
            tested.append((emb, labels))
        return tested[0]

    if options.get("geometry", True):
        try:
            emb, labels = test_embeddings()
            results["geometry"] = class_geometry(
                emb, labels, model.class_names, max_per_class=options.get("max_per_class", 1000)
            )
        except Exception as err:  # an analysis never fails a finished run
            log.warning("geometry analysis failed: %s: %s", type(err).__name__, err)
            results["geometry"] = {"error": f"{type(err).__name__}: {err}"}
    if options.get("retrieval", True):
        results["retrieval"] = _retrieval(*test_embeddings(), "retrieval")
    head = getattr(model, "head", None)
    if options.get("reference_decode", True) and isinstance(head, ReferenceHead):  # audit runs only
        try:
            emb, labels = test_embeddings()
            results["reference_decode"] = reference_decode(head, emb.to(head.weight.device).float(),
                                                           labels.to(head.weight.device))
        except Exception as err:  # an analysis never fails a finished run
            log.warning("reference decode failed: %s: %s", type(err).__name__, err)
            results["reference_decode"] = {"error": f"{type(err).__name__}: {err}"}
    open_batches = datamodule.open_set_batches() if hasattr(datamodule, "open_set_batches") else None
    if options.get("open_set", True) and open_batches is not None:
        try:
            all_names = list(datamodule.all_class_names)  # the dataset's own names, held-out classes included
            emb, labels, images = embed_batches(model, open_batches, device, keep_images=True)
            results["open_set"] = {
                "held_out_classes": list(datamodule.held_out_classes),
                **verification_metrics(emb, labels, max_samples=options.get("open_set_max_samples", 4000),
                                       class_names=all_names),
            }
            if options.get("retrieval", True):
                results["open_set"]["retrieval"] = _retrieval(emb, labels, "open-set retrieval")
            _project_open_set(trainer, emb, labels, images, all_names, open_batches)
        except Exception as err:
            log.warning("open-set analysis failed: %s: %s", type(err).__name__, err)
            results["open_set"] = {"error": f"{type(err).__name__}: {err}"}
    # Through log_metrics, so CSV and MLflow get the same names as TensorBoard.
    scalars = _scalars(results)
    for logger in trainer.loggers:
        if scalars:
            logger.log_metrics(scalars, step=trainer.global_step)
            logger.save()
    return results


def _retrieval(emb: torch.Tensor, labels: torch.Tensor, what: str) -> dict[str, Any]:
    try:
        return embedding_metrics(emb, labels)
    except Exception as err:  # an analysis never fails a finished run
        log.warning("%s analysis failed: %s: %s", what, type(err).__name__, err)
        return {"error": f"{type(err).__name__}: {err}"}


def _project_open_set(trainer: Any, emb: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                      names: list[str], batches: Any, limit: int = 1000) -> None:
    """The held-out classes' embeddings in TensorBoard's projector (tag ``open_set``)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
            n = min(limit, len(labels))
            logger.experiment.add_embedding(
                emb[:n], metadata=[names[int(c)] for c in labels[:n]],
                label_img=thumbnails(images[:n], batches.mean, batches.std),
                global_step=trainer.global_step, tag="open_set",
            )
