"""trainer.precision=auto and flush-to-zero on every thread (issue #11.1)."""

from __future__ import annotations

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
    from src.pipeline import run

    cfg = tiny_config("trainer.precision=auto", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                      "analysis.geometry=false", "logger.tensorboard=null", "callbacks.learning_rate=null")  # fmt: skip
    metrics = run(cfg, tmp_path / "run")
    import json

    rec = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and rec["precision"] in ("bf16-mixed", "32-true")
    assert rec["precision"] == hardware.resolve_precision("auto", "cpu").precision
    assert rec["precision_reason"].startswith("auto: ") and rec["flush_denormals"].startswith("on")
