"""The end of a run in TensorBoard: its typed hyper-parameters (an HParams session), the final
metrics that no curve carries yet, and a short text summary (TEXT tab, tag ``summary``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from src.tb.hparams import GROUPS, run_hparams, session_end, session_start

# Retrieval metrics of the test embeddings (and of the held-out classes): logged once, at the
# test step, under test/ so that Time Series keeps them beside the test accuracies.
RETRIEVAL = ("precision_at_1", "r_precision", "map_at_r", "nmi", "ami")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def final_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Final metrics that need a scalar for HParams and are not logged by Lightning or the analyses."""
    out: dict[str, float] = {}
    sources = {"test/retrieval": metrics.get("retrieval"),
               "test/open_set/retrieval": (metrics.get("open_set") or {}).get("retrieval")}
    for prefix, values in sources.items():
        for key in RETRIEVAL:
            value = _number((values or {}).get(key)) if isinstance(values, Mapping) else None
            if value is not None:
                out[f"{prefix}/{key}"] = value
    return out


def _fmt(value: Any) -> str:
    number = _number(value)
    if number is None:
        return str(value)
    return f"{number:.4f}" if math.isfinite(number) else str(number)


def summary_text(hparams: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """Markdown: what ran and how it ended (the numbers HParams shows, in one place)."""
    what = [f"{k}={hparams[k]}" for k in ("loss", "loss.m", "loss.s", "backbone", "seed") if k in hparams]
    rows = [("epochs", metrics.get("epochs")), ("best val acc", metrics.get("val_acc_best"))]
    rows += [(k, metrics[k]) for k in sorted(metrics) if k.startswith("test_") and _number(metrics[k]) is not None]
    open_set = metrics.get("open_set") or {}
    if _number(open_set.get("roc_auc")) is not None:
        rows.append(("open-set ROC AUC", open_set["roc_auc"]))
    rows += [(f"retrieval {k}", v) for k, v in (metrics.get("retrieval") or {}).items() if _number(v) is not None]
    table = "\n".join(f"| {name} | {_fmt(value)} |" for name, value in rows if value is not None)
    return f"**{' '.join(what)}**\n\n| metric | value |\n|---|---|\n{table}\n"


def hydra_choices() -> dict[str, str | None]:
    """The running Hydra job's config-group choices (``{"loss": "arcface", ...}``; {} outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {group: choices.get(group) for group in GROUPS}


def log_final(loggers: Iterable[Logger], cfg: DictConfig, metrics: Mapping[str, Any],
              choices: Mapping[str, str | None] | None = None) -> None:
    """Writes the run's HParams session, final scalars and text summary to every TensorBoard logger
    (``choices``: the config-group choices, by default the running Hydra job's)."""
    hparams = run_hparams(cfg, hydra_choices() if choices is None else choices)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            _write(logger, hparams, metrics)
            logger.finalize("success")


@rank_zero_only  # other processes of a distributed run have no event file
def _write(logger: TensorBoardLogger, hparams: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
    writer = logger.experiment
    step = int(metrics.get("global_step", 0))
    scalars = final_scalars(metrics)
    # A resumed run's logger saw only the epochs after the restart: the record's best ends the curve.
    best = _number(metrics.get("val_acc_best"))
    if best is not None and math.isfinite(best) and getattr(logger, "val_acc_best", None) != best:
        scalars["val/acc_best"] = best
    for tag, value in scalars.items():
        writer.add_scalar(tag, value, global_step=step)
    writer.add_text("summary", summary_text(hparams, metrics), global_step=step)
    file_writer = writer._get_file_writer()  # the HParams records are raw summaries (no public API)
    file_writer.add_summary(session_start(hparams), step)
    file_writer.add_summary(session_end(), step)
