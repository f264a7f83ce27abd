"""What a person at a terminal sees while promptvec works: progress bars and status lines, on stderr
so that stdout stays the command's result. Kept apart so the training loop and the commands hold no
display code, and everything here is a no-op when disabled (suite workers, tests, libraries)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: what an evaluation calls after each batch with the number of examples it finished
Advance = Callable[[int], None]


def _bar(**columns: Any):
    """A transient rich progress display on stderr: label, bar, done/total, extra text, time left."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True,
                    console=Console(stderr=True), **columns)


def _ignore(done: int) -> None:
    """Where nothing is shown, an advance that does nothing."""


class TrainingProgress:
    """A rich progress bar on stderr (or nothing), so the loop stays free of display code: steps and
    the last loss on the bar, each validation score printed above it as it is measured, and a second
    bar counting the examples of each evaluation (validation, test) with the time it has left."""

    def __init__(self, enabled: bool, label: str, total: int, done: int) -> None:
        self.bar = None
        self.label = label
        if enabled:
            self.bar = _bar()
            self.bar.start()
            self.id = self.bar.add_task(label, total=total, completed=done, info="")

    def advance(self) -> None:
        """One more training step done."""
        if self.bar is not None:
            self.bar.update(self.id, advance=1)

    def show(self, loss: float) -> None:
        """The last training loss, on the bar."""
        if self.bar is not None:
            self.bar.update(self.id, info=f"loss {loss:.4f}")

    def note(self, text: str) -> None:
        """A line printed above the bar (it stays after the bar is gone)."""
        if self.bar is not None:
            self.bar.console.print(text, highlight=False, markup=False)

    @contextmanager
    def counting(self, what: str, total: int) -> Iterator[Advance]:
        """A second bar under the steps' while ``total`` examples are scored; yields its advance."""
        if self.bar is None:
            yield _ignore
            return
        bar, task = self.bar, self.bar.add_task(what, total=total, info="")
        try:
            yield lambda done: bar.update(task, advance=done)
        finally:
            bar.remove_task(task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def status_line(enabled: bool, text: str) -> Iterator[None]:
    """A spinner with ``text`` on stderr while a step without progress runs (or nothing)."""
    if not enabled:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield


@contextmanager
def counting(enabled: bool, what: str, total: int) -> Iterator[Advance]:
    """A bar counting ``total`` examples with the time left (or nothing); yields its advance."""
    if not enabled:
        yield _ignore
        return
    with _bar() as bar:
        task = bar.add_task(what, total=total, info="")
        yield lambda done: bar.update(task, advance=done)
