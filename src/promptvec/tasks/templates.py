"""Task templates (``doc_to_text``, ``doc_to_target``) rendered in a sandbox with limits.

A task file is user input, sometimes downloaded. Jinja's sandbox already refuses access to Python
internals (``''.__class__.__mro__`` …); on top of it a template here may not build a huge value
(``{{ text * 100000000000 }}``), produce more than :data:`MAX_CHARS` characters, or run longer than
:data:`MAX_SECONDS` of its own CPU time for one row (``{% for i in range(99999) %}{% for j in range(99999) %}…``).
Every refusal is one :class:`TemplateRefused` saying which limit, which the task code turns into a
message naming the row and the task.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.sandbox

MAX_CHARS = 1_000_000  # rendered characters per row
MAX_SECONDS = 2.0  # CPU time rendering one row, garbage collections left out
MAX_RANGE = 10_000  # items of one range()
MAX_POWER = 64  # exponent of **


class TemplateRefused(Exception):
    """A template that breaks the sandbox's rules or limits (turned into a DataError by the caller)."""


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    """Jinja's sandbox, with the arithmetic that builds huge values and ``range`` capped."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_POWER:
            raise TemplateRefused(f"a power above {MAX_POWER} ({left!r:.20} ** {right!r:.20})")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_CHARS:
                    raise TemplateRefused(f"a repetition longer than {MAX_CHARS:,} items")
        return super().call_binop(context, operator, left, right)


def _limited_range(*args: int) -> range:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise TemplateRefused(f"a range of more than {MAX_RANGE:,} items")
    return values


SANDBOX = _Sandbox(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
SANDBOX.globals["range"] = _limited_range


@lru_cache(maxsize=256)
def compiled(template: str) -> jinja2.Template:
    return SANDBOX.from_string(template)


class _OwnTime:
    """CPU seconds the rendering thread has spent since it started, garbage collections left out. A
    template is stopped for its own work only: wall time would also count a loaded machine descheduling the
    process (a CI runner with more jobs than cores), and a collection of a large heap (a process holding a
    compiled model) can take seconds that no template caused."""

    def __init__(self) -> None:
        self._thread = threading.get_ident()
        self._start = time.thread_time()
        self._collecting = 0.0
        self._collected = 0.0

    def __enter__(self) -> _OwnTime:
        gc.callbacks.append(self._on_collection)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self._thread:  # another thread's collection: not on this thread's clock
            return
        if phase == "start":
            self._collecting = time.thread_time()
        else:
            self._collected += time.thread_time() - self._collecting

    def seconds(self) -> float:
        return time.thread_time() - self._start - self._collected


@contextmanager
def _time_limit(clock: _OwnTime, seconds: float) -> Iterator[None]:
    """Raises TemplateRefused in the rendering code once ``clock`` passes ``seconds``: a CPU-time timer
    (SIGVTALRM) wakes a check that re-arms itself for what is left (main thread only; other threads rely on
    the size limits and the check between output chunks)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        left = seconds - clock.seconds()
        if left <= 0:
            raise TemplateRefused(f"rendering one row took more than {seconds:g} s of CPU time")
        signal.setitimer(signal.ITIMER_VIRTUAL, left)

    previous = signal.signal(signal.SIGVTALRM, expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def render(template: str, values: dict[str, Any]) -> str:
    """``template`` filled with ``values`` under the sandbox's limits. Raises TemplateRefused (limits,
    sandbox refusals, errors inside the template) or jinja2.UndefinedError (a missing field)."""
    chunks: list[str] = []
    size = 0
    try:
        with _OwnTime() as clock:
            # only statements ({% for %} …) can run long without output; expressions are bounded by the
            # limits above, so the timer (a signal handler and two system calls per row) is spared for them
            timer = _time_limit(clock, MAX_SECONDS) if "{%" in template else nullcontext()
            with timer:
                for chunk in compiled(template).generate(**values):
                    size += len(chunk)
                    if size > MAX_CHARS:
                        raise TemplateRefused(f"more than {MAX_CHARS:,} characters of output")
                    if clock.seconds() > MAX_SECONDS:
                        raise TemplateRefused(f"rendering one row took more than {MAX_SECONDS:g} s of CPU time")
                    chunks.append(chunk)
    except (jinja2.UndefinedError, TemplateRefused):
        raise
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateRefused(f"something task templates may not do ({exc})") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError, MemoryError) as exc:
        raise TemplateRefused(f"an error inside the template ({type(exc).__name__}: {exc})") from None
    return "".join(chunks)
