"""Progress of a run on a terminal: feeds polled of N, pages fetched of M, then the
pipeline at work. Quiet (`Silent`) when stderr is not a terminal: logs and scripts
get the summary only."""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Progress(Protocol):
    def step(self, what: str, done: int, total: int) -> None:
        """`done` of `total` things of kind `what` are finished."""

    def stage(self, what: str) -> None:
        """A stage without a count has started (replaces the previous line)."""

    def close(self) -> None: ...


class Silent:
    def step(self, what: str, done: int, total: int) -> None:
        return None

    def stage(self, what: str) -> None:
        return None

    def close(self) -> None:
        return None


class Terminal:
    """rich's progress display on stderr, removed when the run ends (the summary stays)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._bar.start()

    def step(self, what: str, done: int, total: int) -> None:
        task = self._tasks.get(what)
        if task is None:
            task = self._tasks[what] = self._bar.add_task(what, total=total)
        self._bar.update(task, completed=done, total=total)

    def stage(self, what: str) -> None:
        self._tasks.setdefault(what, self._bar.add_task(what, total=None))

    def close(self) -> None:
        self._bar.stop()


def for_stderr() -> Progress:
    """A terminal display when stderr is one, else nothing."""
    return Terminal() if sys.stderr.isatty() else Silent()
