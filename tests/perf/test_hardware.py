"""trainer.precision=auto, flush-to-zero on every thread and threads=auto."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from src.utils import hardware
from tests.conftest import REPO


@pytest.mark.parametrize(("amx", "avx512_bf16", "expected"), [
    (True, True, "bf16-mixed"), (False, True, "bf16-mixed"), (True, False, "bf16-mixed"), (False, False, "32-true"),
])  # fmt: skip
def test_auto_precision_follows_the_cpus_bf16_units(monkeypatch, amx: bool, avx512_bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    choice = hardware.resolve_precision("auto", "cpu")
    assert choice.precision == expected and choice.reason.startswith("auto: ")
    assert ("AMX" in choice.reason) == amx or expected == "32-true"


def test_explicit_precision_is_kept_and_cuda_without_bf16_gets_fp32(monkeypatch) -> None:
    assert hardware.resolve_precision("32-true", "cpu") == hardware.PrecisionChoice("32-true", "set in the config")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert hardware.resolve_precision("auto", "cuda").precision == "32-true"
    assert hardware.resolve_precision("auto", "mps").precision == "32-true"


# Runs in a fresh process: the OpenMP pool exists before flushing is asked for, as in the second
# job of a multirun. Setting the flag on the calling thread alone leaves the worker computing
# subnormals (the probe sees them); flush_denormals reaches the worker too.
PROBE = textwrap.dedent("""
    import torch
    from src.utils import hardware
    torch.set_num_threads(2)
    torch.ones(1 << 20).mul_(2)  # starts the OpenMP worker thread
    torch.set_flush_denormal(True)
    print(hardware.subnormals_flushed_everywhere())
    print(hardware.flush_denormals(True))
    print(hardware.subnormals_flushed_everywhere())
    print(hardware.flush_denormals(False))
    print(hardware.subnormals_flushed_everywhere())
""")


@pytest.mark.skipif(not torch.backends.cpu.get_cpu_capability().startswith("AVX"), reason="x86 FTZ/DAZ only")
def test_flush_reaches_every_openmp_worker() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    main_only, message, everywhere, off_message, after_off = out.stdout.split("\n")[:5]
    assert main_only == "False"  # the probe catches a worker that still computes subnormals
    assert everywhere == "True" and message == "on (this thread and 1 OpenMP worker(s))"
    assert after_off == "False" and off_message.startswith("off")


def test_the_run_record_says_which_precision_and_why(tiny_config, tmp_path) -> None:
    from src.training.pipeline import run

    cfg = tiny_config("trainer.precision=auto", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                      "analysis.geometry=false", "logger.tensorboard=null", "callbacks.learning_rate=null")  # fmt: skip
    metrics = run(cfg, tmp_path / "run")
    import json

    rec = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and rec["precision"] in ("bf16-mixed", "32-true")
    assert rec["precision"] == hardware.resolve_precision("auto", "cpu").precision
    assert rec["precision_reason"].startswith("auto: ") and rec["flush_denormals"].startswith("on")


def test_auto_threads_share_the_affinity_cores_among_parallel_jobs() -> None:
    assert hardware.resolve_threads("auto", 1, cores=8).threads == 8
    assert hardware.resolve_threads("auto", 2, cores=8).threads == 4
    assert hardware.resolve_threads("auto", 3, cores=2).threads == 1  # never 0
    assert hardware.resolve_threads(3, 4, cores=2) == hardware.ThreadsChoice(3, "set in the config")
    assert hardware.resolve_threads("auto").threads == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("launcher", "multirun", "jobs"), [
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, True, 2),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}, True, 8),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -2}, True, 7),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, False, 1),
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, True, 1),
    (None, True, 1),
])  # fmt: skip
def test_parallel_jobs_come_from_the_joblib_launcher_in_a_multirun(launcher, multirun: bool, jobs: int) -> None:
    assert hardware.launcher_parallel_jobs(launcher, multirun, cores=8) == jobs


def test_configure_hardware_sets_the_threads_and_records_them(tiny_config) -> None:
    from src.training.pipeline import configure_hardware

    before = torch.get_num_threads()
    try:
        info = configure_hardware(tiny_config("threads=auto"))
        assert info["threads"] == torch.get_num_threads() == hardware.usable_cores()
        assert info["threads_reason"].startswith("auto: ")
        info = configure_hardware(tiny_config("threads=1"))
        assert info == {**info, "threads": 1, "threads_reason": "set in the config"} and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# scikit-learn's wheel bundles its own libgomp; once it is loaded (src.analysis imports it) the
# flag must still reach PyTorch's workers, not a team of the other runtime.
OTHER_RUNTIME = textwrap.dedent("""
    import torch
    torch.set_num_threads(2)
    torch.ones(1 << 20).mul_(2)
    import sklearn.metrics  # noqa: F401
    from src.utils import hardware
    print(hardware.flush_denormals(True))
    print(hardware.subnormals_flushed_everywhere())
""")


@pytest.mark.skipif(not torch.backends.cpu.get_cpu_capability().startswith("AVX"), reason="x86 FTZ/DAZ only")
def test_flush_reaches_torchs_workers_when_another_openmp_runtime_is_loaded() -> None:
    pytest.importorskip("sklearn")
    out = subprocess.run([sys.executable, "-c", OTHER_RUNTIME], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["on (this thread and 1 OpenMP worker(s))", "True"]


def test_a_joblib_multirun_job_gets_its_share_of_the_cores() -> None:
    """threads=auto inside a job of `python -m src.train -m hydra/launcher=local_parallel` (n_jobs: 2)."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from src.training.pipeline import _parallel_jobs
    from tests.conftest import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=local_parallel"], return_hydra_config=True)
    for mode, jobs in (("MULTIRUN", 2), ("RUN", 1)):
        OmegaConf.set_readonly(cfg.hydra, False)
        with open_dict(cfg):
            cfg.hydra.mode = mode
        HydraConfig.instance().set_config(cfg)
        assert _parallel_jobs() == jobs
