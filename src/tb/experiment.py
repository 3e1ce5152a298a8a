"""The sweep's one HParams experiment record and its seed bands, written into the sweep folder.

TensorBoard's HParams tab uses the first experiment record it finds. Runs write none (see
``src.tb.logger``); at the end of a multirun ``SweepExperiment`` (a Hydra callback,
``conf/hydra/default.yaml``) reads every job's hyper-parameters and scalar tags back from its event
files and writes one record: all keys of all runs, those that differ first and marked so, typed
domains, and the metric columns in a useful order. It also writes the Custom Scalars view across
seeds (``_seeds/``: per configuration, mean ± std of the accuracies per epoch; ``src.tb.seed_bands``).
For a sweep that did not reach its end, or a folder of single runs, write both by hand::

    python -m src.tb.experiment outputs/multiruns/<sweep folder>

Open one sweep per TensorBoard (``tensorboard --logdir <sweep folder>``): over a folder holding
several sweeps, TensorBoard picks one of their records.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from torch.utils.tensorboard import SummaryWriter

from src.runs.folder import EVENT_FILES, event_folders
from src.tb.command import tensorboard_line
from src.tb.hparams import HParam, experiment, read_session_hparams
from src.tb.seed_bands import write_seed_bands

log = logging.getLogger(__name__)
SUFFIX = ".hparams_experiment"  # the record's event file name ends so; rewritten, never duplicated
# Only tag lists are needed: keep no images or histograms in memory while reading.
_GUIDANCE = {"images": 1, "histograms": 1, "audio": 1, "compressedHistograms": 1, "scalars": 1, "tensors": 1}


def read_run(folder: Path) -> tuple[dict[str, HParam], set[str]] | None:
    """A run folder's logged hyper-parameters and scalar tags (None: no HParams session there)."""
    acc = EventAccumulator(str(folder), size_guidance=_GUIDANCE)
    acc.Reload()
    try:
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME).get(metadata.SESSION_START_INFO_TAG)
    except KeyError:
        return None
    if content is None:
        return None
    return read_session_hparams(content), set(acc.Tags()["scalars"])


def run_folders(root: Path) -> list[Path]:
    """Folders below ``root`` holding event files (each is one TensorBoard run)."""
    return event_folders(root, skip_suffix=SUFFIX)


def write_experiment(root: Path) -> Path | None:
    """Writes (or rewrites) ``root``'s experiment record over every run below it; its path, or None."""
    runs, tags = [], set()
    for folder in run_folders(root):
        found = read_run(folder)
        if found is not None:
            runs.append(found[0])
            tags |= found[1]
    if not runs:
        return None
    for old in root.glob(EVENT_FILES + SUFFIX):
        old.unlink()
    writer = SummaryWriter(log_dir=str(root), filename_suffix=SUFFIX)
    writer._get_file_writer().add_summary(experiment(runs, tags))  # raw summary: no public API for it
    writer.close()
    (path,) = root.glob(EVENT_FILES + SUFFIX)
    return path


class SweepExperiment(Callback):
    """Hydra callback: the experiment record at the end of every multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(str(config.hydra.sweep.dir))
        try:
            path = write_experiment(root)
        except Exception as err:  # the sweep's results are on disk already; never fail it here
            log.warning("TensorBoard experiment record not written: %s: %s", type(err).__name__, err)
            path = None
        try:
            bands = write_seed_bands(root)
        except Exception as err:  # as above
            log.warning("TensorBoard seed bands not written: %s: %s", type(err).__name__, err)
            bands = None
        if path is not None or bands is not None:
            log.info("%s", tensorboard_line(root))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a sweep folder (or any folder of runs)")
    args = parser.parse_args(argv)
    path = write_experiment(args.folder)
    print(path if path else f"no run with hyper-parameters below {args.folder}")
    bands = write_seed_bands(args.folder)
    print(bands if bands else f"no run with a per-epoch history below {args.folder}: no seed bands")


if __name__ == "__main__":
    main()
