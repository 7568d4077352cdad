"""`lmwright init`: write a project's lmwright.yaml, the commented default or one fitted to the user's data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmwright.cli.common import err
from lmwright.errors import LmwrightError
from lmwright.spec import DEFAULT_SPEC_TEXT, SPEC_FILENAME


def register(app: typer.Typer) -> None:
    app.command()(init)


def init(directory: Annotated[Path, typer.Argument(help="Directory to create the project in.")] = Path(".")) -> None:
    """Write a commented lmwright.yaml for the default project, to edit."""
    target = directory / SPEC_FILENAME
    if target.exists():
        raise LmwrightError(f"{target} already exists; edit it, or remove it to start again")
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(DEFAULT_SPEC_TEXT, encoding="utf-8")
    err.print(f"wrote {target}; edit it, then run `lmwright run -C {directory}`")
