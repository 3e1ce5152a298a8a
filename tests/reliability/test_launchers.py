"""Hydra launcher and sweeper plugins (the ``launchers`` extra). One real command
covers two: an Optuna search of loss.m and loss.s (two trials) whose trials run as two jobs in
joblib worker processes. The SLURM (submitit) preset is composed (no cluster here). Skipped when
the plugins are not installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir

from tests.conftest import CONF_DIR
from tests.reliability.helpers import LEAN, QUICK, finish, record, start, train_command

pytestmark = pytest.mark.slow  # real launcher worker processes


def _need(module: str) -> None:
    pytest.importorskip(module, reason="pip install -e '.[launchers]'")


@pytest.fixture(scope="module")
def search(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _need("hydra_plugins.hydra_joblib_launcher")
    _need("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path_factory.mktemp("plugins") / "search"
    cmd = train_command("hparams_search=arcface_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                        "hydra/launcher=local_parallel", f"data.root={synthetic_root}", *QUICK, *LEAN,
                        f"hydra.sweep.dir={sweep}")  # fmt: skip
    code, out, err = finish(start(cmd), timeout=600)
    assert code == 0, err[-3000:]
    trials = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    return {"sweep": sweep, "log": out + err, "trials": trials}


def test_joblib_runs_two_jobs_in_worker_processes(search: dict[str, Any]) -> None:
    assert "Joblib.Parallel(n_jobs=2" in search["log"] and "is launching 2 jobs" in search["log"]
    assert len(search["trials"]) == 2
    assert all(record(t)["status"] == "finished" for t in search["trials"])
    summary = yaml.safe_load((search["sweep"] / "summary.json").read_text())
    assert summary["counts"] == {"finished": 2}


def test_optuna_searches_margin_and_scale(search: dict[str, Any]) -> None:
    trials = search["trials"]
    params = [record(t)["loss_params"] for t in trials]
    assert all(record(t)["loss"] == "arcface" for t in trials)
    assert all(0.1 <= p["m"] <= 1.0 and 8.0 <= p["s"] <= 64.0 for p in params)
    assert params[0] != params[1]  # two different points of the search space
    result = yaml.safe_load((search["sweep"] / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"loss.m", "loss.s"}
    assert result["best_value"] == pytest.approx(max(record(t)["val_acc_best"] for t in trials))  # maximised
    assert "Best (optuna)" in (search["sweep"] / "summary.md").read_text()


def test_slurm_preset_composes() -> None:
    _need("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.marginloss_slurm.launcher.SlurmLauncher"  # submitit's, extended
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.max_num_timeout == 3
    folder = launcher.submitit_folder  # inside the sweep folder
    assert folder.startswith("outputs/multiruns/") and folder.endswith("/.submitit/%j")
