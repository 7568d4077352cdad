"""User-facing errors: anything raised as `LmwrightError` is printed by the CLI without a traceback.

A message says what is wrong, where (file, line, field) and how to fix it.
"""

from __future__ import annotations

from pathlib import Path


class LmwrightError(Exception):
    """An error the user can act on; the CLI prints it and exits with status 2."""


class SpecError(LmwrightError):
    """The project spec (lmwright.yaml or a --set override) is invalid."""


class StageFailed(LmwrightError):
    """A stage stopped on an unexpected error: the message names the stage, the cause and what to do; the full
    traceback is in `log` (the CLI prints it with --debug)."""

    def __init__(self, stage: str, cause: BaseException, advice: str, log: Path | None, traceback: str):
        self.stage, self.cause, self.log, self.traceback = stage, cause, log, traceback
        where = f"{log} (--debug prints it here)" if log else "not written (--debug prints it here)"
        super().__init__(f"stage '{stage}' failed: {type(cause).__name__}: {cause}\n"
                         f"  what to do: {advice}\n  traceback: {where}")
