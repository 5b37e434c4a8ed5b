"""Live state of a running harness, for ``harness status`` in another terminal, and the
one-harness-per-sandbox lock.

``.harness/state.json`` is rewritten atomically (temp file, fsync, ``os.replace``) at each phase
change; ``.harness/harness.lock`` is a :mod:`filelock` lock held for the whole session (an OS lock,
so a dead process's lock is released by the kernel and a stale one is simply taken over).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from filelock import FileLock, Timeout

STATE_DIR = ".harness"


class AlreadyRunning(Exception):
    """Another harness holds this sandbox; the message names its pid and start time."""


def write_state(sandbox: Path, **state) -> None:
    """Atomically replace ``.harness/state.json`` with ``state`` (plus ``pid`` and ``updated_at``)."""
    d = Path(sandbox) / STATE_DIR
    d.mkdir(exist_ok=True)
    tmp = d / f"state.json.{os.getpid()}.tmp"
    payload = {"pid": os.getpid(), "updated_at": time.time(), **state}
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, d / "state.json")


def read_state(sandbox: Path) -> dict:
    """The last written state, or ``{}``; ``alive`` says whether its pid still runs."""
    try:
        state = json.loads((Path(sandbox) / STATE_DIR / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    state["alive"] = pid_alive(state.get("pid"))
    return state


def is_running(state: dict) -> bool:
    """True when ``state`` (from :func:`read_state`) is of a live harness that has not finished."""
    return bool(state.get("alive")) and state.get("phase") != "finished"


def pid_alive(pid) -> bool:
    """True when a process with this pid exists."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SessionLock:
    """Exclusive lock on a sandbox for one ``harness start``.

    Raises:
        AlreadyRunning: on ``__enter__`` when another live process holds it.
    """

    def __init__(self, sandbox: Path):
        self.dir = Path(sandbox) / STATE_DIR
        self.dir.mkdir(exist_ok=True)
        self.lock = FileLock(str(self.dir / "harness.lock"))

    def __enter__(self):
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            owner = read_state(self.dir.parent)
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("session_started_at", 0)))
            raise AlreadyRunning(
                f"another harness is running in {self.dir.parent} (pid {owner.get('pid', '?')}, since {since}); "
                "watch it with `harness status`, or stop it before starting a new one."
            ) from None
        return self

    def __exit__(self, *exc):
        self.lock.release()
