"""Third-party lines a normal run should not print, filtered one by one where they arise.

Each filter names the exact message and the module (or logger) that emits it, so any other warning
still shows. Nothing here silences a category or a whole library:

* lightning_fabric's SLURM environment: "The `srun` command is available ... but is not used"
  (this machine has SLURM installed; a run that should use it is started with ``srun``);
* pytorch_lightning's pytree helper: torch's ``LeafSpec`` deprecation (Lightning's own code);
* Lightning's model summary: "Precision bf16-mixed is not supported by the model summary";
* Lightning's "💡 Tip" advertisements for litlogger / litmodels;
* Lightning's "`weights_only` was not set, defaulting to `False`" when a full training checkpoint
  (``last.ckpt`` on Ctrl-C) is written: writing optimizer state is meant; every *read* uses
  ``weights_only=True`` (``src/training/checkpointing.py``);
* TensorBoard's "Directory watcher advancing from ... to ..." while a sweep's event files are read.
"""

from __future__ import annotations

import logging
import warnings

_WARNINGS: tuple[tuple[str, str], ...] = (  # (message regex, module regex)
    (r"The `srun` command is available on your system but is not used",
     r"lightning_fabric\.plugins\.environments\.slurm"),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"pytorch_lightning\.utilities\._pytree"),
    (r"Precision .* is not supported by the model summary", r"pytorch_lightning\.utilities\.model_summary"),
)
_LOG_LINES: tuple[tuple[str, str], ...] = (  # (logger name, message prefix)
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip:"),
    ("lightning_fabric.utilities.rank_zero", "💡 Tip:"),
    ("pytorch_lightning.trainer.connectors.checkpoint_connector", "`weights_only` was not set"),
    ("tensorboard", "Directory watcher advancing"),
)


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_third_party() -> None:
    """Install the filters above. Safe to call again: ``warnings.filterwarnings`` moves an existing
    identical filter to the front (``warnings.catch_warnings`` blocks, pytest's among them, restore
    the list they found), and a logger gets each filter once."""
    for message, module in _WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    for name, prefix in _LOG_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefix) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropPrefix(prefix))
