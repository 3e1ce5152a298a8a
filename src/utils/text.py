"""Small value helpers shared by the report, the sweep summary and the error messages, so all read and
print alike."""

from __future__ import annotations

import math
from typing import Any


def finite_number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, a bool, a string...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def markdown_cell(value: Any) -> str:
    """``value`` as one markdown table cell: a ``|`` escaped, a line break flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def one_line(text: Any) -> str:
    """A multi-line message as one line: each line stripped, empty ones dropped, joined by spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())
