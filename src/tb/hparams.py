"""Typed hyper-parameters and HParams-plugin records (session start/end, the sweep's experiment).

Names are the override keys a user types (``loss.m``, ``optimizer.lr``, ``seed``), plus the chosen
config of each group (``loss=arcface``, ``backbone=seed_cnn``); ``_target_`` paths are left out
(the group choice names them). Values keep their types: bools stay bools and strings strings;
protobuf has one number type, so ints are numbers with integral values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

HParam = bool | int | float | str
# Config sections that are plumbing, not hyper-parameters of the study.
SKIPPED_SECTIONS = ("hydra", "callbacks", "logger", "checkpoint_io")
# Config groups whose choice (``loss=arcface``) is itself a hyper-parameter.
GROUPS = ("loss", "backbone", "optimizer", "scheduler", "data", "experiment", "study_config")
# Listed in the sweep's HParams experiment even when constant, because a reader needs them to know
# what the runs were; TensorBoard shows the first five (differing keys first), so this list is short.
# Other constant keys stay in each run's session and resolved config, out of the table.
HEADLINE = ("loss", "loss.m", "backbone", "seed")
# HParams metric columns, in this order (the first five are shown by default): tag -> display name.
# The leakage audit may come under another name; any other test/* scalar follows these.
METRICS = {
    "val/acc_best": "best val acc",
    "test/acc": "test acc",
    "test/acc_macro": "test acc (macro)",
    "test/acc_leaky": "leaky acc (audit)",
    "test/open_set/roc_auc": "open-set ROC AUC",
}
MAX_DISCRETE = 12  # number hparams with at most this many values get a checkbox filter


def run_hparams(cfg: DictConfig, choices: Mapping[str, str | None] | None = None) -> dict[str, HParam]:
    """The run's resolved config as flat, typed ``key -> value`` pairs (None values left out)."""
    out: dict[str, HParam] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "_target_" or (not prefix and key in SKIPPED_SECTIONS):
                    continue
                walk(value, f"{prefix}{key}.")
        elif node is None:
            return
        elif isinstance(node, (bool, int, float, str)):
            out[prefix[:-1]] = node
        else:  # lists: one readable string
            out[prefix[:-1]] = str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    for group in GROUPS:
        choice = (choices or {}).get(group)
        if choice is not None:
            out[group] = str(choice)
    return out


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    summary = Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return summary


def session_start(hparams: Mapping[str, HParam], start_time: float | None = None) -> Summary:
    """A run's hyper-parameters (one HParams session; its run is the folder of its event file)."""
    info = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time() if start_time is None else start_time)
    for name, value in hparams.items():
        if isinstance(value, bool):
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = float(value)
        else:
            info.hparams[name].string_value = str(value)
    return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end(status: int = api_pb2.STATUS_SUCCESS) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


def _value(value: Any) -> HParam | None:
    """A protobuf ``Value`` back as Python (what a run logged)."""
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = value.number_value
        return int(number) if math.isfinite(number) and number.is_integer() else number
    if kind == "string_value":
        return value.string_value
    return None


def read_session_hparams(content: bytes) -> dict[str, HParam]:
    """The hyper-parameters of a session-start record (plugin content bytes) as Python values."""
    info = metadata.parse_session_start_info_plugin_data(content)
    return {k: v for k, v in ((k, _value(v)) for k, v in info.hparams.items()) if v is not None}


def _hparam_info(name: str, values: list[HParam]) -> api_pb2.HParamInfo:
    distinct = sorted(set(values), key=lambda v: (str(type(v)), v))
    info = api_pb2.HParamInfo(name=name, display_name=name)
    if all(isinstance(v, bool) for v in values):
        info.type = api_pb2.DATA_TYPE_BOOL
        info.domain_discrete.extend(distinct)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        info.type = api_pb2.DATA_TYPE_FLOAT64
        if len(distinct) <= MAX_DISCRETE:
            info.domain_discrete.extend(float(v) for v in distinct)
        else:
            info.domain_interval.min_value, info.domain_interval.max_value = float(distinct[0]), float(distinct[-1])
    else:
        info.type = api_pb2.DATA_TYPE_STRING
        info.domain_discrete.extend(sorted({str(v) for v in values}))
    # Only a value that differs marks a key: a key that only some runs have follows from another choice
    # (loss.convention from loss=arcface), and a study of three losses has a dozen such keys, which
    # would take the five default columns from what was swept (loss, loss.m, seed, ...).
    info.differs = len(distinct) > 1
    return info


def repeated_keys(runs: Sequence[Mapping[str, HParam]], names: Iterable[str]) -> set[str]:
    """Keys whose value, run for run, repeats another key that differs between runs (``data.seed``
    interpolates ``seed``; a study config sets ``name`` to its own name): a second column with the
    same values says nothing. Of each such set the key a user types is kept: a headline key, then a
    group choice, then the shortest path. Constant keys never count: equal constants are chance."""
    missing = object()
    by_column: dict[tuple[Any, ...], list[str]] = {}
    for name in names:
        # (type, value) per run, so that True and 1, or 2 and 2.0, are different values
        column = tuple((type(v).__name__, v) if (v := run.get(name, missing)) is not missing else None for run in runs)
        if len({c for c in column if c is not None}) > 1:  # differs in value, as HParamInfo.differs
            by_column.setdefault(column, []).append(name)
    repeated: set[str] = set()
    for same in by_column.values():
        keep = min(same, key=lambda n: (n not in HEADLINE, n not in GROUPS, n.count("."), len(n), n))
        repeated |= set(same) - {keep}
    return repeated


def experiment_infos(runs: Iterable[Mapping[str, HParam]]) -> list[api_pb2.HParamInfo]:
    """One HParamInfo per key of any run: the keys whose value differs (by name), then the headline
    constants and the keys only some runs have (SphereFace's ``loss.anneal`` beside softmax runs);
    keys every run shares with one value are left out of the table (they are in every run's record)."""
    runs = list(runs)
    names = sorted({k for run in runs for k in run})
    repeated = repeated_keys(runs, names)
    infos = []
    for name in names:
        values = [run[name] for run in runs if name in run]
        info = _hparam_info(name, values)
        if name not in repeated and (info.differs or name in HEADLINE or len(values) < len(runs)):
            infos.append(info)
    # TensorBoard sorts them the same way (differing first, then by name) and shows the first five.
    return sorted(infos, key=lambda i: (not i.differs, i.name))


def metric_tags(found: Iterable[str]) -> list[str]:
    """The HParams metric columns among the scalar tags ``found`` in the runs, in display order."""
    found = set(found)
    first = [tag for tag in METRICS if tag in found]
    # Then other test accuracies (a renamed leakage audit), retrieval and open-set numbers, then the
    # rest of the test analyses (geometry, ...).
    def rank(tag: str) -> int:
        return 0 if tag.startswith("test/acc") else 1 if tag.startswith(("test/retrieval/", "test/open_set/")) else 2

    others = sorted((rank(t), t) for t in found if t.startswith("test/") and t not in METRICS)
    return first + [t for _, t in others]


def experiment(runs: Iterable[Mapping[str, HParam]], scalar_tags: Iterable[str]) -> Summary:
    """The sweep's one HParams experiment record over all its runs."""
    exp = api_pb2.Experiment(
        name="", time_created_secs=time.time(), hparam_infos=experiment_infos(runs),
        metric_infos=[
            api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=METRICS.get(tag, tag))
            for tag in metric_tags(scalar_tags)
        ],
    )
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=exp))
