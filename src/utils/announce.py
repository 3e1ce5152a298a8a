"""A result line for both the terminal and the run's ``train.log``."""

from __future__ import annotations

import logging

log = logging.getLogger("src.result")


def announce(*lines: str) -> None:
    """Print each line as it is (no log prefix on the terminal) and write it to every log *file* the
    root logger has (Hydra's ``<run>/train.log``), so the file ends with the result as the terminal does."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for line in lines:
        print(line, flush=True)
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, line, None, None)
        for handler in files:
            if record.levelno >= handler.level:
                handler.handle(record)
