"""Issue 27.3 and 27.6: what the config pass refuses before any memory is spent or data read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.errors import ConfigError
from src.training import memory
from src.training.validate import check_config
from tests.conftest import TINY, compose_config


def _check(root: Path, *overrides: str) -> None:
    check_config(compose_config([f"data.root={root}", *TINY, *overrides]))


def test_a_batch_far_beyond_memory_is_refused_with_key_size_and_limit(synthetic_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.batch_size=1000000000000 .*needs about .* GiB.*more than the .*"):
        _check(synthetic_root, "data.batch_size=1000000000000")
    _check(synthetic_root)  # the tiny default fits


def test_the_limit_is_the_least_of_free_memory_cgroup_and_rlimit(synthetic_root: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)  # 1 MiB free: even the weights do not fit
    with pytest.raises(ConfigError, match=r"backbone=.* weights, gradients and optimiser state need .* 1 MiB"):
        _check(synthetic_root)


def test_a_model_that_cannot_fit_is_refused(synthetic_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "memory_limit", lambda accelerator: (10 * 2**20, "available on this machine"))
    with pytest.raises(ConfigError, match=r"data\.batch_size=4096 .* 10 MiB available on this machine"):
        _check(synthetic_root, "data.batch_size=4096")


@pytest.mark.parametrize(("override", "key"), [("data.root=''", "data.root"), ("model.tta_hflip=2", "model.tta_hflip")])
def test_values_that_used_to_pass(synthetic_root: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(compose_config([*TINY, f"data.root={synthetic_root}", override]))


def test_per_image_bytes_counts_every_output() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8))
    # input 4 floats, Flatten 4, Linear 8, the Sequential's own output 8: 24 floats
    assert memory.per_image_bytes(net, torch.zeros(1, 4)) == 24 * 4
