"""The shape of src/ that issue #14 settled: one place for each job."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

SRC = REPO / "src"


def _classes(path: Path) -> list[ast.ClassDef]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)]


def test_every_error_type_is_declared_in_src_errors() -> None:
    """One family of error types in one module: no other module declares an exception class."""
    import src.errors as errors

    elsewhere = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "errors.py":
            continue
        for cls in _classes(path):
            bases = [ast.unparse(b) for b in cls.bases]
            if any(b.endswith(("Error", "Exception")) for b in bases):
                elsewhere.append(f"{path.relative_to(REPO)}: {cls.name}({', '.join(bases)})")
    assert not elsewhere, elsewhere
    assert all(issubclass(cls, errors.UserError) for cls in errors.USER_ERRORS)


def test_one_vocabulary_of_value_checks() -> None:
    """check_int / check_number / check_bool / check_choice are defined once (src/config/checks.py)."""
    names = {"check_int", "check_number", "check_real", "check_bool", "check_choice", "fail", "invalid"}
    defined = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        defined += [f"{path.relative_to(REPO)}: {node.name}" for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name in names]
    assert all(entry.startswith("src/config/checks.py") for entry in defined), defined


def test_the_commands_stay_where_users_run_them() -> None:
    for module in ("train", "evaluate", "sweep_summary"):
        assert (SRC / f"{module}.py").is_file()
    for package in ("report", "bench"):
        assert (SRC / package / "__main__.py").is_file() or (SRC / package / "__init__.py").is_file()
