"""The reference-protocol audit (experiment=reference_audit): per-epoch test scores, label-fed and
label-free, land in the run record's history; they never steer training or checkpoint choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from src.callbacks.reference_audit import LABEL_FREE_KEY, REFERENCE_KEY
from src.training.pipeline import run
from tests.conftest import CONF_DIR, compose_config

AUDIT = ["experiment=reference_audit", "trainer.max_epochs=3", "data.eval_batch_size=64"]


def _history(tmp_path: Path, name: str) -> tuple[dict, list[dict]]:
    record = json.loads((tmp_path / name / "metrics.json").read_text())
    return record, record["history"]


def test_audit_scores_the_test_set_every_epoch(tiny_config, tmp_path: Path) -> None:
    run(tiny_config(*AUDIT, "audit_config=sphereface_m2"), tmp_path / "audit")
    record, history = _history(tmp_path, "audit")
    assert record["status"] == "finished" and record["loss"] == "reference_sphereface"
    assert len(history) == 3
    for row in history:
        assert 0.0 <= row[REFERENCE_KEY] <= 1.0 and 0.0 <= row[LABEL_FREE_KEY] <= 1.0
    # The checkpoint is still chosen on validation (first best epoch) and tested once; the
    # audit's label-free score of that epoch is the same weights on the same test set.
    best = max(range(3), key=lambda e: (history[e]["val/acc"], -e))
    assert record["val_acc_best"] == pytest.approx(history[best]["val/acc"])
    assert record["test_acc"] == pytest.approx(history[best][LABEL_FREE_KEY], abs=1e-6)
    # The reference head's real leak is recorded by the final test too.
    # The model's final test and the callback agree on the reference protocol at that epoch.
    assert record["test_acc_reference_protocol"] == pytest.approx(history[best][REFERENCE_KEY], abs=1e-6)
    assert "test_acc_leaky" not in record
    # The analysis' three readings of the same best weights agree with the test and the audit.
    decode = record["reference_decode"]
    assert decode["label_fed_acc"] == pytest.approx(record["test_acc_reference_protocol"], abs=1e-6)
    assert decode["label_free_acc"] == pytest.approx(record["test_acc"], abs=1e-6)
    assert 0.0 <= decode["self_consistent_acc"] <= 1.0 and decode["images"] > 0


def test_audit_does_not_change_training(tiny_config, tmp_path: Path) -> None:
    run(tiny_config(*AUDIT, "audit_config=arcface_m0.5"), tmp_path / "on")
    run(tiny_config(*AUDIT, "audit_config=arcface_m0.5", "callbacks.reference_audit=null"), tmp_path / "off")
    on, on_history = _history(tmp_path, "on")
    off, off_history = _history(tmp_path, "off")
    assert [r["val/acc"] for r in on_history] == [r["val/acc"] for r in off_history]
    assert [r["train/loss"] for r in on_history] == [r["train/loss"] for r in off_history]
    assert on["test_acc"] == off["test_acc"]
    assert all(REFERENCE_KEY not in r and LABEL_FREE_KEY not in r for r in off_history)


def test_audit_is_off_by_default(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config()
    assert cfg.callbacks.reference_audit is None
    assert cfg.loss._target_ == "src.losses.softmax.Softmax"


@pytest.mark.parametrize(("point", "target", "m"), [
    ("softmax", "src.losses.softmax.Softmax", None),
    ("sphereface_m2", "src.losses.reference_sphereface.ReferenceSphereFace", 2.0),
    ("arcface_m0.5", "src.losses.reference_arcface.ReferenceArcFace", 0.5),
])
def test_audit_config_is_the_reference_recipe(point: str, target: str, m: float | None) -> None:
    cfg = compose_config(["experiment=reference_audit", f"audit_config={point}"])
    assert cfg.loss._target_ == target and cfg.loss.get("m") == m
    assert cfg.optimizer._target_ == "torch.optim.Adadelta" and cfg.optimizer.lr == 1.0
    assert (cfg.optimizer.rho, cfg.optimizer.eps) == (0.95, 1e-7)
    assert cfg.data.batch_size == 128 and cfg.trainer.max_epochs == 50 and cfg.data.train_subset is None
    assert not cfg.data.hflip and cfg.data.crop_padding == 0
    assert cfg.backbone._target_ == "src.backbones.seed_cnn.SeedCNN" and cfg.backbone.keras_init is True
    assert cfg.callbacks.reference_audit._target_ == "src.callbacks.reference_audit.ReferenceProtocolAudit"
    assert cfg.callbacks.best_checkpoint.monitor == "val/acc"  # selection stays on validation
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        full = compose("train", overrides=["experiment=reference_audit"], return_hydra_config=True)
    params = full.hydra.sweeper.params
    assert params["audit_config"].split(",") == ["softmax", "sphereface_m2", "arcface_m0.5"]
    assert params["seed"] == "0,1,2"
