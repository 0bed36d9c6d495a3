"""The progress display: a rich progress bar when rich is installed and wanted, plain lines
otherwise (`--no-progress`, or no rich: the `bench` extra is optional)."""

from __future__ import annotations

from typing import Any


class Display:
    def __init__(self, total: int, use_rich: bool) -> None:
        self.total = total
        self.done = 0
        self._progress: Any = None
        self._task: Any = None
        if use_rich:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    SpinnerColumn,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
            except ImportError:
                return
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )

    def __enter__(self) -> Display:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def status(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)
        else:
            print(f"[{self.done}/{self.total}] {text} ...", flush=True)

    def advance(self) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress.advance(self._task)

    def say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, flush=True)
