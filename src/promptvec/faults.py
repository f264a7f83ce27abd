"""Deterministic fault points, so tests can kill a real process at an exact place.

``PROMPTVEC_FAULT=<point>[@<n>]`` makes the process kill itself with SIGKILL (no cleanup, no
``finally``, like a power cut or the OOM killer) the n-th time (default: the first) it reaches the
named point. Without the variable a fault point is one dictionary lookup. The points:

=================================  ==========================================================
``train.step``                     after an optimizer step and its checkpoint (the step is done)
``atomic-directory.before-swap``   a folder write (checkpoint, prompt) complete in its temp folder
``atomic-directory.mid-swap``      between the two renames that swap a folder into place
``atomic-write.before-rename``     a file written and fsynced under its temporary name
``suite.run``                      a suite run finished and recorded
``store.remove.between``           a store entry's file removed, its index row not yet
=================================  ==========================================================
"""

from __future__ import annotations

import os
import signal
from collections import Counter

FAULT_ENV = "PROMPTVEC_FAULT"
_reached: Counter[str] = Counter()


def fault_point(name: str) -> None:
    """Kill this process here if ``PROMPTVEC_FAULT`` names this point (and this is its n-th time)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
