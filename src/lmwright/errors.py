"""User-facing errors: anything raised as `LmwrightError` is printed by the CLI without a traceback.

A message says what is wrong, where (file, line, field) and how to fix it.
"""

from __future__ import annotations


class LmwrightError(Exception):
    """An error the user can act on; the CLI prints it and exits with status 2."""


class SpecError(LmwrightError):
    """The project spec (lmwright.yaml or a --set override) is invalid."""
