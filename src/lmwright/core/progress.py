"""Progress display: one rich progress area for a whole run, with a bar per stage.

Stages call `reporter.task(...)` and `handle.advance(n, info=...)`; `info` carries the figures a stage wants
shown (counts, loss, tokens/s). When output is not a terminal (CI, logs) bars are off and stages' `log` lines
carry the same figures.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TaskHandle:
    def __init__(self, progress: Progress | None, task_id):
        self._progress, self._id = progress, task_id

    def advance(self, n: float = 1, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._id, advance=n, **fields)

    def update(self, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._id, **fields)


class Reporter:
    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._progress: Progress | None = None

    def __enter__(self) -> Reporter:
        if not self.quiet and self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description:<10}"),
                BarColumn(bar_width=28),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def task(self, description: str, total: float | None = None, info: str = "") -> TaskHandle:
        if self._progress is None:
            return TaskHandle(None, None)
        return TaskHandle(self._progress, self._progress.add_task(description, total=total, info=info))

    def close_tasks(self) -> None:
        """Mark every bar finished (a stage has ended): open-ended ones stop spinning, timers stop."""
        if self._progress is None:
            return
        for t in self._progress.tasks:
            if not t.finished:
                done = t.completed if t.total is None else t.total
                self._progress.update(t.id, total=max(done, 1), completed=max(done, 1))
            self._progress.stop_task(t.id)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)
