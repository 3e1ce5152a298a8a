"""Resume by folder: ``python -m src.train --resume <run folder>`` (or ``resume=<run folder>``).

The command a run was started with is not needed: the folder's own overrides (Hydra's copy in
``.hydra/``, else the first segment's command in the record) are replayed with
``hydra.run.dir=<folder>`` and ``resume=true``, so the config compares equal and the run continues
where its newest whole checkpoint left it. Older folders whose names hold ``=``, ``,`` or ``++``
work too: the folder is handed to Hydra quoted.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from src.errors import RunFolderError
from src.runs.folder import RunFolder

# The values of ``resume`` that are switches, not folders (validate.py checks them as booleans).
_SWITCHES = {"true", "false", "yes", "no", "on", "off", "1", "0", "null", "none", ""}
# Overrides the replay sets itself.
_OWN_KEYS = {"resume", "hydra.run.dir"}


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def hydra_quoted(value: str) -> str:
    """``value`` as one quoted Hydra override value (its parser splits unquoted ``,`` and ``=``)."""
    quote = "'" if "'" not in value else '"'
    return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def _is_folder(override: str) -> bool:
    return override.split("=", 1)[1].strip().lower() not in _SWITCHES


def _folder_argument(args: list[str]) -> tuple[str | None, list[str]]:
    """The folder named by ``--resume F``, ``--resume=F`` or ``resume=F``, and the other arguments."""
    rest: list[str] = []
    folder = None
    it = iter(args)
    for arg in it:
        if arg == "--resume":
            folder = next(it, "")
            if not folder:
                raise RunFolderError("--resume needs a run folder: python -m src.train --resume outputs/runs/<run>")
        elif arg.startswith("--resume=") or (_key(arg) == "resume" and "=" in arg and _is_folder(arg)):
            folder = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return folder, rest


def _recorded_overrides(folder: RunFolder) -> list[str]:
    copy = folder.hydra_copy("overrides")
    if copy.is_file():
        try:
            listed = yaml.safe_load(copy.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise RunFolderError(f"{copy} cannot be read ({type(err).__name__}: {err})") from None
        if isinstance(listed, list):
            return [str(o) for o in listed]
    segments = folder.readable_record().get("segments") or []
    command = segments[0].get("command") if segments and isinstance(segments[0], dict) else None
    if isinstance(command, str) and command.startswith("python -m src.train"):
        return shlex.split(command)[3:]
    where = shlex.quote(f"hydra.run.dir={hydra_quoted(str(folder.path))}")
    raise RunFolderError(f"{folder} does not say how it was started (no {copy} and no command in its record); "
                         f"resume it with its own overrides and {where} resume=true")


def resume_arguments(args: list[str]) -> list[str] | None:
    """The command line that continues the run folder ``args`` names, or None when it names none.

    Raises ``RunFolderError`` (one line naming the folder) when the folder holds no run."""
    named, rest = _folder_argument(args)
    if named is None:
        return None
    folder = RunFolder(Path(named).expanduser().absolute())
    if not folder.path.is_dir():
        raise RunFolderError(f"resume: {named} is not a folder; name a run folder (the path printed as "
                             "'run folder ...' at the end of a run)")
    if not folder.holds_run():
        raise RunFolderError(f"resume: {named} holds no run (no record, resolved config or checkpoint); name a run "
                             "folder (the path printed as 'run folder ...' at the end of a run)")
    replay = [o for o in _recorded_overrides(folder) if _key(o) not in _OWN_KEYS and not o.startswith("-")]
    return [*replay, *rest, f"hydra.run.dir={hydra_quoted(str(folder.path))}", "resume=true"]
