"""The post-test analyses: embeddings kept during the test equal a fresh pass, and a failing
analysis is recorded instead of failing the run."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from src.analysis import embeddings as analyses
from src.training.pipeline import build


def untrained_after_test(tiny_config, *overrides: str):
    datamodule, model = build(tiny_config("backbone=small2d", *overrides))
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.test(model, datamodule=datamodule, verbose=False)
    return trainer, datamodule, model


def test_kept_test_embeddings_equal_a_fresh_pass(tiny_config) -> None:
    trainer, datamodule, model = untrained_after_test(tiny_config, "data.held_out_classes=[9]")
    kept, kept_labels = analyses._tested_embeddings(model)
    was_training = model.training
    fresh, labels, images = analyses.embed_batches(model, datamodule.test_dataloader(), keep_images=True, limit=50)
    assert torch.allclose(kept[:50], fresh, atol=1e-5) and torch.equal(kept_labels[:50], labels)
    assert images.shape == (50, 1, 28, 28) and model.training is was_training  # put back as found
    results = analyses.run_analyses(trainer, model, datamodule, {"max_per_class": 5})
    assert results["geometry"]["num_classes"] == 9 and all(r["n"] <= 5 for r in results["geometry"]["classes"])
    assert results["open_set"]["classes"] == ["Ankle boot"] and results["open_set"]["held_out_classes"] == [9]
    # One held-out class: no impostor pairs, so no AUC (recorded as NaN, not a crash).
    open_set = results["open_set"]
    assert open_set["impostor_pairs"] == 0 and math.isnan(open_set["roc_auc"])
    # Retrieval metrics of the closed-set test embeddings and of the held-out class (issue 15).
    assert set(results["retrieval"]) == {"precision_at_1", "r_precision", "map_at_r", "nmi", "ami"}
    assert all(isinstance(v, float) for v in results["retrieval"].values())
    assert open_set["retrieval"]["precision_at_1"] == 1.0  # one held-out class: every neighbour shares it
    off = {"geometry": False, "open_set": False, "retrieval": False}
    assert analyses.run_analyses(trainer, model, datamodule, off) == {}


def test_a_failing_analysis_is_recorded_not_raised(tiny_config, monkeypatch) -> None:
    trainer, datamodule, model = untrained_after_test(tiny_config)

    def boom(*args, **kwargs):
        raise RuntimeError("geometry exploded")

    monkeypatch.setattr(analyses, "class_geometry", boom)
    results = analyses.run_analyses(trainer, model, datamodule)
    assert results["geometry"] == {"error": "RuntimeError: geometry exploded"}
    assert "open_set" not in results  # no held-out classes
    assert isinstance(results["retrieval"]["map_at_r"], float)  # the other analyses still ran


def test_embedding_figures_for_circle_and_sphere() -> None:
    import numpy as np
    import pytest

    from src.callbacks.embeddings import embedding_figures
    from src.utils.plots import plt

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    for dim in (2, 3):
        figures = embedding_figures(rng.normal(size=(60, dim)), labels, ["a", "b", "c"], rng.normal(size=(3, dim)), "t")
        assert set(figures) == {"raw", "normalized", "both"}
        assert (dim == 3) == (figures["raw"].axes[0].name == "3d")
        for fig in figures.values():
            plt.close(fig)
    with pytest.raises(ValueError, match="2-D or 3-D"):
        embedding_figures(rng.normal(size=(5, 4)), labels[:5], ["a", "b", "c"], None, "t")
