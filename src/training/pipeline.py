"""Builds data, model, callbacks and trainer from a composed config, then fits and tests."""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from src.analysis.embeddings import run_analyses
from src.callbacks.history import EpochHistory
from src.callbacks.signals import EXIT_SIGINT, StartupStop, interruption
from src.runs.folder import RunFolder
from src.tb.final import hydra_choices, log_final
from src.tb.hparams import run_hparams
from src.training.admission import Plan, admit
from src.training.dispatch import skip_noop_batch_hooks
from src.training.model import MarginClassifier
from src.training.ranks import agree, is_owner
from src.training.records import RunRecord
from src.training.validate import check_config
from src.utils.hardware import device_kind, flush_denormals, resolve_precision, resolve_threads
from src.utils.io import write_text_atomic

log = logging.getLogger(__name__)


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, MarginClassifier]:
    datamodule = instantiate(cfg.data)
    backbone = instantiate(cfg.backbone)
    head = instantiate(cfg.loss, embedding_dim=cfg.model.embedding_dim, num_classes=datamodule.num_classes)
    model = MarginClassifier(
        backbone, head,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        class_names=datamodule.class_names,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        tta_hflip=cfg.model.tta_hflip,
    )
    return datamodule, model


def run(cfg: DictConfig, output_dir: Path | RunFolder, checked: bool = False) -> dict[str, Any]:
    """Train, select the best validation checkpoint, test it once; returns the final metrics.

    Nothing is written before the config is checked and the run folder has admitted the command
    (``src.training.admission``): a mistake leaves a finished run, and every other run, exactly as it was.
    """
    if not checked:  # src.train checks before its heavy imports and says so
        check_config(cfg)  # ConfigError before any data is read or any file written
    folder = RunFolder.of(output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with ExitStack() as held:

        def lock_and_admit() -> Plan:
            held.enter_context(folder.lock())  # one process per run folder
            return admit(folder, resolved, bool(cfg.get("resume")), new_ok=not _single_hydra_run())

        # Ranks started by SLURM or torchrun: rank 0 alone locks, admits and writes; the others
        # take its plan, or its refusal (src/training/ranks.py).
        return _admitted_run(cfg, folder, agree(lock_and_admit, cfg.trainer))


def _admitted_run(cfg: DictConfig, folder: RunFolder, plan: Plan) -> dict[str, Any]:
    if plan.action == "done":
        log.info("%s already holds this finished run: nothing to do", folder)
        print(f"already finished: {_summary_line(plan.record, folder)}")
        return plan.record
    if plan.action == "start" and is_owner():
        folder.set_aside_checkpoints()  # unreadable ones (admit found none to resume from)
        folder.write_config(OmegaConf.to_container(cfg, resolve=True))  # relocatable: <run>/... paths
        write_hydra_files(folder, cfg)
    if is_owner():
        folder.remove_leftovers()  # temporary files of writes a kill cut short
    # A restart from scratch (no readable checkpoint) keeps the earlier segments and their time.
    earlier = {k: plan.record[k] for k in ("segments", "wall_time_s", "started_at") if k in plan.record}
    startup = StartupStop()  # SIGTERM from here to the fit's own handler: the record says interrupted
    record = RunRecord(
        folder, previous=plan.record if plan.action == "resume" else (earlier or None),
        name=cfg.name, seed=int(cfg.seed), loss=_choice("loss"), backbone=_choice("backbone"),
        loss_params={k: v for k, v in OmegaConf.to_container(cfg.loss, resolve=True).items() if k != "_target_"},
        data=str(cfg.data.name), experiment=_choice("experiment"),
    )
    try:
        startup.arm()  # a SIGTERM while the record was being opened ends the segment here
        metrics = _fit_and_test(cfg, record, plan.checkpoint, startup)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the fit: nothing saved for it
        record.finish("interrupted", reason="KeyboardInterrupt")
        _say_how_to_continue(folder, "Ctrl-C")
        raise SystemExit(EXIT_SIGINT) from None  # one line and 130, not a traceback and -2
    except SystemExit as err:  # Lightning ends Ctrl-C with sys.exit(1), SIGTERM with SIGTERMException
        how = interruption(err)
        if how is None:
            record.finish("failed", reason=f"SystemExit: {err.code}")
            raise
        record.finish("interrupted", reason=how[0])
        _say_how_to_continue(folder, how[0])
        raise SystemExit(how[1]) from err
    except BaseException as err:
        record.finish("failed", reason=f"{type(err).__name__}: {err}")
        raise
    finally:
        startup.close()
    from src.tb.command import tensorboard_line
    from src.utils.announce import announce

    announce(_summary_line(metrics, folder), tensorboard_line(folder))  # on the terminal and in train.log
    return metrics


def _say_how_to_continue(folder: RunFolder, why: str) -> None:
    if is_owner():
        print(f"interrupted ({why}): continue with {folder.resume_command()}", file=sys.stderr)


def _single_hydra_run() -> bool:
    """A single run started from the command line (not a sweep's job, not a direct call)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def _summary_line(metrics: dict[str, Any], folder: RunFolder) -> str:
    """The honest result in one line: test accuracy of the validation-selected checkpoint, and where."""
    test = metrics.get("test_acc")
    shown = f"test accuracy {100 * test:.2f}%" if isinstance(test, float) else "no test (test=false)"
    val = metrics.get("val_acc_best")
    best = f"best validation accuracy {100 * val:.2f}%, " if isinstance(val, float) else ""
    return f"{best}{shown} (checkpoint chosen on validation); run folder {folder}"


def write_hydra_files(folder: RunFolder, cfg: DictConfig) -> None:
    """Hydra's ``.hydra/`` copies (config, hydra, overrides), written once the run is admitted.

    ``conf/hydra/default.yaml`` sets ``output_subdir: null`` so that Hydra does not write them
    itself before our checks: a rejected command must not touch an existing run's files."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    folder.hydra_copy("config").parent.mkdir(exist_ok=True)
    overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
    write_text_atomic(folder.hydra_copy("overrides"), OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
    write_text_atomic(folder.hydra_copy("config"), OmegaConf.to_yaml(cfg))
    write_text_atomic(folder.hydra_copy("hydra"), OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))


def configure_hardware(cfg: DictConfig) -> dict[str, Any]:
    """Resolve ``trainer.precision=auto`` and ``threads=auto``, set the intra-op threads and
    flush-to-zero (after the threads, so every worker of the pool gets it); returns what was chosen
    and why."""
    kind = device_kind(str(cfg.trainer.get("accelerator", "auto")))
    choice = resolve_precision(str(cfg.trainer.get("precision", "32-true")), kind)
    threads = resolve_threads(cfg.get("threads", "auto"), _parallel_jobs())
    torch.set_num_threads(threads.threads)
    flush = flush_denormals(bool(cfg.get("flush_denormals", True))) if kind == "cpu" else "n/a (not a CPU run)"
    log.info("precision %s (%s); %d intra-op threads (%s); flush denormals: %s", choice.precision, choice.reason,
             threads.threads, threads.reason, flush)
    return {"precision": choice.precision, "precision_reason": choice.reason, "flush_denormals": flush,
            "threads": threads.threads, "threads_reason": threads.reason}


def _parallel_jobs() -> int:
    """Jobs the Hydra launcher of this run runs side by side (1 outside Hydra or in a single run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from src.utils.hardware import launcher_parallel_jobs

    if not HydraConfig.initialized():
        return 1
    hc = HydraConfig.get()
    launcher = hc.get("launcher")
    if launcher is None:
        return 1
    fields = {"_target_": launcher.get("_target_"), "n_jobs": launcher.get("n_jobs")}  # the two it needs
    return launcher_parallel_jobs(fields, hc.mode == RunMode.MULTIRUN)


def _score(checkpoint: ModelCheckpoint | None) -> float:
    score = checkpoint.best_model_score if checkpoint else None
    return float(score) if score is not None else float("nan")


def _best_path(checkpoint: ModelCheckpoint | None) -> str | None:
    return str(checkpoint.best_model_path) if checkpoint and checkpoint.best_model_path else None


class RecordEpochs:
    """EpochHistory's listener: writes every finished epoch's rows and the best score so far into
    the run record. A class, not a closure, so that spawned DDP workers can receive it (pickled)."""

    def __init__(self, record: RunRecord, checkpoint: ModelCheckpoint | None) -> None:
        self.record, self.checkpoint = record, checkpoint

    def __call__(self, rows: list[dict[str, float]]) -> None:
        checkpoint = self.checkpoint
        self.record.update(history=rows, val_acc_best=_score(checkpoint), best_checkpoint=_best_path(checkpoint))


def _choice(group: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def build_trainer(
    cfg: DictConfig, model: pl.LightningModule, callbacks: list[pl.Callback], loggers: list[Any], **overrides: Any
) -> pl.Trainer:
    """``cfg.trainer`` with the checkpoint plugin, and the per-batch hooks that ``model`` and the
    trainer's callbacks leave as no-ops taken out of Lightning's dispatch (src/training/dispatch.py)."""
    plugins = [instantiate(cfg.checkpoint_io)] if cfg.get("checkpoint_io") else None  # atomic, weights_only
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, plugins=plugins, **overrides)
    skip_noop_batch_hooks(trainer.callbacks, model)
    return trainer


def _fit_and_test(cfg: DictConfig, record: RunRecord, resume_from: Path | None,
                  startup: StartupStop | None = None) -> dict[str, Any]:
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    torch.set_float32_matmul_precision(str(cfg.matmul_precision))
    hardware = configure_hardware(cfg)
    record.update(**hardware)
    datamodule, model = build(cfg)
    if hasattr(datamodule, "provenance"):  # which files the data came from, before any training
        record.update(data_files=datamodule.provenance())
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
    for logger in loggers:  # TensorBoard's HPARAMS session is written with the final metrics (log_final)
        if not isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(run_hparams(cfg, hydra_choices()))
    trainer = build_trainer(cfg, model, callbacks, loggers, precision=hardware["precision"])

    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    history = next((c for c in callbacks if isinstance(c, EpochHistory)), None)
    if history is not None:  # the record follows every epoch, so a killed run still shows what it did
        history.listener = RecordEpochs(record, checkpoint)
    if resume_from is not None:
        log.info("resuming from %s", resume_from)
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    if startup is not None:
        startup.close()  # after the fit a SIGTERM acts as before (the test and analyses run as they did)
    if trainer.interrupted:
        raise KeyboardInterrupt

    metrics: dict[str, Any] = {
        "val_acc_best": _score(checkpoint),
        "best_checkpoint": _best_path(checkpoint),
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "history": history.epochs if history else [],
        "class_names": model.class_names,
    }
    record.update(**metrics)

    if cfg.test:
        ckpt = _best_path(checkpoint)  # by path: "best" is ambiguous beside latest_checkpoint
        results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]  # the one test
        metrics.update({key.replace("/", "_"): float(value) for key, value in results.items()})
        confusion = model.results.test_confusion
        if confusion is not None:
            metrics["test_confusion"] = confusion.tolist()
            # How many images test_acc scored (fewer under trainer.limit_test_batches), so a later
            # src.evaluate figure on the full test set is never mistaken for the same figure.
            metrics["test_images"] = int(confusion.sum())
        record.update(**metrics)  # kept even if the analyses below are killed
        # Test-set geometry and (with held-out classes) the open-set check; never fails the run.
        metrics.update(run_analyses(trainer, model, datamodule, cfg.get("analysis")))

    log_final(loggers, cfg, metrics)  # HParams session, final scalars, text summary (src/tb/final.py)
    record.finish("finished", **metrics)
    return metrics
