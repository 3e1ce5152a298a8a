"""The embedding demo (experiment=embedding_demo, python -m src.report.embedding_demo): the sweep is the
18 runs it says, and the figure script draws and tables fabricated runs without a checkpoint."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from src.callbacks.embeddings import load_test_embeddings, save_test_embeddings
from src.report import embedding_demo
from tests.conftest import CONF_DIR
from tests.study.fabricate import FASHION, write_run

HEADS = {"softmax": "src.losses.softmax.Softmax", "modified_softmax": "src.losses.modified_softmax.ModifiedSoftmax",
         "sphereface_psi": "src.losses.sphereface.SphereFace"}


def _compose(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=embedding_demo", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # the sweep's subdir reads hydra:runtime.choices
    return cfg


def test_sweep_is_18_jobs_with_distinct_folders() -> None:
    params = {k: str(v).split(",") for k, v in _compose().hydra.sweeper.params.items()}
    assert params == {"seed": ["0", "1", "2"], "backbone": ["small2d", "small3d"], "loss": list(HEADS)}
    folders = set()
    for seed, backbone, loss in itertools.product(*params.values()):
        cfg = _compose(f"seed={seed}", f"backbone={backbone}", f"loss={loss}")
        sweep = OmegaConf.to_container(cfg.hydra.sweep, resolve=True)
        assert sweep["dir"] == "experiments/embedding_demo/runs"
        folders.add(sweep["subdir"])
        assert cfg.backbone.embedding_dim == (2 if backbone == "small2d" else 3)
        assert cfg.loss._target_ == HEADS[loss] and cfg.resume is True
        assert cfg.data.train_subset == 20000 and cfg.trainer.max_epochs == 3 and cfg.data.val_size == 5000
        assert cfg.backbone.width == 16 and cfg.data.batch_size == 128
        if loss == "sphereface_psi":  # YunYang's A-Softmax: m = 4, lambda fixed at 0
            assert (cfg.loss.m, cfg.loss.anneal, cfg.loss.lambda_min) == (4, False, 0.0)
        assert cfg.callbacks.embeddings.test_path.endswith("test_embeddings.npz")
    assert len(folders) == 18 and "small3d_sphereface_psi_seed2" in folders


def test_embeddings_file_round_trip(tmp_path: Path) -> None:
    emb = np.random.default_rng(0).normal(size=(20, 3))
    path = save_test_embeddings(tmp_path / "a" / "test_embeddings.npz", emb, np.arange(20) % 10, np.zeros(20),
                                np.eye(10, 3)[:, None, :], FASHION)
    data = load_test_embeddings(path)
    assert data["class_names"] == FASHION and data["embeddings"].dtype == np.float32
    np.testing.assert_allclose(data["embeddings"], emb, rtol=1e-6)
    assert data["directions"].shape == (10, 1, 3) and not list(tmp_path.glob("a/.*tmp"))
    np.savez(tmp_path / "other.npz", embeddings=emb)
    with pytest.raises(ValueError, match="missing"):
        load_test_embeddings(tmp_path / "other.npz")


def _fabricate(root: Path) -> None:
    """2 seeds x (2-D, 3-D) x the three heads, clustered by class, plus two runs to leave out."""
    rng = np.random.default_rng(1)
    labels = np.arange(400) % 10
    for (seed, dim), (loss, target) in itertools.product(itertools.product((0, 1), (2, 3)), HEADS.items()):
        acc = 0.80 + 0.02 * list(HEADS).index(loss) + 0.01 * seed
        loss_cfg = {"_target_": target, **({"m": 4} if "sphereface" in loss else {})}
        folder = write_run(root / f"small{dim}d_{loss}_seed{seed}", loss=loss, seed=seed, test_acc=acc,
                           experiment="embedding_demo",
                           config_extra={"loss": loss_cfg, "backbone": {"embedding_dim": dim}})
        centres = rng.normal(size=(10, dim)) * 4
        save_test_embeddings(folder / "test_embeddings.npz", centres[labels] + rng.normal(size=(400, dim)), labels,
                             labels, centres[:, None, :], FASHION)
    write_run(root / "small2d_softmax_seed2", seed=2, config_extra={
        "loss": {"_target_": HEADS["softmax"]}, "backbone": {"embedding_dim": 2}})  # no embeddings file
    write_run(root / "small2d_softmax_seed3", seed=3, status="running", config_extra={
        "loss": {"_target_": HEADS["softmax"]}, "backbone": {"embedding_dim": 2}})


def test_figures_and_table_from_fabricated_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from src.utils.plots import plt

    _fabricate(tmp_path / "runs")
    out = tmp_path / "out"
    assert embedding_demo.main([str(tmp_path / "runs"), "--out", str(out), "--max-points", "200"]) == 0
    for dim in (2, 3):
        image = plt.imread(out / f"embeddings_{dim}d.png")
        assert image.shape[1] > 1.5 * image.shape[0] > 800  # three columns wider than two rows are tall
    table = (out / "accuracy.md").read_text()
    # Softmax 2-D over seeds 0 and 1: 80% and 81% -> 80.50 ± 0.71%; YunYang's MNIST number beside it.
    assert "| 2-D | original softmax | 80.50 ± 0.71% | 60.50 ± 0.71% |" in table and "| 97.75% |" in table
    assert "| 3-D | A-Softmax (m=4) | 84.50 ± 0.71% |" in table and "98.96%" in table
    assert "small2d_softmax_seed2: no test_embeddings.npz" in table
    assert "small2d_softmax_seed3: not finished" in table
    assert "embeddings_2d.png" in capsys.readouterr().out


def test_nothing_to_draw_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "runs" / "seed_cnn_run")
    assert embedding_demo.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 1
    assert "no finished 2-D / 3-D runs" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_embedding_shape_counts_merged_directions() -> None:
    directions = np.array([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [-1.0, 0.0]])[:, None, :]  # rows 0, 1: 2.9° apart
    close, norm = embedding_demo.embedding_shape({"directions": directions,
                                                  "embeddings": np.array([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])})
    assert (close, norm) == (1, 5.0)
