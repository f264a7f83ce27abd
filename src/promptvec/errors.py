"""One exception family for everything a user can get wrong.

Every error carries *what* went wrong and *how to fix it*, so that the CLI can print a single
readable message instead of a traceback from deep inside torch or transformers.
"""

from __future__ import annotations


class PromptvecError(Exception):
    """Base class: a problem the user can fix. ``hint`` says how."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ConfigError(PromptvecError):
    """An invalid option, configuration file or combination of settings."""


class TaskError(PromptvecError):
    """Unknown task, malformed task YAML, or a task that cannot be used as asked."""


class DataError(PromptvecError):
    """Missing, unreadable or inconsistent data (e.g. a label the task does not know)."""


class ModelLoadError(PromptvecError):
    """A backbone that cannot be found or loaded (offline, wrong path, missing package)."""


class CheckpointError(PromptvecError):
    """A prompt/checkpoint file that is corrupted, unsafe, or incompatible with the backbone."""


class StorageError(PromptvecError):
    """A file that cannot be written: the disk is full, the folder is read-only, ..."""


class OutputExistsError(PromptvecError):
    """An output folder already holds a different run."""


#: at most this many problems of one validation are listed (a file with 300,000 bad keys is one message)
MAX_LISTED = 10


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis says so): a name from a file is shown, not dumped."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_validation_error(exc) -> str:
    """One line per invalid field of a pydantic ValidationError: ``'field.path': message`` — at most
    :data:`MAX_LISTED` of them, each field name shortened, and how many more there are."""
    errors = exc.errors()
    shown = "; ".join(f"'{shorten('.'.join(map(str, e['loc'])) or '(top level)')}': {shorten(e['msg'], 1000)}"
                      for e in errors[:MAX_LISTED])
    return shown + (f"; and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else "")
