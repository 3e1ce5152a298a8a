"""logger=csv and logger=mlflow beside TensorBoard: each is read back after a tiny run
and must hold the same metric names and the run's hyper-parameters."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from src.training.pipeline import run

NOT_METRICS = {"epoch", "step"}


def _csv_logged(folder: Path) -> tuple[set[str], dict]:
    with (folder / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    names = {k for row in rows for k, v in row.items() if v not in ("", None)} - NOT_METRICS
    return names, yaml.safe_load((folder / "csv" / "hparams.yaml").read_text())


def _mlflow_logged(folder: Path) -> tuple[set[str], dict, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiments = [e for e in client.search_experiments() if e.name == "marginloss"]
    (logged,) = client.search_runs([e.experiment_id for e in experiments])
    return set(logged.data.metrics) - NOT_METRICS, logged.data.params, logged.info.status


def _tensorboard_logged(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    events = EventMultiplexer()
    events.AddRunsFromDirectory(str(folder))
    events.Reload()
    return {tag for tags in events.Runs().values() for tag in tags.get("scalars", [])} - NOT_METRICS


def test_tensorboard_csv_and_mlflow_together_log_the_same_names(tiny_config, tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="logger=mlflow needs the mlflow extra: pip install -e '.[mlflow]'")
    folder = tmp_path / "run"
    cfg = tiny_config("logger=[tensorboard,csv,mlflow]", "backbone=small2d", "loss=arcface", "loss.m=0.3")
    assert list(cfg.logger) == ["tensorboard", "csv", "mlflow"]
    metrics = run(cfg, folder)

    csv_names, csv_params = _csv_logged(folder)
    ml_names, ml_params, status = _mlflow_logged(folder)
    tb_names = _tensorboard_logged(folder)
    expected = {"loss_own_scale/train", "loss_own_scale/val", "train/acc", "train/lr", "val/acc", "val/acc_best",
                "test/acc", "test/acc_macro", "test/acc_leaky", "test/retrieval/precision_at_1",
                "test/retrieval/map_at_r", "test/retrieval/nmi", "test/geometry/max_intra_deg"}  # fmt: skip
    assert expected <= csv_names
    assert csv_names == ml_names == tb_names
    assert status == "FINISHED"

    # The hyper-parameters: the same typed keys as TensorBoard's HParams tab (named as typed).
    assert csv_params["loss.m"] == 0.3 and float(ml_params["loss.m"]) == 0.3
    assert csv_params["loss"] == ml_params["loss"] == "arcface" and "loss._target_" not in csv_params
    assert set(csv_params) == set(ml_params)

    # The logged test accuracy is the one in the run record.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    (logged,) = client.search_runs([e.experiment_id for e in client.search_experiments() if e.name == "marginloss"])
    assert logged.data.metrics["test/acc"] == pytest.approx(metrics["test_acc"])
    assert logged.data.metrics["test/retrieval/map_at_r"] == pytest.approx(metrics["retrieval"]["map_at_r"])


def test_csv_alone_replaces_tensorboard(tiny_config, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    cfg = tiny_config("logger=csv", "backbone=small2d", "trainer.max_epochs=1", "analysis.geometry=false")
    assert list(cfg.logger) == ["csv"]
    run(cfg, folder)
    names, params = _csv_logged(folder)
    assert {"val/acc", "test/acc", "test/retrieval/r_precision"} <= names
    assert params["seed"] == 0
    assert not list(folder.glob("events.out.tfevents.*"))


def test_mlflow_without_its_extra_is_one_line(monkeypatch) -> None:
    import importlib.util

    from src.errors import ConfigError
    from src.training.validate import check_config
    from tests.conftest import compose_config

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^logger.mlflow='mlflow' is invalid: needs the mlflow extra"):
        check_config(compose_config(["logger=[tensorboard,mlflow]"]))
