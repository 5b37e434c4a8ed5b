"""What the user sees while ``harness start`` works: a live rich panel on a terminal, plain
timestamped lines elsewhere (a log file, nohup, CI).

The panel shows the current experiment, a progress bar over the time budget, the best val_bpb so
far, the last outcome, the time left in the run, and what the session waits for when it waits
(paused, an LLM outage).
"""

from __future__ import annotations

import time
from typing import Optional

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def _hms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "no deadline"
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _bpb(val) -> str:
    return "-" if val is None else f"{val:.6f}"


class Display:
    """Progress events of a session, rendered live on a terminal or as plain lines otherwise.

    Args:
        time_budget_s: training seconds per experiment (the progress bar's length).
        hard_limit_s: seconds after which a run is killed (the bar may run past the budget
            during evaluation).
        console: where to print (a fresh :class:`rich.console.Console` by default).
    """

    def __init__(self, time_budget_s: float, hard_limit_s: float, console: Console | None = None):
        self.console = console or Console()
        self.budget, self.limit = time_budget_s, hard_limit_s
        self.live_mode = self.console.is_terminal
        self.n, self.description, self.best, self.deadline, self.last = None, "", None, None, "-"
        self.waiting: Optional[str] = None
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                 TextColumn("of {task.total:.0f} s budget"), console=self.console)
        self.task = self.progress.add_task("waiting", total=time_budget_s)
        self.live: Live | None = None

    def __enter__(self):
        if self.live_mode:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.update(self._render())
            self.live.__exit__(*exc)
            self.live = None

    # --- events ------------------------------------------------------------------------------
    def experiment_started(self, n: int, description: str, best: Optional[float], deadline: Optional[float]) -> None:
        """A new experiment (or its proposal phase) begins."""
        self.n, self.description, self.best, self.deadline = n, description, best, deadline
        self.progress.reset(self.task, total=self.budget, description="starting")
        if self.live:
            self.live.update(self._render())
        else:
            self.console.log(f"experiment {n}: {description}")

    def tick(self, elapsed_s: float) -> None:
        """The running experiment has run ``elapsed_s`` seconds (wall clock)."""
        phase = "training" if elapsed_s <= self.budget else "evaluating"
        self.progress.update(self.task, completed=min(elapsed_s, self.budget), description=phase)
        if self.live:
            self.live.update(self._render())

    def experiment_done(self, record, best: Optional[float]) -> None:
        """An experiment was recorded (``record`` is a :class:`harness.ledger.ExperimentRecord`)."""
        self.best = best
        self.last = f"#{record.experiment} {record.outcome} ({_bpb(record.val_bpb)})"
        line = (f"experiment {record.experiment}: {record.status:<7} {record.outcome:<13} "
                f"val_bpb={_bpb(record.val_bpb)} best={_bpb(best)} {record.wall_s:.0f}s  {record.description}")
        if record.detail and record.status == "crash":
            line += f"\n    why: {record.detail[:300]}"
        self.console.log(line)
        if self.live:
            self.live.update(self._render())

    def message(self, text: str) -> None:
        """A one-line notice."""
        self.console.log(text)

    def status(self, text: Optional[str]) -> None:
        """Show what the session waits for (``paused ...``, an LLM outage), or None when it works
        again; each new text is also logged once."""
        if text and text != self.waiting:
            self.console.log(text)
        self.waiting = text
        if self.live:
            self.live.update(self._render())

    # --- rendering ---------------------------------------------------------------------------
    def _render(self):
        table = Table.grid(padding=(0, 2))
        table.add_row("experiment", f"{self.n if self.n is not None else '-'}  {self.description}")
        table.add_row("best val_bpb", _bpb(self.best))
        table.add_row("last outcome", self.last)
        left = None if self.deadline is None else self.deadline - time.time()
        table.add_row("time left", _hms(left))
        if self.waiting:
            table.add_row("waiting", f"[yellow]{self.waiting}[/]")
        return Panel(Group(table, self.progress), title="autoresearch-harness", expand=False)
