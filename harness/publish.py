"""What happens after every ledger row, off the experiment's path: prune checkpoints, rewrite
progress.png and report.html, log to MLflow.

The core calls :meth:`Publisher.recorded` after it wrote rows. Pruning (a few ``unlink`` calls) runs
at once; the views and MLflow run in one background thread, so a slow disk or tracking server never
delays the next experiment: a request while the thread works marks the views stale and the thread
goes round once more. :meth:`Publisher.close` waits (bounded) for the last round at the end of a
session. A failure is reported once through ``on_error`` and never stops the session: the ledger is
the record, these are views of it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .config import HarnessConfig

#: the files the views write in the sandbox (and their temporary files), never committed
VIEW_PATTERNS = ("progress.png", "report.html", ".progress.png.*", ".report.html.*")


class Publisher:
    """Keeps the views of one sandbox up to date.

    Args:
        sandbox: the sandbox folder.
        cfg: its settings (``checkpoints``, ``usd_per_kwh``, ``mlflow_uri``).
        on_error: called with a one-line message when a view or MLflow fails (default: ignore).
    """

    def __init__(self, sandbox: Path, cfg: HarnessConfig, on_error: Optional[Callable[[str], None]] = None):
        self.sandbox, self.cfg = Path(sandbox), cfg
        self.on_error = on_error or (lambda text: None)
        self._wake = threading.Condition()
        self._stale = False
        self._closing = False
        self._thread: Optional[threading.Thread] = None
        self._reported: set[str] = set()
        #: seconds each background round took (views and MLflow), newest last
        self.round_s: list[float] = []

    def _ignore_views(self) -> None:
        """Keep git from seeing the views as untracked files in a sandbox whose .gitignore predates
        them (``.git/info/exclude``: local, never committed)."""
        exclude = self.sandbox / ".git" / "info" / "exclude"
        try:
            text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
            missing = [p for p in VIEW_PATTERNS if p not in text.splitlines()]
            if missing:
                exclude.parent.mkdir(parents=True, exist_ok=True)
                exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + "\n".join(missing) + "\n",
                                   encoding="utf-8")
        except OSError as exc:
            self._report(f"cannot add the views to .git/info/exclude: {exc}")

    def recorded(self) -> None:
        """Rows were written: prune checkpoints now, refresh the views and MLflow in the background."""
        from .checkpoints import prune
        from .ledger import Ledger

        try:
            prune(self.sandbox, Ledger(self.sandbox).records(), self.cfg.checkpoints)
        except OSError as exc:
            self._report(f"checkpoints not pruned: {exc}")
        with self._wake:
            self._stale = True
            if self._thread is None:
                self._ignore_views()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="harness-views", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._stale and not self._closing:
                    self._wake.wait()
                if not self._stale:
                    return
                self._stale = False
            t0 = time.perf_counter()
            self.refresh()
            self.round_s.append(time.perf_counter() - t0)

    def refresh(self) -> None:
        """Rewrite progress.png and report.html and log new rows to MLflow, now, in this thread."""
        from .webreport import build

        try:
            build(self.sandbox, self.cfg.usd_per_kwh, self.cfg.checkpoints)
        except Exception as exc:  # a view must never end the night
            self._report(f"report.html/progress.png not written: {type(exc).__name__}: {exc}")
        if self.cfg.mlflow_uri:
            from .tracking import TrackingError, log_new_rows

            try:
                log_new_rows(self.sandbox, self.cfg.mlflow_uri)
            except TrackingError as exc:
                self._report(str(exc))

    def _report(self, text: str) -> None:
        if text not in self._reported:
            self._reported.add(text)
            self.on_error(text)

    def close(self, timeout_s: float = 30.0) -> None:
        """Let the background thread finish its last round (at most ``timeout_s`` seconds)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
