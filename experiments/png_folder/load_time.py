"""Time from config to data in memory, as a run does it: ``instantiate(cfg.data)``, the record's
provenance (files located and fingerprinted), ``setup("fit")`` and ``setup("test")``.

    .venv/bin/python experiments/png_folder/load_time.py <overrides...>      # one measurement
Each call is a fresh process, so nothing is cached in memory between measurements (the page cache
is: the files are read warm, as on any second run).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

import src.data.datamodule  # noqa: E402, F401 - imported before the clock starts (Lightning's import is slow)
import src.data.local  # noqa: E402, F401
from src.utils.resolvers import register_resolvers  # noqa: E402

register_resolvers()
torch.set_num_threads(1)
with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[2] / "conf"), version_base="1.3"):
    cfg = compose("train", overrides=sys.argv[1:])
start = time.perf_counter()
data = instantiate(cfg.data)
data.provenance()
data.setup("fit")
data.setup("test")
seconds = time.perf_counter() - start
print(f"{seconds:.2f} s: {len(data._train[1]) + len(data._val[1]) + len(data._test[1])} images, {' '.join(sys.argv[1:])}")
