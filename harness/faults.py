"""Named points where the fault-injection tests kill the harness with SIGKILL.

``HARNESS_KILL_AT=NAME`` kills the process the first time it passes point NAME;
``HARNESS_KILL_AT=NAME:K`` the K-th time. Unset (always, outside tests), :func:`point` only reads
an environment variable. The points, in the order one experiment passes them, are listed in
:mod:`harness.experiment`'s docstring.
"""

from __future__ import annotations

import os
import signal

ENV = "HARNESS_KILL_AT"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Die here with SIGKILL when ``$HARNESS_KILL_AT`` names this point (and its count is reached)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
