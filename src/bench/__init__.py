"""Benchmarks: ``python -m src.bench`` (framework vs bare loop, per step) and
``python -m src.bench steady`` (a whole run from a partly-trained state). docs/performance.md."""

from src.bench.common import autocast_for, compose_config, resolve_device
from src.bench.harness import ABLATIONS, Bench, StepClock, Steps, summarise
from src.bench.loops import MinimalModule
from src.bench.overhead import main, parse_args, run

__all__ = ["ABLATIONS", "Bench", "MinimalModule", "StepClock", "Steps", "autocast_for", "compose_config", "main",
           "parse_args", "resolve_device", "run", "summarise"]
