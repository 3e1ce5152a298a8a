"""Configuration checks that run before any data is read (issue #6).

``check_config(cfg)`` raises ``src.errors.ConfigError`` with one line that names the key, the
value and what is allowed. Value ranges that a component already enforces are not copied here:
the loss head, the backbone, the optimiser and the LR schedule are built once on the CPU from the
configuration (a few milliseconds) and their own ``ValueError`` / ``TypeError`` becomes the
``ConfigError``. The Trainer's options, the data options and the top-level switches are checked
from tables.

The checks' vocabulary is ``src.config.checks``; Hydra's own composition errors (before any of
this runs) are turned into one line by ``src.cli``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.config.checks import check_bool, check_choice, check_int, check_number, fail, is_int, show
from src.errors import USER_ERRORS, ConfigError
from src.utils.text import one_line

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
MATMUL_PRECISIONS = ("highest", "high", "medium")
PRECISIONS = (
    "auto", "32-true", "32", "bf16-mixed", "bf16", "16-mixed", "16", "bf16-true", "16-true", "64-true", "64",
    "transformer-engine", "transformer-engine-float16",
)  # fmt: skip
# Precisions that need a CUDA GPU (Lightning refuses 16-bit *mixed* precision on the CPU).
CUDA_ONLY_PRECISIONS = ("16-mixed", "16", "transformer-engine", "transformer-engine-float16")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp", "deepspeed", "single_device")
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


# ------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------


def _node(cfg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    node = cfg.get(key)
    if not isinstance(node, Mapping):
        fail(key, node, "must be a config group (a mapping); check the defaults list in conf/train.yaml")
    return node


def _cause(err: BaseException) -> BaseException:
    """The innermost error Hydra's ``instantiate`` wrapped (its own message names only the target)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _build(group: str, node: Mapping[str, Any], **kwargs: Any) -> Any:
    """Instantiate a component from its config (no global RNG consumed); its error -> ConfigError."""
    import torch
    from hydra.utils import instantiate

    target = node.get("_target_", "?")
    try:
        with torch.random.fork_rng(devices=[]):
            return instantiate(OmegaConf.create(dict(node)), **kwargs)
    except Exception as err:  # any rejection of the settings is reported in one line
        cause = _cause(err)
        message = one_line(str(cause))
        if isinstance(cause, ConfigError):  # src.config.checks: already names key, value and range
            raise ConfigError(message) from None
        raise ConfigError(f"{group} ({target}) rejects its settings: {type(cause).__name__}: {message}") from None


# ------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------


def resolve(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers with every interpolation resolved (errors name the key)."""
    try:
        out = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "config"
        message = one_line(getattr(err, "msg", None) or err)
        for kind in USER_ERRORS:  # a resolver's own one-line error (data_shape reading the data) as it is
            said = f"{kind.__name__} raised while resolving interpolation: "
            if message.startswith(said):
                raise kind(message.removeprefix(said).split(" full_key: ")[0]) from None
        raise ConfigError(f"{key} cannot be resolved: {message}") from None
    out.pop("hydra", None)
    return out  # type: ignore[return-value]


def check_top_level(c: Mapping[str, Any]) -> None:
    check_int("seed", c.get("seed"), 0, MAX_SEED)
    for key in ("test", "channels_last", "compile", "debug", "resume", "flush_denormals"):
        if key in c:
            check_bool(key, c[key])
    check_choice("matmul_precision", c.get("matmul_precision"), MATMUL_PRECISIONS)
    if c.get("threads", "auto") != "auto":  # auto: src/utils/hardware.resolve_threads
        check_int("threads", c["threads"], 1)
    if "name" in c and (not isinstance(c["name"], str) or not c["name"].strip()):
        fail("name", c["name"], "must be a non-empty string")
    analysis = c.get("analysis")
    if isinstance(analysis, Mapping):
        for key, value in analysis.items():
            if isinstance(value, bool) or key in ("geometry", "open_set", "retrieval"):
                check_bool(f"analysis.{key}", value)
            elif key.startswith("max") or key.endswith("max_samples"):
                check_int(f"analysis.{key}", value, 1)


def device_kind(accelerator: str) -> str:
    """cpu | cuda | mps: the device ``accelerator`` ends up on (``auto`` resolved like Lightning)."""
    import torch

    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "mps":
        return "mps"
    if accelerator == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
    return "cpu"


def _check_devices(value: Any, kind: str) -> int:
    """Checks ``trainer.devices``; returns how many processes it asks for."""
    import torch

    key = "trainer.devices"
    allowed = "must be auto, -1 (all), an integer >= 1, or a list of device indices"
    if value == "auto":  # Lightning: one CPU process, or every GPU
        return torch.cuda.device_count() if kind == "cuda" else 1
    if value == -1:
        return torch.cuda.device_count() if kind == "cuda" else (os.cpu_count() or 1)
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            fail(key, value, allowed)
        value = int(parts[0]) if len(parts) == 1 and "," not in value else [int(p) for p in parts]
    if is_int(value):
        if value < 1:
            fail(key, value, allowed)
        count = value
        indices: list[int] = []
    elif isinstance(value, (list, tuple)) and value and all(is_int(v) and v >= 0 for v in value):
        if len(set(value)) != len(value):
            fail(key, value, "device indices must be unique")
        count, indices = len(value), list(value)
    else:
        fail(key, value, allowed)
    if kind == "cuda" and torch.cuda.is_available():
        available = torch.cuda.device_count()
        if count > available or any(i >= available for i in indices):
            fail(key, value, f"this machine has {available} CUDA device(s)")
    return count


MULTIPROCESS_STRATEGY = "src.training.distributed.MultiprocessDDPStrategy"


def _check_processes(t: Mapping[str, Any], kind: str, processes: int) -> None:
    """Several processes on the CPU only through ``trainer=ddp_cpu``: with any other strategy
    Lightning starts ranks 1..N-1 by re-running the command line (a ``-m`` sweep then runs again in
    every worker, into its own sweep folder), and ``ddp_spawn``-style workers would not send the
    run's results back for the record."""
    strategy = t.get("strategy", "auto")
    ours = isinstance(strategy, Mapping) and strategy.get("_target_") == MULTIPROCESS_STRATEGY
    if kind == "cpu" and processes > 1 and not ours:
        fail(
            "trainer.devices", t.get("devices"),
            f"{processes} processes on the CPU need trainer=ddp_cpu (e.g. trainer=ddp_cpu trainer.devices="
            f"{processes}); with strategy {show(strategy if isinstance(strategy, str) else strategy.get('_target_'))} "
            "Lightning would re-run the command in every worker",
        )
    if ours and int(t.get("num_nodes", 1) or 1) > 1:
        fail("trainer.num_nodes", t.get("num_nodes"), "trainer=ddp_cpu runs on one machine: must be 1 "
             "(for several machines use trainer=ddp under torchrun or SLURM)")
    if ours and processes < 2:
        fail("trainer.devices", t.get("devices"), "trainer=ddp_cpu needs 2 or more processes (an integer >= 2); "
             "for one process leave trainer=ddp_cpu out")


# Trainer arguments in conf/trainer/*.yaml; any other key is looked up in the Trainer's signature.
COMMON_TRAINER_KEYS = frozenset({
    "_target_", "accelerator", "devices", "num_nodes", "strategy", "precision", "max_epochs", "min_epochs",
    "max_steps", "deterministic", "benchmark", "log_every_n_steps", "num_sanity_val_steps", "enable_progress_bar",
    "gradient_clip_val", "limit_train_batches", "limit_val_batches", "limit_test_batches", "enable_model_summary",
    "plugins", "sync_batchnorm", "use_distributed_sampler",
})  # fmt: skip


def _check_trainer_keys(t: Mapping[str, Any]) -> None:
    unknown = [k for k in t if k not in COMMON_TRAINER_KEYS]
    if not unknown:
        return
    import inspect

    import pytorch_lightning as pl

    allowed = [p for p in inspect.signature(pl.Trainer.__init__).parameters if p not in ("self", "kwargs")]
    for key in unknown:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=2)
            hint = f"; did you mean {' or '.join(f'trainer.{k}' for k in close)}?" if close else ""
            fail(f"trainer.{key}", t[key], f"not an argument of pytorch_lightning.Trainer{hint}")


def check_trainer(t: Mapping[str, Any]) -> None:
    import torch

    _check_trainer_keys(t)
    accelerator = t.get("accelerator", "auto")
    check_choice("trainer.accelerator", accelerator, ACCELERATORS)
    kind = device_kind(accelerator)
    if kind == "cuda" and not torch.cuda.is_available():
        fail("trainer.accelerator", accelerator, "no CUDA GPU is available here; use trainer.accelerator=auto or cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        fail("trainer.accelerator", accelerator, "Apple MPS is not available here; use trainer.accelerator=auto or cpu")
    processes = _check_devices(t.get("devices", "auto"), kind)
    check_int("trainer.num_nodes", t.get("num_nodes", 1), 1)
    _check_processes(t, kind, processes)

    precision = t.get("precision", "32-true")
    precision = str(precision) if is_int(precision) else precision
    check_choice("trainer.precision", precision, PRECISIONS)
    if kind != "cuda" and precision in CUDA_ONLY_PRECISIONS:
        fail(
            "trainer.precision", precision,
            f"16-bit mixed precision needs a CUDA GPU and this run is on {kind}; use bf16-mixed or 32-true",
        )

    strategy = t.get("strategy", "auto")
    if not isinstance(strategy, Mapping):
        check_choice("trainer.strategy", strategy, STRATEGIES)

    check_int("trainer.max_epochs", t.get("max_epochs"), 1)
    check_int("trainer.min_epochs", t.get("min_epochs"), 0, t.get("max_epochs"), null=True)
    if t.get("max_steps", -1) != -1:
        check_int("trainer.max_steps", t.get("max_steps"), 1)
    for split in ("train", "val", "test", "predict"):
        key = f"limit_{split}_batches"
        value = t.get(key)
        if value is None:
            continue
        low = 1 if split == "train" else 0
        if is_int(value):
            check_int(f"trainer.{key}", value, low)
        else:
            check_number(
                f"trainer.{key}", value, 0.0, 1.0, low_open=split == "train", null=True,
                what=f"an integer >= {low} (batches) or a fraction",
            )
    check_int("trainer.log_every_n_steps", t.get("log_every_n_steps", 50), 1)
    check_int("trainer.num_sanity_val_steps", t.get("num_sanity_val_steps", 2), -1)
    check_int("trainer.accumulate_grad_batches", t.get("accumulate_grad_batches", 1), 1)
    check_int("trainer.check_val_every_n_epoch", t.get("check_val_every_n_epoch", 1), 1, null=True)
    interval = t.get("val_check_interval")
    if interval is not None:
        if is_int(interval):
            check_int("trainer.val_check_interval", interval, 1)
        else:
            check_number("trainer.val_check_interval", interval, 0.0, 1.0, low_open=True)
    check_number("trainer.gradient_clip_val", t.get("gradient_clip_val"), 0.0, null=True)
    if t.get("gradient_clip_algorithm") is not None:
        check_choice("trainer.gradient_clip_algorithm", t["gradient_clip_algorithm"], ("norm", "value"))
    if t.get("deterministic") not in (None, True, False, "warn"):
        fail("trainer.deterministic", t["deterministic"], "must be true, false or warn")
    if t.get("benchmark") not in (None, True, False):
        fail("trainer.benchmark", t["benchmark"], "must be true, false or null")
    for key in ("enable_progress_bar", "enable_model_summary", "enable_checkpointing", "inference_mode"):
        if key in t and t[key] is not None:
            check_bool(f"trainer.{key}", t[key])


def check_data(d: Mapping[str, Any]) -> int:
    """Checks ``data``; returns the number of classes the model is trained on."""
    from src.data.inputs import check_own_data, data_format, input_info

    name = d.get("name")
    own = data_format(d) != "idx"  # data=folder / data=arrays: sizes from the files' listing or headers
    info = check_own_data(d) if own else input_info(d)
    check_int("data.batch_size", d.get("batch_size"), 1)
    check_int("data.eval_batch_size", d.get("eval_batch_size", 1000), 1)
    n_train, n_test, n_classes = info.num_train, info.num_test, len(info.class_names)
    if not is_int(d.get("val_size")) or not 1 <= d["val_size"] < n_train:
        fail(
            "data.val_size", d.get("val_size"),
            f"must be an integer in [1, {n_train - 1}] ({d.get('root') if own else name} has {n_train} training "
            "images" + ("" if own else "; a smaller local file is checked when it is read") + ")",
        )
    check_int("data.train_subset", d.get("train_subset"), 1, n_train - d["val_size"], null=True)
    check_int("data.test_subset", d.get("test_subset"), 1, n_test, null=True)
    check_int("data.split_seed", d.get("split_seed", 0), 0, MAX_SEED)
    check_int("data.seed", d.get("seed", 0), 0, MAX_SEED)
    check_int("data.crop_padding", d.get("crop_padding", 0), 0, min(info.height, info.width) - 1)
    check_number("data.erase_prob", d.get("erase_prob", 0.0), 0.0, 1.0)
    for key in ("normalize", "hflip", "download", "verify", "channels_last", "fallback"):
        if key in d:
            check_bool(f"data.{key}", d[key])
    root = None if own else d.get("root")  # data=folder / arrays: checked with their own keys
    if root is not None and not isinstance(root, str):
        fail("data.root", root, "must be a folder path or null")
    if isinstance(root, str) and not d.get("fallback") and not Path(root).expanduser().is_dir():
        fail("data.root", root, "no such folder; name an existing folder (the four files are looked for and "
             "downloaded there), leave data.root out (null: ./data, then the system copy, then a download), "
             "or add data.fallback=true to allow that search when the folder lacks the files")

    held = d.get("held_out_classes") or []
    if not isinstance(held, (list, tuple)):
        fail("data.held_out_classes", held, f"must be a list of class ids in [0, {n_classes - 1}]")
    for c in held:
        if not is_int(c) or not 0 <= c < n_classes:
            fail("data.held_out_classes", list(held), f"class ids must be integers in [0, {n_classes - 1}]")
    if len(set(held)) != len(held):
        fail("data.held_out_classes", list(held), "class ids must be unique")
    if n_classes - len(held) < 2:
        fail("data.held_out_classes", list(held), f"at least 2 of the {n_classes} classes must stay for training")
    return n_classes - len(held)


def check_model(c: Mapping[str, Any], num_classes: int) -> None:
    """Backbone and loss head: built on the CPU once, so their own checks (``src.config.checks``, in
    their constructors) run before any data. The run builds them again after seeding: these copies
    are built under a forked RNG and thrown away, so checking never changes a run's initial weights."""
    import torch

    backbone_cfg = _node(c, "backbone")
    backbone = _build("backbone", backbone_cfg)
    dim = getattr(backbone, "embedding_dim", backbone_cfg.get("embedding_dim"))
    model_dim = (c.get("model") or {}).get("embedding_dim", dim)
    if model_dim != dim:
        fail("model.embedding_dim", model_dim, f"must equal backbone.embedding_dim={dim} (leave it interpolated)")
    from src.data.inputs import input_info

    info = input_info(_node(c, "data"))  # cached: check_data has read it
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        try:
            out = backbone.eval()(torch.zeros(1, info.channels, info.height, info.width))
        except RuntimeError as err:  # e.g. in_channels or image_size typed by hand, not the data's
            raise ConfigError(f"backbone ({backbone_cfg.get('_target_')}) cannot take the data's "
                              f"{info.channels}x{info.height}x{info.width} images (leave backbone.in_channels and "
                              f"backbone.image_size interpolated from the data): {one_line(str(err))}") from None
    if tuple(out.shape) != (1, dim):
        fail("backbone.embedding_dim", dim, f"the backbone outputs {tuple(out.shape[1:])}-shaped embeddings")

    loss_cfg = _node(c, "loss")
    _build("loss", loss_cfg, embedding_dim=dim, num_classes=num_classes)


def check_optimisation(c: Mapping[str, Any]) -> None:
    import torch

    opt = _node(c, "optimizer")
    check_number("optimizer.lr", opt.get("lr"), 0.0, low_open=True, what="a finite learning rate")
    for key in ("weight_decay", "eps"):
        if key in opt:
            check_number(f"optimizer.{key}", opt[key], 0.0, low_open=key == "eps")
    for key in ("momentum", "rho"):
        if key in opt:
            check_number(f"optimizer.{key}", opt[key], 0.0, 1.0)
    factory = _build("optimizer", opt)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = _call("optimizer", opt, factory, params=[param])

    sched = c.get("scheduler")
    if sched is None:
        return
    if not isinstance(sched, Mapping):
        fail("scheduler", sched, "must be a scheduler config or null")
    _call("scheduler", sched, _build("scheduler", sched), optimizer=optimizer, total_steps=100)


def _call(group: str, node: Mapping[str, Any], factory: Any, **kwargs: Any) -> Any:
    if not callable(factory):
        fail(f"{group}._partial_", node.get("_partial_"), f"the {group} config must be a partial (_partial_: true)")
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{group} ({node.get('_target_')}) rejects its settings: {one_line(str(err))}") from None


def check_component_lists(c: Mapping[str, Any]) -> None:
    io = c.get("checkpoint_io")
    if io is not None and not (isinstance(io, Mapping) and isinstance(io.get("_target_"), str)):
        fail("checkpoint_io", io, "must be a CheckpointIO config with a _target_, or null for Lightning's default")
    for group in ("callbacks", "logger"):
        node = c.get(group)
        if node is None:
            continue
        if not isinstance(node, Mapping):
            fail(group, node, "must be a mapping of name -> component config (or null to drop it)")
        for name, entry in node.items():
            if entry is not None and not (isinstance(entry, Mapping) and isinstance(entry.get("_target_"), str)):
                fail(f"{group}.{name}", entry, "must be a component config with a _target_, or null")
    loggers = [entry for entry in (c.get("logger") or {}).values() if entry is not None]
    for name, entry in (c.get("logger") or {}).items():  # an optional extra: one line, not an import traceback
        if entry is not None and "MLFlow" in str(entry.get("_target_", "")):
            import importlib.util

            if importlib.util.find_spec("mlflow") is None:
                fail(f"logger.{name}", "mlflow", "needs the mlflow extra: pip install -e '.[mlflow]'")
    for name, entry in (c.get("callbacks") or {}).items():  # Lightning would stop after setup with a traceback
        if not loggers and entry is not None and str(entry.get("_target_", "")).endswith(".LearningRateMonitor"):
            fail(f"callbacks.{name}", "LearningRateMonitor", "needs a logger and every logger is null; also set "
                 f"callbacks.{name}=null")


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` (one line: key, value, what is allowed) for the first mistake found."""
    c = resolve(cfg)
    check_top_level(c)
    check_component_lists(c)
    check_trainer(_node(c, "trainer"))
    num_classes = check_data(_node(c, "data"))
    check_model(c, num_classes)
    check_optimisation(c)
