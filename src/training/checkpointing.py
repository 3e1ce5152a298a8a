"""Checkpoint files that are never half written and are read without running pickled code.

``AtomicCheckpointIO`` is a Lightning ``CheckpointIO`` plugin (``conf/train.yaml: checkpoint_io``):

* save: ``torch.save`` into a temporary file in the checkpoint's folder, ``fsync``, ``os.replace``
  over the target, ``fsync`` the folder. A crash or SIGKILL at any moment leaves either the old
  file or the new one, never a truncated one.
* load: ``torch.load(weights_only=True)`` unless a caller asks otherwise. Lightning's checkpoints
  here hold only tensors, numbers, strings and plain containers (the module's hyper-parameters
  are not saved: ``MarginClassifier`` does not call ``save_hyperparameters``), so nothing needs
  unpickling of arbitrary objects.
* a damaged, truncated or foreign file raises ``CheckpointError``: one line naming the file and
  what to do.

Remote paths (``s3://`` ...) fall back to Lightning's own writer (fsspec transaction).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

from src.errors import CheckpointError
from src.runs.folder import BEST_CHECKPOINTS
from src.utils.io import atomic_writer


def _is_local(path: _PATH) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def save_atomic(checkpoint: dict[str, Any], path: _PATH) -> None:
    """``torch.save`` to ``path`` through a temporary file + fsync + rename."""
    with atomic_writer(Path(str(path).removeprefix("file://")), "wb") as f:
        torch.save(checkpoint, f)


def _first_line(err: BaseException) -> str:
    """The error type and, when short and telling, its first line (torch's are long and generic)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    for line in lines:
        tail = line.split("Unpickler error:", 1)[1].strip() if "Unpickler error:" in line else ""
        if tail:
            return f"{type(err).__name__}: {tail}"
    first = lines[0] if lines else ""
    if not first or len(first) > 160 or "Weights only load failed" in first or "file an issue" in first:
        return type(err).__name__
    return f"{type(err).__name__}: {first}"


def load_checked(path: _PATH, map_location: Any = "cpu", weights_only: bool = True) -> dict[str, Any]:
    """``torch.load`` a local checkpoint; any failure becomes a one-line ``CheckpointError``."""
    path = Path(str(path).removeprefix("file://"))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            detail = next((line.strip() for line in str(err).splitlines() if "Unsupported global" in line), "")
            raise CheckpointError(
                f"checkpoint {path} holds Python objects that safe loading (weights_only=True) refuses"
                f"{': ' + detail if detail else ''}; only load it with weights_only=False if you trust its source"
            ) from None
        raise CheckpointError(_damaged(path, err)) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(_damaged(path, err)) from None
    except Exception as err:  # garbage bytes can trip the safe unpickler anywhere (IndexError, KeyError, ...)
        raise CheckpointError(_damaged(path, err)) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not a checkpoint (it holds a {type(checkpoint).__name__}, not a dict)")
    return checkpoint


def _damaged(path: Path, err: BaseException) -> str:
    return (
        f"checkpoint {path} is damaged or truncated ({_first_line(err)}); move it away and resume from "
        f"another checkpoint ({BEST_CHECKPOINTS} in the same folder), or start the run again without resume=true"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic, fsync'ed checkpoint writes; ``weights_only=True`` loads with one-line errors."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_atomic(checkpoint, path)

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable | str | torch.device | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if not _is_local(path):
            return super().load_checkpoint(path, map_location, weights_only)
        if not Path(str(path).removeprefix("file://")).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")  # as Lightning's own plugin
        safe = True if weights_only is None else weights_only  # Lightning passes None unless told otherwise
        return load_checked(path, map_location=map_location, weights_only=safe)
