"""Configuration checks that run before any data is read.

``check_config(cfg)`` raises ``src.errors.ConfigError`` with one line that names the key, the
value and what is allowed. Value ranges that a component already enforces are not copied here:
the loss head, the backbone, the optimiser and the LR schedule are built once on the CPU from the
configuration (a few milliseconds) and their own ``ValueError`` / ``TypeError`` becomes the
``ConfigError``. The Trainer's options (``src.training.trainer_checks``), the data options and the
top-level switches are checked from tables.

The checks' vocabulary is ``src.config.checks``; Hydra's own composition errors (before any of
this runs) are turned into one line by ``src.cli``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.config.checks import check_bool, check_choice, check_int, check_number, fail, is_int
from src.config.suggest import unknown_key_line
from src.errors import USER_ERRORS, ConfigError
from src.training.trainer_checks import check_trainer
from src.utils.text import one_line

MATMUL_PRECISIONS = ("highest", "high", "medium")
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range
# The largest learning rate accepted. No optimiser here trains anywhere near it (the configs use 0.003
# to 1.0, Adadelta's 1.0 the largest; the linear scaling rule at the largest batch Fashion-MNIST holds,
# 0.1 x 60000/256, is about 23), so a rate above it is a typo (1e3 for 1e-3) or a probe; and it stays
# far below float32's range (3.4e38), past which Adam's first step overflows with a traceback.
MAX_LR = 100.0


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
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", message)
        if isinstance(cause, TypeError) and unexpected:  # +loss.margin=...: name the keys it has
            keys = [k for k in node if k not in kwargs and k != unexpected[1]]
            raise ConfigError(unknown_key_line(f"{group}.{unexpected[1]}", keys, str(target), rejected=True)) from None
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
    model = c.get("model")
    if isinstance(model, Mapping) and "tta_hflip" in model:
        check_bool("model.tta_hflip", model["tta_hflip"])
    analysis = c.get("analysis")
    if isinstance(analysis, Mapping):
        for key, value in analysis.items():
            if isinstance(value, bool) or key in ("geometry", "open_set", "retrieval"):
                check_bool(f"analysis.{key}", value)
            elif key.startswith("max") or key.endswith("max_samples"):
                check_int(f"analysis.{key}", value, 1)


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
    if root is not None and (not isinstance(root, str) or not root.strip()):  # '' would mean the working directory
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
    from src.training.memory import check_memory

    with torch.random.fork_rng(devices=[]):
        check_memory(c, backbone, torch.zeros(1, info.channels, info.height, info.width))

    loss_cfg = _node(c, "loss")
    _build("loss", loss_cfg, embedding_dim=dim, num_classes=num_classes)


def check_optimisation(c: Mapping[str, Any]) -> None:
    import torch

    opt = _node(c, "optimizer")
    check_number("optimizer.lr", opt.get("lr"), 0.0, MAX_LR, low_open=True, what="a finite learning rate")
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


def _locate(path: str) -> Any:
    """The object ``path`` (``module.Class``, ``package.module.function``) names, imported as
    ``instantiate`` would; its module's own import errors propagate."""
    import importlib

    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        module = ".".join(parts[:end])
        try:
            found: Any = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and (module == err.name or module.startswith(err.name + ".")):
                continue  # not a module: the rest is an attribute of a shorter one
            raise  # the module exists and one of its own imports is missing
        for attr in parts[end:]:
            found = getattr(found, attr)
        return found
    raise ModuleNotFoundError(f"No module named {parts[0]!r}", name=parts[0])


def _targets(node: Any, key: str) -> list[tuple[str, str]]:
    """(key, target) for every ``_target_`` in ``node`` and below."""
    found = []
    if isinstance(node, Mapping):
        if isinstance(node.get("_target_"), str):
            found.append((f"{key}._target_", node["_target_"]))
        for name, value in node.items():
            found += _targets(value, f"{key}.{name}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += _targets(value, f"{key}[{i}]")
    return found


def check_targets(c: Mapping[str, Any]) -> None:
    """Every ``_target_`` the run instantiates only once training starts (callbacks, loggers, the
    checkpoint plugin, the Trainer and its strategy) can be imported here. The components built by
    ``check_model`` and ``check_optimisation`` report their own. Without this a callback renamed or
    uninstalled since a run started failed a resume after its record was reopened."""
    for group in ("callbacks", "logger", "checkpoint_io", "trainer"):
        for key, target in _targets(c.get(group), group):
            try:
                _locate(target)
            except Exception as err:  # ImportError, AttributeError, or whatever the module raised
                fail(key, target, f"cannot be imported ({type(err).__name__}: {one_line(str(err))}); make its "
                     "module importable (PYTHONPATH, the package that provides it) or name another class")


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` (one line: key, value, what is allowed) for the first mistake found."""
    c = resolve(cfg)
    check_top_level(c)
    check_component_lists(c)
    check_trainer(_node(c, "trainer"))
    num_classes = check_data(_node(c, "data"))
    check_model(c, num_classes)
    check_optimisation(c)
    check_targets(c)  # last: importing the callbacks' modules costs Lightning's import
