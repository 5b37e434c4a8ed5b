"""Pause, resume and stop a running harness: flag files any user (or script) can write.

- ``.harness/pause`` exists: the harness finishes the experiment in flight, then waits
  (``harness pause``, or ``touch .harness/pause``); removing it resumes (``harness resume``).
- ``.harness/stop`` exists: the harness finishes the experiment in flight, then exits
  (``harness stop``); when the file holds ``now`` it kills the run in flight, records it as
  ``interrupted`` and exits (``harness stop --now``).

SIGINT and SIGTERM are a stop (the first) and a stop ``now`` (the second). ``harness start``
removes both files when it begins: starting means run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .state import STATE_DIR

PAUSE_NAME, STOP_NAME = "pause", "stop"


def _flag(sandbox: Path, name: str) -> Path:
    return Path(sandbox) / STATE_DIR / name


def request_pause(sandbox: Path) -> None:
    """Ask the harness of ``sandbox`` to pause after the experiment in flight."""
    path = _flag(sandbox, PAUSE_NAME)
    path.parent.mkdir(exist_ok=True)
    path.touch()


def request_resume(sandbox: Path) -> bool:
    """Let a paused harness go on; False when it was not asked to pause."""
    path = _flag(sandbox, PAUSE_NAME)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def request_stop(sandbox: Path, now: bool = False) -> None:
    """Ask the harness of ``sandbox`` to exit after the experiment in flight (``now``: at once,
    the run in flight recorded as ``interrupted``)."""
    path = _flag(sandbox, STOP_NAME)
    path.parent.mkdir(exist_ok=True)
    path.write_text("now\n" if now else "finish\n", encoding="utf-8")


class Control:
    """A session's view of the flag files, plus stops asked by signals.

    Args:
        sandbox: the sandbox folder.
    """

    def __init__(self, sandbox: Path):
        self.sandbox = Path(sandbox)
        self.signalled: Optional[str] = None  # "finish" | "now", set by the signal handler

    def clear(self) -> None:
        """Remove both flag files (a new session starts running)."""
        for name in (PAUSE_NAME, STOP_NAME):
            _flag(self.sandbox, name).unlink(missing_ok=True)

    def paused(self) -> bool:
        """True while ``.harness/pause`` exists."""
        return _flag(self.sandbox, PAUSE_NAME).exists()

    def stop(self) -> Optional[str]:
        """``now``, ``finish`` or None: the strongest stop asked by a signal or ``.harness/stop``."""
        try:
            text = _flag(self.sandbox, STOP_NAME).read_text(encoding="utf-8").strip()
            from_file = "now" if text == "now" else "finish"
        except OSError:
            from_file = None
        asked = {self.signalled, from_file}
        return "now" if "now" in asked else ("finish" if "finish" in asked else None)

    def on_signal(self) -> str:
        """Note a SIGINT/SIGTERM: the first asks ``finish``, a later one ``now``; returns which."""
        self.signalled = "now" if self.signalled else "finish"
        return self.signalled
