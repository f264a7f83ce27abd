"""What a person at a terminal sees while promptvec works: progress bars and status lines, on stderr
so that stdout stays the command's result. Kept apart so the training loop and the commands hold no
display code, and everything here is a no-op when disabled (suite workers, tests, libraries)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class TrainingProgress:
    """A rich progress bar on stderr (or nothing), so the loop stays free of display code: steps and
    the last loss on the bar, each validation score printed above it as it is measured, and a
    spinner with a line of text while something slow runs without steps (evaluations)."""

    def __init__(self, enabled: bool, label: str, total: int, done: int) -> None:
        self.bar = None
        self.label = label
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), transient=True,
                                console=Console(stderr=True))
            self.bar.start()
            self.id = self.bar.add_task(label, total=total, completed=done, loss=float("nan"))

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(self.id, advance=1)

    def show(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.id, loss=loss)

    def note(self, text: str) -> None:
        """A line printed above the bar (it stays after the bar is gone)."""
        if self.bar is not None:
            self.bar.console.print(text, highlight=False, markup=False)

    @contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """The bar's label says what runs meanwhile (e.g. a validation pass)."""
        if self.bar is None:
            yield
            return
        self.bar.update(self.id, description=f"{self.label}: {what}")
        try:
            yield
        finally:
            self.bar.update(self.id, description=self.label)

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
