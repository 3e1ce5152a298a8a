"""The TensorBoard command and first-screen address printed at the end of every run and sweep.

The address opens Time Series with ``smoothing=0`` (TensorBoard's default 0.6 bends a curve of a few
epochs away from its points), ``val/acc`` pinned on top, and only the accuracy charts shown
(``tagFilter``): every head measures accuracy the same label-free way, while each head's loss is its
own objective on its own scale (written under ``loss_own_scale/``, ``src.tb.logger``), so the charts
a user compares runs on first are comparable ones. Clearing the filter box shows every tag.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

PINNED = ("val/acc", "train/acc")
# The accuracy cards of the run or sweep (a filtered view lists its cards by name, pinned ones too): for
# a sweep, the seed bands' lower/mean/upper cards would come first and push val/acc off the screen;
# they are drawn as bands in Custom Scalars (src.tb.seed_bands) and listed in Time Series unfiltered.
TAG_FILTER = r"^(val|train)/acc"


def first_screen_query() -> str:
    """The first screen's query and fragment (``?smoothing=0&tagFilter=...#timeseries``)."""
    cards = json.dumps([{"plugin": "scalars", "tag": tag} for tag in PINNED], separators=(",", ":"))
    return f"?smoothing=0&tagFilter={quote(TAG_FILTER, safe='')}&pinnedCards={quote(cards, safe='/')}#timeseries"


def first_screen_url(port: int = 6006) -> str:
    return f"http://localhost:{port}/{first_screen_query()}"


def _tensorboard() -> str:
    """``tensorboard`` as this Python's environment has it (``.venv/bin/tensorboard``), else on PATH."""
    beside = Path(sys.executable).parent / "tensorboard"
    if beside.is_file():
        try:
            return os.path.relpath(beside)
        except ValueError:  # another drive (Windows)
            return str(beside)
    return shutil.which("tensorboard") or "tensorboard"


def tensorboard_line(logdir: str | Path) -> str:
    """One line: the command that serves ``logdir`` and the address of its first screen."""
    return f"TensorBoard: {_tensorboard()} --logdir {logdir}   then open {first_screen_url()}"
