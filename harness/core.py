"""The experiment core: the one place that runs a sandbox's experiments, whatever the front end.

``harness start`` (:mod:`harness.loop`) and ``harness mcp`` (:mod:`harness.mcp_service`) both go
through an :class:`ExperimentCore`; each keeps only what is its own (asking the agent and backing
off; turning an MCP call into a proposal and phrasing the answer). The core owns:

- **lock and repair**: :meth:`ExperimentCore.holding` takes the sandbox lock and repairs what a
  killed harness left (:func:`harness.reconcile.reconcile`, messages shown, ``rerun`` mode);
- **the gate**: stop (``harness stop``, signals), pause, the deadline, an experiment limit, free
  disk (:meth:`ExperimentCore.wait_to_start`, :meth:`ExperimentCore.check_disk`);
- **baseline and noise runs**: a smoke run before the first baseline (preflight), the baseline, its repeats and the re-measures of the best for drift,
  as the policy schedules them (:meth:`ExperimentCore.run_due`);
- **one experiment**: check once (rails), refuse a ``duplicate``, commit, run, confirm, decide,
  record (:meth:`ExperimentCore.submit`), and run a preempted experiment again once;
- **state** for ``harness status`` and progress events for a display;
- **views** after every row: checkpoints pruned, progress.png and report.html rewritten, MLflow
  (:class:`harness.publish.Publisher`, in a background thread).

Runs happen through the runner's ``measure`` (a subprocess here; a simulated one in
``benchmarks/yield.py``); decisions, branch moves and ledger writes happen here, one at a time.
With several runners (:mod:`harness.runners`) :meth:`ExperimentCore.submit` is called from each
runner's thread with its :class:`harness.runners.Place`; the runner's lock orders the writes.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional

from .agents.base import Proposal, Usage
from .config import HarnessConfig
from .control import Control
from .critical import deferred_signals
from .adopt import imported_rows
from .datacache import ensure_prepared
from .decisions import due_repeat, file_key, ran_before
from .experiment import BASELINE, Checked, ExperimentRunner, check_proposal
from .ledger import ExperimentRecord, Ledger, LedgerError
from .pipeline import recheck
from .preflight import preflight
from .publish import Publisher
from .reconcile import reconcile
from .runners import Place
from .sandbox import Sandbox
from .state import SessionLock, write_state

#: free bytes the sandbox's disk must have before an experiment starts
MIN_FREE_BYTES = 100 * 2**20
#: how often a pause looks at the flag files, seconds
POLL_S = 0.5


class Aborted(KeyboardInterrupt):
    """A stop ``now`` (second signal, ``harness stop --now``, the MCP server shutting down): the
    run in flight is killed and recorded as ``interrupted``, then the session ends."""


class Events:
    """What the core tells a front end while it works; this base ignores everything.
    :class:`harness.display.Display` implements the same methods for the terminal."""

    def experiment_started(self, n: int, description: str, best: Optional[float], deadline: Optional[float]) -> None:
        """Experiment ``n`` (or its proposal phase) begins."""

    def tick(self, elapsed_s: float) -> None:
        """The run in flight has run ``elapsed_s`` seconds (wall clock)."""

    def experiment_done(self, record: ExperimentRecord, best: Optional[float]) -> None:
        """A row was recorded; ``best`` is the best's figure now (bits per byte)."""

    def message(self, text: str) -> None:
        """A one-line notice (a repair, a schedule, a decision)."""

    def status(self, text: Optional[str]) -> None:
        """What the session waits for, or None when it works again."""


def needs_baseline(records: list[dict]) -> bool:
    """True until an unmodified baseline has run to the end (an interrupted or preempted one does
    not count)."""
    return not any(r.get("proposal_format") == "baseline" and r["outcome"] not in ("interrupted", "preempted")
                   for r in records)


def time_is_up(deadline: Optional[float], records: list[dict]) -> Optional[str]:
    """Why no new run may start before ``deadline`` (epoch seconds; None: no deadline): it has
    passed, or the time left is shorter than a typical run (the median wall time of the last 5
    that ran). None while another one fits."""
    if deadline is None:
        return None
    left = deadline - time.time()
    walls = [r["wall_s"] for r in records[-5:] if r.get("run_s")]
    expected = statistics.median(walls) if walls else 0.0
    if left <= 0 or left < expected:
        return f"time is up: {max(left, 0):.0f} s left, an experiment takes about {expected:.0f} s"
    return None


class ExperimentCore:
    """The experiment lifecycle of one sandbox (see the module docstring).

    Args:
        path: the sandbox folder.
        cfg: its settings.
        agent_name: recorded in commits and rows.
        events: progress receiver (default: ignore).
        deadline: epoch seconds after which no run starts (None: none).
        max_experiments: rows this core may record (``llm_error`` rows of an outage not counted;
            None: no limit).
        on_interrupted: ``record`` or ``rerun`` an experiment a killed harness left running.
        measure: the runner's run function (see :class:`harness.experiment.ExperimentRunner`);
            a simulated one (benchmarks) also leaves out the preflight and the views, which only
            make sense for real runs.
    """

    def __init__(self, path: Path, cfg: HarnessConfig, agent_name: str, events: Optional[Events] = None,
                 deadline: Optional[float] = None, max_experiments: Optional[int] = None,
                 on_interrupted: str = "record", measure=None):
        self.path = Path(path)
        self.cfg, self.agent_name = cfg, agent_name
        self.events = events or Events()
        self.deadline, self.max_experiments, self.on_interrupted = deadline, max_experiments, on_interrupted
        self.sandbox = Sandbox(self.path, cfg.branch)
        self.ledger = Ledger(self.path)
        self.runner = ExperimentRunner(self.sandbox, self.ledger, cfg, agent_name, measure)
        #: smoke-test train.py before the first baseline (:mod:`harness.preflight`): with the real
        #: subprocess runner only (a simulated ``measure`` has no train.py to test)
        self.smoke_test = measure is None
        self.control = Control(self.path)
        #: set from another thread (the MCP server's shutdown) to stop the run in flight
        self.abort = threading.Event()
        self.started_at = time.time()
        #: rows this core recorded (outage ``llm_error`` rows excluded)
        self.done = 0
        #: True once the proposal given to :meth:`submit` became a commit (reset by each submit)
        self.proposal_committed = False
        self._current: dict = {}
        #: keeps the views up to date after every row (:mod:`harness.publish`), for real runs
        self.publisher = Publisher(self.path, cfg, on_error=self.events.message) if measure is None else None

    # --- lock, repair, gate ----------------------------------------------------------------
    @contextmanager
    def holding(self, clear_flags: bool = False, before_repair=None) -> Iterator[None]:
        """Hold the sandbox lock and repair what a killed harness left (the repair's messages go to
        the events; an interrupted experiment runs again in ``rerun`` mode). ``clear_flags``
        removes old pause/stop flags once the lock is held (a new session means run);
        ``before_repair()`` runs under the lock before the repair (the MCP server takes an agent's
        direct edits of train.py out of the tree there).

        Also prepares the corpus where the runs will look for it when it is not there
        (:func:`harness.datacache.ensure_prepared`: another HOME, a copied sandbox).

        Raises:
            AlreadyRunning: another harness holds the sandbox.
            SandboxError, LedgerError: as :func:`harness.reconcile.reconcile`.
            OSError: the corpus is missing and preparing it failed (the message says what to do).
        """
        with SessionLock(self.path):
            if clear_flags:
                self.control.clear()
            if before_repair:
                before_repair()
            with deferred_signals():
                fixed = reconcile(self.sandbox, self.ledger, self.runner, self.on_interrupted)
            for line in fixed.messages:
                self.events.message(line)
            prepared = ensure_prepared(self.path)
            if prepared:
                self.events.message(prepared)
            if fixed.rerun:
                m = fixed.rerun
                self.begin(m["experiment"], m["description"], "running")
                self._recorded(self.runner.execute(m, self._tick, self._may_confirm))
            try:
                yield
            finally:
                if self.publisher is not None:
                    self.publisher.close()

    def why_not_start(self, records: Optional[list] = None) -> Optional[str]:
        """Why no new run may start now (a stop, the experiment limit counting the experiments of
        several runners in flight, the deadline), or None."""
        stop = self.control.stop()
        if stop or self.abort.is_set():
            return "stopping as asked" + (" (now)" if stop == "now" or self.abort.is_set() else "")
        if self.max_experiments is not None and self.done + len(self.runner.flying) >= self.max_experiments:
            return f"reached --max-experiments {self.max_experiments}"
        return time_is_up(self.deadline, self.ledger.records() if records is None else records)

    def wait_to_start(self) -> Optional[str]:
        """Wait while ``harness pause`` is in force, then return :meth:`why_not_start` (None: go)."""
        shown = False
        while True:
            reason = self.why_not_start()
            if reason or not self.control.paused():
                if shown:
                    self.events.status(None)
                    if not reason:
                        self.events.message("resumed")
                return reason
            if not shown:
                shown = True
                self.events.status("paused: `harness resume` (or removing .harness/pause) continues")
                self.publish("paused")
            time.sleep(POLL_S)

    def check_disk(self, n: int) -> None:
        """Raises:
            LedgerError: less than :data:`MIN_FREE_BYTES` free on the sandbox's disk (nothing of
                experiment ``n`` is written)."""
        free = shutil.disk_usage(self.path).free
        if free < MIN_FREE_BYTES:
            raise LedgerError(
                f"only {free / 2**20:.0f} MiB free on the disk of {self.path}: the harness stops before experiment {n} "
                f"(it needs {MIN_FREE_BYTES / 2**20:.0f} MiB to commit, run and record one safely); nothing of it was "
                "written. Free some space, then start again.")

    # --- runs the core schedules itself ----------------------------------------------------
    def due(self) -> bool:
        """True when :meth:`run_due` would run something (the baseline, a repeat, a re-measure)."""
        records = self.ledger.records()
        return needs_baseline(records) or due_repeat(records, self.cfg.policy) is not None

    def run_due(self, place: Optional[Place] = None) -> list[ExperimentRecord]:
        """Run the baseline, a baseline repeat or a re-measure of the best if one is due (see
        :func:`harness.decisions.due_repeat`); returns the rows written (empty: nothing was due).
        Before the first baseline of a sandbox, a smoke run (:mod:`harness.preflight`).
        ``place``: the device and cores to run with, here in the sandbox (several runners: runner
        0's, so that every run of the session trains on the same share); None: as is.

        Raises:
            PreflightError: the smoke run failed (nothing recorded; a :class:`SandboxError`).
            LedgerError: as :meth:`check_disk`, or a row could not be written.
            KeyboardInterrupt: (:class:`Aborted`) after the run in flight was recorded.
        """
        here = None if place is None else replace(place, path=self.path, index=None)  # on the branch
        records = self.ledger.records()
        due = None if needs_baseline(records) else due_repeat(records, self.cfg.policy)
        if due is None and not needs_baseline(records):
            return []
        n = self.runner.reserve()
        if due is None:
            self.check_disk(n)
            if not records and self.smoke_test:
                self.begin(n, "preflight: a smoke run of train.py", "preflight")
                self.events.message(preflight(self.path, self.cfg, *((here.env, here.cpus) if here else ())))
            return self._run(n, None, {}, time.time(), here)
        self.check_disk(n)
        reason, of, index = due
        self.begin(n, f"re-measure of #{of['experiment']}: {reason}", "running")
        rec = self.runner.repeat(n, of, index, reason, time.time(), self._tick, here)
        if rec.drift:
            d = rec.drift
            self.events.message(f"drift: the best (#{of['experiment']}) re-measured at {d['to']:.6f}, its figure was "
                                f"{d['from']:.6f} ({d['z']:+.1f} noise units); later candidates compare with the "
                                "fresh figure")
        return self._recorded([rec])

    # --- one proposal ----------------------------------------------------------------------
    def files(self) -> dict[str, str]:
        """The editable files of the current best (name -> text)."""
        return self.runner.files_at_head()

    def refuse(self, n: int, proposal: Optional[Proposal], outcome: str, detail: str, started: float,
               usage: Usage, verdicts=(), **fields) -> ExperimentRecord:
        """Record experiment ``n`` that will not run (``llm_error``, a refused edit, ``duplicate``,
        ``stale``); a proposal's diff is kept in ``runs/<n>/proposal.diff``."""
        if proposal is not None:
            self._keep_diff(n, proposal)
        return self._recorded([self.runner.record_refusal(n, proposal, outcome, detail, started, usage, verdicts,
                                                          **fields)])[0]

    def submit(self, proposal: Proposal, started: float, files: Optional[dict] = None,
               checked: Optional[Checked] = None, place: Optional[Place] = None) -> list[ExperimentRecord]:
        """Check (unless ``checked`` is given), refuse a duplicate, commit, run, confirm, decide
        and record ``proposal`` as the next experiment; a preempted run runs once more.
        Thread-safe: with several runners each calls it with its ``place``.

        Args:
            proposal: the agent's edit (its diff against ``files``).
            started: epoch seconds when the proposal was asked for (the row's wall time).
            files: the editable files the diff applies to (default: HEAD's).
            checked: the result of :func:`harness.experiment.check_proposal` when the front end
                checked it already (the MCP tool does, to answer with every reason).
            place: the runner (:mod:`harness.runners`); None: the sandbox itself.
        Returns:
            The rows written: a refusal's, or the experiment's and its confirmations'.
        Raises:
            LedgerError, KeyboardInterrupt: as :meth:`run_due`.
        """
        self.proposal_committed = False
        with self.runner.lock:
            records = self.ledger.records()
            n = self.runner.reserve()
            self.check_disk(n)
            now = self.files()
            files = now if files is None else files
            self._keep_diff(n, proposal)
            if files != now:  # several runners: another experiment was kept since it was checked
                checked, files = recheck(proposal, files, now, self.cfg), now
            checked = checked or check_proposal(proposal, files, self.cfg)
            if checked.files is None:
                return [self.refuse(n, proposal, checked.outcome, checked.detail, started, proposal.usage,
                                    checked.rail_verdicts)]
            key = file_key({**files, **checked.files})
            earlier = ran_before(records, key)
            flying = next((m for m, f in self.runner.flying.items() if f["file_key"] == key), None)
            tried = None if earlier is not None or flying is not None else next(
                (r for r in imported_rows(self.path) if r.get("file_key") == key), None)
            if tried is not None:
                val = f", val_bpb {tried['val_bpb']:.6f}" if isinstance(tried.get("val_bpb"), float) else ""
                return [self.refuse(n, proposal, "duplicate",
                                    f"the edited files equal (comments and formatting aside) those of commit "
                                    f"{tried['commit']} in the adopted checkout's results.tsv ({tried.get('status')}{val}: "
                                    f"{tried.get('description', '')}); nothing was trained. Propose something not tried yet.",
                                    started, proposal.usage, file_key=key)]
            if earlier is not None or flying is not None:
                if earlier is None:
                    what = f"experiment {flying} is running now"
                else:
                    val = f", val_bpb {earlier['val_bpb']:.6f}" if earlier.get("val_bpb") is not None else ""
                    what = f"experiment {earlier['experiment']} ran ({earlier['outcome']}{val})"
                return [self.refuse(n, proposal, "duplicate",
                                    f"the edited files equal (comments and formatting aside) those {what}; nothing "
                                    "was trained. Propose something not tried yet.", started, proposal.usage,
                                    file_key=key)]
        return self._run(n, proposal, checked.files, started, place)

    def _keep_diff(self, n: int, proposal: Proposal) -> None:
        run_dir = self.runner.run_dir(n)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "proposal.diff").write_text(proposal.diff, encoding="utf-8")

    def _run(self, n: int, proposal: Optional[Proposal], files: dict, started: float,
             place: Optional[Place] = None) -> list[ExperimentRecord]:
        """Run a checked experiment; a preempted run (killed from outside, not an OOM) is recorded
        and then run once more as the next experiment (``retry_of`` names it). With several
        runners, a candidate that beat the best it started from while another became the best
        runs again on the new best (:mod:`harness.runners`)."""
        self.begin(n, proposal.description if proposal else BASELINE, "running")
        on_commit = self._proposal_running if proposal else self._running
        tick = self._tick if place is None or not place.index else self._check_abort
        rows = self._recorded(self.runner.run(n, proposal, files, started, tick, on_commit,
                                              may_confirm=self._may_confirm, place=place))
        if self.control.stop() or self.abort.is_set():
            return rows
        if (rows[0].decision or {}).get("moved_to") and proposal is not None:
            self.events.message(f"experiment {n} beat the best it started from but another experiment became the "
                                "best while it ran; its edit runs again on the new best")
            return rows + self.submit(self._again(n, proposal, rows[0].commit), time.time(), place=place)
        if rows[0].outcome != "preempted":
            return rows
        retry = None if proposal is None else replace(
            proposal, description=f"{proposal.description} (retry of #{n}, preempted)", usage=Usage())
        n2 = self.runner.reserve()
        self.events.message(f"experiment {n} was killed from outside (preempted); running it again as {n2}")
        self.begin(n2, retry.description if retry else BASELINE, "running")
        return rows + self._recorded(self.runner.run(n2, retry, files, time.time(), tick, on_commit,
                                                     retry_of=n, may_confirm=self._may_confirm, place=place))

    def _again(self, n: int, proposal: Proposal, commit: str) -> Proposal:
        """Experiment ``n``'s edit (its ``commit``) for a run on the new best: a three-way merge of
        its commit into the best (so an edit near the kept one's still lands), as a diff against
        the best; when they conflict, its own diff (which the check then refuses, saying why)."""
        from .patch import make_unified_diff, merge_files

        desc = f"{proposal.description} (again, on the new best: #{n} beat the best it started from)"
        with self.runner.lock:
            best = self.files()
            names = list(best)
            parent = self.sandbox.repo.commit(commit).parents[0].hexsha
            merged = merge_files({f: self.sandbox.read(f, parent) for f in names}, best,
                                 {f: self.sandbox.read(f, commit) for f in names})
        if merged is None:
            return replace(proposal, description=desc, usage=Usage())
        diff = "".join(make_unified_diff(best[f], merged[f], f) for f in best if merged[f] != best[f])
        return replace(proposal, description=desc, diff=diff, usage=Usage())

    def _may_confirm(self, n: int) -> bool:
        """Confirmation run ``n`` may start: no stop ``now`` and the deadline leaves room for it."""
        if self.control.stop() == "now" or self.abort.is_set():
            return False
        if time_is_up(self.deadline, self.ledger.records()):
            self.events.message("the deadline leaves no room for a confirmation run: the candidate is decided on "
                                "the runs it has")
            return False
        self.begin(n, f"confirmation run (#{n})", "running")
        return True

    # --- state and events ------------------------------------------------------------------
    def _recorded(self, rows: list[ExperimentRecord]) -> list[ExperimentRecord]:
        with self.runner.lock:
            best = self.ledger.best()[0]
            for rec in rows:
                if not rec.llm_down:
                    self.done += 1
                self.events.experiment_done(rec, best)
            if self.publisher is not None:
                self.publisher.recorded()
        return rows

    def _tick(self, elapsed_s: float) -> None:
        self.events.tick(elapsed_s)
        self._check_abort(elapsed_s)

    def _check_abort(self, elapsed_s: float) -> None:
        """The tick of a run the display does not follow (runners after the first)."""
        if self.control.stop() == "now" or self.abort.is_set():
            raise Aborted

    def begin(self, n: int, description: str, phase: str) -> None:
        """Announce experiment ``n`` in ``phase`` (``proposing`` while the agent thinks, ``running``)."""
        self._current = {"experiment": n, "description": description}
        self.events.experiment_started(n, description, self.ledger.best()[0], self.deadline)
        self.publish(phase, **self._current)

    def _proposal_running(self, commit: str) -> None:
        self.proposal_committed = True
        self._running(commit)

    def _running(self, commit: str) -> None:
        self.publish("running", commit=commit, run_started_at=time.time(), **self._current)

    def publish(self, phase: str, **extra) -> None:
        """Write ``.harness/state.json`` for ``harness status`` (phase, best, limits, ``extra``;
        with several runners also ``in_flight``: the numbers running)."""
        with self.runner.lock:
            best, _ = self.ledger.best()
            if self.runner.flying:
                extra["in_flight"] = sorted(self.runner.flying)
            write_state(self.path, phase=phase, session_started_at=self.started_at, deadline=self.deadline,
                        agent=self.agent_name, best_val_bpb=best, time_budget_s=self.cfg.time_budget_s,
                        experiments_this_session=self.done, **extra)
