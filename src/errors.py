"""Errors a user can fix; reported in one line without a traceback (``debug=true`` shows it)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A mistake in the configuration: names the key, the value and what is allowed."""
