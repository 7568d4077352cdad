"""The `lmwright` command: every command group registered explicitly on one Typer app, and `main`.

Every command takes `-C DIR` (the project directory, default `.`) and `--set a.b=c` overrides; commands that
report figures take `--json`. A `LmwrightError` is printed as a one-paragraph message (exit 2), never a traceback;
so is any other error (exit 1), whose traceback goes to a log file under the workspace. `--debug` anywhere on the
command line (or LMWRIGHT_DEBUG=1) prints tracebacks in the terminal too.

The commands live in a module per group (project, data, evaluate, finetune, export, registry, serve, monitor, governance) and are thin: parse,
call the library, print. Nothing in the library imports this package.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import typer
from rich.markup import escape

from lmwright.cli import (
    annotate,
    data,
    evaluate,
    export,
    finetune,
    governance,
    init,
    monitor,
    project,
    registry,
    serve,
)
from lmwright.cli.common import err
from lmwright.errors import LmwrightError, StageFailed

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Build a language model through its whole life from one project file, lmwright.yaml. "
                       "Add --debug to any command to see the full traceback of a failure.")
# the order of `lmwright --help`: the project, data, the stages, evaluation, search, fine-tuning, serving
project.register(app)
init.register(app)
data.register(app)
project.register_stages(app)
evaluate.register(app)
project.register_design(app)
evaluate.register_search(app)
finetune.register(app)
export.register(app)
registry.register(app)
serve.register(app)
monitor.register(app)
governance.register(app)
annotate.register(app)


def _crash_log(text: str) -> Path | None:
    """Where an error outside any stage keeps its traceback: the workspace in the current directory if there is
    one, else the system's temporary directory."""
    from lmwright.core.pipeline import write_log

    here = Path.cwd() / ".lmwright"
    return write_log(here / "logs" if here.is_dir() else Path(tempfile.gettempdir()) / "lmwright-logs", "error", text)


def main() -> None:
    debug = "--debug" in sys.argv[1:] or os.environ.get("LMWRIGHT_DEBUG", "") not in ("", "0")
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
    try:
        app()
    except LmwrightError as exc:
        if debug and isinstance(exc, StageFailed):
            err.print(exc.traceback, highlight=False, markup=False)
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)  # 'lmwright[ray]' is not markup
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; run the same command again to resume")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug or an environment problem: a message, and the trace in a file
        text = "".join(traceback.format_exception(exc))
        if debug:
            err.print(text, highlight=False, markup=False)
        log = _crash_log(text)
        where = f"the traceback in {escape(str(log))}" if log else "the traceback (--debug prints it)"
        err.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}\n  this is likely a bug in lmwright; "
                  f"please report it with {where}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
