"""The study grid: every configuration composes with the one shared recipe, and the sweep covers
the 7 (loss, m) configurations over at least three seeds."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import CONF_DIR, REPO

GRID = {
    "softmax": ("src.losses.softmax.Softmax", None),
    "sphereface_m2": ("src.losses.sphereface.SphereFace", 2),
    "sphereface_m4": ("src.losses.sphereface.SphereFace", 4),
    "sphereface_m6": ("src.losses.sphereface.SphereFace", 6),
    "arcface_m0.5": ("src.losses.arcface.ArcFace", 0.5),
    "arcface_m2": ("src.losses.arcface.ArcFace", 2.0),
    "arcface_m4": ("src.losses.arcface.ArcFace", 4.0),
}


def sweeper_params(experiment: str, *overrides: str) -> dict[str, str]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", *overrides], return_hydra_config=True)
    return dict(cfg.hydra.sweeper.params)


def test_sweep_is_the_full_grid_over_three_seeds() -> None:
    for experiment in ("study", "study_quick"):
        params = sweeper_params(experiment)
        assert params["study_config"].split(",") == list(GRID)
        assert len(params["seed"].split(",")) >= 3
    extended = sweeper_params("study_extended")["study_config"].split(",")
    searched = sweeper_params("study_extended_search")["study_config"].split(",")
    assert sorted(p.stem for p in (CONF_DIR / "study_config").glob("*.yaml")) == sorted([*GRID, *extended, *searched])


def test_every_configuration_shares_one_recipe(tiny_config) -> None:
    recipes = set()
    for name, (target, m) in GRID.items():
        cfg = tiny_config("experiment=study", f"study_config={name}", "seed=1")
        assert cfg.loss._target_ == target and cfg.get("loss", {}).get("m") == m and cfg.name == name
        assert cfg.backbone._target_ == "src.backbones.seed_cnn.SeedCNN" and cfg.seed == 1
        recipes.add((cfg.optimizer._target_, cfg.optimizer.lr, cfg.scheduler._target_, cfg.trainer.max_epochs,
                     cfg.data.batch_size, cfg.data.val_size, cfg.data.train_subset))
    # tiny_config's own overrides (val_size, batch size, epochs) apply to all alike: one recipe.
    assert len(recipes) == 1
    (recipe,) = recipes
    assert recipe[0] == "torch.optim.Adadelta" and recipe[1] == 1.0 and recipe[2] == "src.training.schedules.constant"


def test_full_and_quick_recipes(synthetic_root) -> None:
    from tests.conftest import compose_config

    full = compose_config(["experiment=study", "study_config=arcface_m4"])
    quick = compose_config(["experiment=study_quick", "study_config=arcface_m4"])
    assert full.trainer.max_epochs == 50 and full.data.train_subset is None and full.data.batch_size == 128
    assert quick.trainer.max_epochs < 10 and quick.data.train_subset and quick.loss.m == 4.0
    assert quick.optimizer == full.optimizer and quick.scheduler == full.scheduler


def test_open_set_experiment_holds_out_classes(tiny_config) -> None:
    cfg = tiny_config("experiment=open_set", "loss=arcface")
    assert list(cfg.data.held_out_classes) == [8, 9] and cfg.name == "open_set_arcface"
    assert cfg.analysis.open_set is True


def test_makefile_has_study_targets() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("study:", "audit:", "study-report:", "study-quick:", "report:"):
        assert f"\n{target}" in makefile
    assert "experiment=study_quick" in makefile and "-m src.report" in makefile


def _recipe(cfg) -> dict:
    """The composed job config without what a grid point may change (the loss, the run's name)."""
    from omegaconf import OmegaConf

    flat = OmegaConf.to_container(cfg, resolve=False)
    for key in ("loss", "name", "recipe", "study_config"):
        flat.pop(key, None)
    return flat


def test_extended_study_shares_the_study_recipe(synthetic_root) -> None:
    """experiment=study_extended is reported beside experiment=study's runs as one recipe, so every
    setting but the loss must be the same; its grid points are extra study_config files."""
    from tests.conftest import compose_config

    params = sweeper_params("study_extended")
    points = params["study_config"].split(",")
    assert len(params["seed"].split(",")) >= 3 and not set(points) & set(GRID)
    reference = _recipe(compose_config(["experiment=study", "study_config=softmax"]))
    for point in points:
        cfg = compose_config(["experiment=study_extended", f"study_config={point}"])
        assert cfg.recipe == "study" and cfg.name == point
        assert _recipe(cfg) == reference, point


def test_extended_search_is_seed_0_of_the_same_recipe(synthetic_root) -> None:
    """The validation-only search runs seed 0 only, into its own folder, each point under its own
    name (so the report never pools it with the paper's values), with the study's recipe."""
    from tests.conftest import compose_config

    params = sweeper_params("study_extended_search")
    assert params["seed"] == "0" or params["seed"] == 0
    reference = _recipe(compose_config(["experiment=study", "study_config=softmax"]))
    extended = set(sweeper_params("study_extended")["study_config"].split(","))
    for point in params["study_config"].split(","):
        cfg = compose_config(["experiment=study_extended_search", f"study_config={point}"])
        assert cfg.name == point and point not in extended and cfg.recipe == "study"
        assert _recipe(cfg) == reference, point
    lmin = compose_config(["experiment=study_extended_search", "study_config=lsoftmax_m4_lmin5"]).loss
    paper = compose_config(["experiment=study_extended", "study_config=lsoftmax_m4"]).loss
    assert lmin.lambda_min == 5.0 and {**lmin, "lambda_min": 0.0} == dict(paper)
