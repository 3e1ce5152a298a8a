"""What ``python -m src.train`` prints when Hydra itself rejects the command line.

Hydra parses the overrides and composes the config before any of our code runs, and reports a
mistake over several lines with a traceback. ``cli(main)`` runs the ``@hydra.main`` function so that
such a mistake (an unknown option of a config group, an unknown key, bad override syntax,
``group=null``) becomes one line on stderr and exit 2; a sweep with unfinished jobs exits 1. The
mistakes found in a composed config are ``src.training.validate``'s (``ConfigError``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.config import CONF_DIR, group_options
from src.config.suggest import unknown_key_line
from src.errors import ConfigError
from src.runs.resume import resume_arguments
from src.utils.text import one_line


def hydra_error_line(err: BaseException) -> str:
    """One line for an error Hydra raised while parsing overrides or composing the config."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        options = list(err.options or ()) or group_options(group)
        if group:
            valid = ", ".join(options) if options else f"none (conf/{group}/ is empty)"
            return f"{group}={option} is not an option of the '{group}' config group; valid: {valid}"
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override {err.override!r}: {one_line(err.message).split(' See https')[0]}"
    cause = err.__cause__
    key = getattr(cause, "key", None)
    parent = getattr(cause, "parent_node", None)
    if key is not None and parent is not None and "not in struct" in str(cause):
        full_key = str(getattr(cause, "full_key", None) or key)
        target = parent.get("_target_") if hasattr(parent, "get") else None
        return unknown_key_line(full_key, [str(k) for k in parent], str(target) if target else None)
    lines = [
        line.strip() for line in str(err).splitlines()
        if line.strip() and not line.strip().startswith(("full_key:", "object_type=", "reference_type=", "See https"))
    ]
    if isinstance(cause, OmegaConfBaseException):
        lines += [line.strip() for line in str(cause).splitlines()[:1] if line.strip()]
    return " ".join(lines) or type(err).__name__


def null_group_override(argv: list[str]) -> str | None:
    """The one-line error for ``group=null`` (e.g. ``loss=null``): a config group needs an option."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if sep and value.strip().lower() in ("null", "none", "~", "") and (CONF_DIR / key).is_dir():
            options = ", ".join(group_options(key)) or f"none (conf/{key}/ is empty)"
            optional = f"  - {key}: null" in (CONF_DIR / "train.yaml").read_text()
            hint = f"; to run without one, leave {key} out" if optional else ""
            return f"{key}={value or repr('')} is invalid: {key} is a config group; choose one of {options}{hint}"
    return None


def printed_config_error(argv: list[str]) -> str | None:
    """``--cfg job|hydra|all`` prints the config without running the job, so Hydra never calls the
    checks a training run makes; run them here first: the one-line error for a config that training
    would reject, or None (no ``--cfg``, a sweep, or a mistake Hydra itself reports when it composes)."""
    import tempfile

    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from src.errors import ConfigError
    from src.training.validate import check_config

    try:
        parsed = get_args_parser().parse_args(argv)
    except SystemExit:  # argparse's own message follows when Hydra parses the same arguments
        return None
    if parsed.cfg is None or parsed.multirun or parsed.help or parsed.hydra_help:
        return None
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=parsed.overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException):
        return None  # Hydra reports it (as one line, below) when it composes the same overrides
    with open_dict(cfg):  # the checks resolve ${hydra:runtime.output_dir}; nothing is written there
        cfg.hydra.runtime.output_dir = str(Path(tempfile.gettempdir()) / "marginloss-cfg-check")
        hydra_cfg = cfg.pop("hydra")
    HydraConfig.instance().set_config(OmegaConf.create({"hydra": hydra_cfg}))
    try:
        check_config(cfg)
    except ConfigError as err:
        return str(err)
    return None


def debug_requested(argv: list[str]) -> bool:
    return any(a.strip().lower() in ("debug=true", "debug=1", "+debug=true") for a in argv) or bool(
        os.environ.get("HYDRA_FULL_ERROR")
    )


# The entry point sets HYDRA_FULL_ERROR so that Hydra raises its composition errors instead of
# printing them over several lines; the job restores the variable (see ``job_started``).
_MARK = "MARGINLOSS_SET_HYDRA_FULL_ERROR"
_state: dict[str, Any] = {"job_started": False, "invoked_ns": None}


def made_by_this_command(folder: Path) -> bool:
    """Whether ``folder`` appeared after this command began (Hydra made it for the run), so that
    removing it when empty never removes a folder the user had made beforehand. The 50 ms allow
    for file times coming from the kernel's coarse clock."""
    started = _state.get("invoked_ns")
    try:
        return started is None or folder.stat().st_mtime_ns >= started - 50_000_000
    except OSError:
        return False


def job_started() -> None:
    """First thing in the task function: from here on Hydra reports errors its usual way."""
    _state["job_started"] = True
    if os.environ.pop(_MARK, None):
        os.environ.pop("HYDRA_FULL_ERROR", None)


def cli(main: Any, argv: list[str] | None = None) -> None:
    """Run a ``@hydra.main`` function; a mistake Hydra finds before the job starts (unknown option
    of a config group, unknown key, bad override syntax) becomes one line on stderr and exit 2."""
    import sys
    import time

    from hydra.errors import HydraException

    _state["invoked_ns"] = time.time_ns()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        replay = resume_arguments(args)  # --resume <folder>: the folder's own overrides (src.runs.resume)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if replay is not None:
        args = replay
        sys.argv[1:] = replay
    if debug_requested(args):
        main()
        return
    null_group = null_group_override(args)
    if null_group is not None:  # Hydra would answer with a ValueError traceback that names no key
        print(f"error: {null_group}", file=sys.stderr)
        sys.exit(2)
    printed = printed_config_error(args)
    if printed is not None:  # --cfg: the same checks as training, before the config is printed
        print(f"error: {printed}", file=sys.stderr)
        sys.exit(2)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    os.environ[_MARK] = "1"
    try:
        main()
        from src.sweep_summary import LAST, unfinished_jobs

        if unfinished_jobs():  # a sweep's exit status says whether every job finished
            counts = ", ".join(f"{n} {status}" for status, n in sorted(LAST["counts"].items()))
            print(f"error: sweep {LAST['sweep_dir']}: {counts} (see summary.md there)", file=sys.stderr)
            sys.exit(1)
    except (HydraException, OmegaConfBaseException) as err:
        if _state["job_started"]:
            raise
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # Hydra creating the run or sweep folder: a read-only or full disk
        if _state["job_started"]:
            raise
        from src.utils.io import describe_os_error

        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        sys.exit(1)
    finally:
        if os.environ.pop(_MARK, None):
            os.environ.pop("HYDRA_FULL_ERROR", None)
