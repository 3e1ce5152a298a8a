"""Configuration mistakes are reported in one line (key, value, what is allowed)
before any data is read; ``python -m src.train`` exits with code 2 and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.errors import ConfigError
from src.training.validate import check_config
from tests.conftest import CONF_DIR, TINY, compose_config, train_in_process
from tests.reliability.helpers import QUICK

# An existing folder without the data, no download, no fallback: reading any data would fail, so
# these tests prove the checks never touch the data files.
NO_DATA = Path(__file__).resolve().parent
MISSING_DATA = [f"data.root={NO_DATA}", "data.download=false"]
CUDA = torch.cuda.is_available()

# (overrides, text that the one-line message must contain)
MISTAKES = [
    (["seed=-1"], "seed=-1"),
    (["seed=1.5"], "seed=1.5"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
    (["trainer.max_epochs=two"], "trainer.max_epochs='two'"),
    (["data.batch_size=0"], "data.batch_size=0"),
    (["data.val_size=60000"], "data.val_size=60000"),
    (["data.train_subset=0"], "data.train_subset=0"),
    (["data.erase_prob=1.5"], "data.erase_prob=1.5"),
    (["data.held_out_classes=[3,3]"], "data.held_out_classes=[3, 3]"),
    (["data.held_out_classes=[10]"], "data.held_out_classes=[10]"),
    (["data.held_out_classes=[0,1,2,3,4,5,6,7,8]"], "at least 2"),
    (["data.name=cifar10"], "data.name='cifar10'"),
    (["loss=sphereface", "loss.m=0"], "loss.m=0"),
    (["loss=arcface", "loss.s=-1"], "loss.s=-1"),
    (["loss=cosface", "loss.m=abc"], "loss.m=abc"),
    (["loss=sphereface", "loss.m=2.5"], "loss.m=2.5"),
    (["+loss.margin=1"], "margin"),
    (["backbone.embedding_dim=0"], "backbone.embedding_dim=0"),
    (["model.embedding_dim=3"], "model.embedding_dim=3"),
    (["trainer.accelerator=tpu"], "trainer.accelerator='tpu'"),
    (["trainer.devices=0"], "trainer.devices=0"),
    (["trainer.precision=64-bit"], "trainer.precision='64-bit'"),
    (["trainer.limit_train_batches=0"], "trainer.limit_train_batches=0"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0"),
    (["+trainer.max_epoch=3"], "trainer.max_epochs"),  # a typo'd Trainer argument: suggests the real one
    (["optimizer.lr=0"], "optimizer.lr=0"),
    (["optimizer.lr=-1"], "optimizer.lr=-1"),
    (["optimizer=sgd", "optimizer.momentum=0"], "Nesterov"),  # torch's own check, reused
    (["scheduler.pct_start=1.5"], "pct_start"),  # the schedule's own check, reused
    (["matmul_precision=low"], "matmul_precision='low'"),
    (["test=maybe"], "test='maybe'"),
    (["callbacks.history=3"], "callbacks.history=3"),
]
if not CUDA:
    MISTAKES += [
        (["trainer.precision=16-mixed"], "trainer.precision='16-mixed'"),
        (["trainer.accelerator=gpu"], "trainer.accelerator='gpu'"),
    ]
MISTAKES += [
    # Several CPU processes only through trainer=ddp_cpu (else the command reruns per rank).
    (["trainer.devices=2"], "trainer.devices=2"),
    (["trainer.devices=4"], "trainer=ddp_cpu"),
    (["trainer.devices=2", "+trainer.strategy=ddp"], "trainer.devices=2"),
    (["trainer=ddp_cpu", "trainer.devices=1"], "trainer.devices=1"),
    (["trainer=ddp_cpu", "+trainer.num_nodes=2"], "trainer.num_nodes=2"),
    # A data folder that does not exist is an error unless the fallback is asked for.
    (["data.root=/nonexistent/nowhere"], "data.root='/nonexistent/nowhere'"),
    (["data.fallback=maybe"], "data.fallback='maybe'"),
    (["logger.tensorboard=null"], "callbacks.learning_rate"),  # the LR monitor needs a logger
]


@pytest.mark.parametrize(("overrides", "expected"), MISTAKES, ids=[" ".join(o) for o, _ in MISTAKES])
def test_each_mistake_is_one_line_naming_key_and_value(overrides: list[str], expected: str) -> None:
    cfg = compose_config([*MISSING_DATA, *TINY, *overrides])
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    message = str(info.value)
    assert "\n" not in message and expected in message, message
    assert any(word in message for word in ("must", "valid", "rejects", "not an argument", "needs")), message


def test_many_distinct_mistakes_are_covered() -> None:
    keys = {o[-1].split("=")[0].lstrip("+") for o, _ in MISTAKES}
    assert len(MISTAKES) >= 15 and len(keys) >= 15


@pytest.mark.parametrize("loss", sorted(p.stem for p in (CONF_DIR / "loss").glob("*.yaml")))
def test_every_shipped_loss_config_passes(loss: str) -> None:
    check_config(compose_config([*MISSING_DATA, *TINY, f"loss={loss}"]))


@pytest.mark.parametrize(
    "overrides",
    [
        ["backbone=small2d", "loss=sphereface", "loss.m=6"],
        ["backbone=resnet", "scheduler=warmup_cosine", "optimizer=sgd"],
        ["trainer.precision=bf16-mixed"],  # bf16 autocast works on the CPU
        ["data.held_out_classes=[6,9]", "loss=arcface", "loss.m=4"],
        ["trainer=ddp_cpu"],
        ["trainer.limit_train_batches=0.5", "trainer.devices=auto", "seed=4294967295"],
        ["trainer=ddp_cpu", "trainer.devices=3"],
        ["data.root=/nonexistent/nowhere", "data.fallback=true"],  # asked for: the automatic search
        ["data.root=null"],
    ],
)
def test_valid_configs_pass(overrides: list[str]) -> None:
    check_config(compose_config([*MISSING_DATA, *TINY, *overrides]))


def test_run_stops_before_reading_data_and_writes_nothing(tmp_path: Path) -> None:
    from src.training.pipeline import run

    cfg = compose_config([*MISSING_DATA, *TINY, "trainer.max_epochs=0"], output_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="trainer.max_epochs=0"):
        run(cfg, tmp_path / "run")  # a DatasetError would mean the data was read first
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("name", "args", "key", "allowed"), [
    ("unknown_loss", ["loss=nonsense"], "loss=nonsense", "arcface, center"),
    ("unknown_key", ["trainer.max_epoch=3"], "trainer.max_epoch", "did you mean trainer.max_epochs"),
    ("sweep_option", ["-m", "loss=softmax,nonsens"], "loss=nonsens", "sphereface"),
    ("bad_value", ["loss=sphereface", "loss.m=0"], "loss.m=0", "integer >= 1"),
    ("null_group", ["loss=null"], "loss=null", "choose one of"),  # Hydra's ValueError, one line
    ("cpu_devices", ["trainer.devices=2"], "trainer.devices=2", "trainer=ddp_cpu"),
])
def test_command_line_mistakes_exit_2_with_one_line(name: str, args: list[str], key: str, allowed: str,
                                                    tmp_path: Path, monkeypatch, capsys) -> None:
    """The command line as typed (``src.cli`` around ``src.train``): Hydra's own errors (unknown
    option of a group, unknown key) and a value error found by check_config."""
    folder = tmp_path / name
    code = train_in_process([*args, *MISSING_DATA, *QUICK, f"hydra.run.dir={folder}", f"hydra.sweep.dir={folder}"],
                            monkeypatch)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert key in lines[0] and allowed in lines[0], lines[0]
    assert "Traceback" not in err
    if name in ("bad_value", "null_group", "cpu_devices"):
        assert not folder.exists()  # a rejected single run leaves nothing behind
