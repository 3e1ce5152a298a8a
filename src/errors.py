"""Every error type of the project, in one family.

A ``UserError`` is a mistake a user can fix: it is reported in one line that says what is wrong
and what to do, without a traceback (``debug=true`` shows it). Its kinds:

* ``ConfigError``: a configuration value (names the key, the value and what is allowed;
  ``src.config.checks`` writes the message). Exit 2 from ``python -m src.train``.
* ``RunFolderError``: the command does not fit the run folder it is aimed at (a ``ConfigError``:
  exit 2, nothing written; ``src.training.admission``).
* ``DatasetError``: a dataset file is missing, unreadable, corrupt or fails its checksum.
* ``CheckpointError``: a checkpoint file cannot be read or does not fit the run.
* ``NonFiniteError``: the training loss or a weight became NaN or infinite.
* ``EvaluationError``: a run that ``python -m src.evaluate`` cannot evaluate.

The last four exit 1 from ``python -m src.train``. ``USER_ERRORS`` lists every kind (a DDP worker's
error of one of these kinds is raised again in the main process as its own type).
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake a user can fix, reported in one line."""


class ConfigError(UserError, ValueError):
    """A mistake in the configuration: names the key, the value and what is allowed."""


class RunFolderError(ConfigError):
    """The command does not fit the run folder it is aimed at (exit 2, nothing written)."""


class DatasetError(UserError, RuntimeError):
    """A dataset file is missing, unreadable, corrupt or fails its checksum."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be read: names the file and what to do about it."""


class NonFiniteError(UserError, RuntimeError):
    """The training loss or a weight became NaN or infinite."""


class EvaluationError(UserError, RuntimeError):
    """A run that cannot be evaluated: one line naming the run and the reason."""


USER_ERRORS: tuple[type[UserError], ...] = (
    ConfigError, RunFolderError, DatasetError, CheckpointError, NonFiniteError, EvaluationError,
)  # fmt: skip
