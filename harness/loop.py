"""The research loop of ``harness start``: repair, baseline first, then propose -> experiment, until
the deadline, the experiment limit, the agent's end, or a stop.

The loop keeps no state of its own between experiments: the next number, the best val_bpb and the
history come from the ledger and git each time, so a restarted harness continues where the last
one stopped (after :func:`harness.reconcile.reconcile` has repaired what a kill left). Between
experiments it honours pause and stop (:mod:`harness.control`); a proposal that fails because the
LLM endpoint is unavailable is recorded (``llm_error``, ``llm_down``) and waited out with backoff.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from .agents.base import Agent, AgentError, AgentExhausted, Context, Proposal, Usage
from .agents.chat import EndpointDown
from .config import HarnessConfig
from .control import Control
from .critical import deferred_signals
from .experiment import BASELINE, ExperimentRunner, check_proposal
from .ledger import ExperimentRecord, Ledger, LedgerError, best_kept, next_number
from .reconcile import reconcile
from .sandbox import Sandbox
from .state import SessionLock, write_state

#: consecutive ``llm_error`` experiments (outages aside) after which a session stops instead of spinning
MAX_AGENT_FAILURES = 5
#: free bytes the sandbox's disk must have before an experiment starts
MIN_FREE_BYTES = 100 * 2**20
#: waits after a proposal failed on an unavailable endpoint: the first and the longest, seconds
OUTAGE_BACKOFF_S = (15.0, 600.0)
#: how often a pause or an outage wait looks at the flag files, seconds
POLL_S = 0.5


@dataclass(frozen=True)
class Limits:
    """When a session ends: ``deadline`` (epoch seconds) and/or ``max_experiments`` (this session)."""

    deadline: Optional[float] = None
    max_experiments: Optional[int] = None


def needs_baseline(records: list[dict]) -> bool:
    """True until an unmodified baseline has run to the end (an interrupted or preempted one does
    not count).
    The built-in loop and the MCP server both run it before the first proposal."""
    return not any(r.get("proposal_format") == "baseline" and r["outcome"] not in ("interrupted", "preempted")
                   for r in records)


def time_is_up(deadline: Optional[float], records: list[dict]) -> Optional[str]:
    """Why no new experiment may start before ``deadline`` (epoch seconds; None: no deadline): it
    has passed, or the time left is shorter than a typical experiment (the median wall time of
    the last 5 that ran). None while another one fits."""
    if deadline is None:
        return None
    left = deadline - time.time()
    walls = [r["wall_s"] for r in records[-5:] if r.get("run_s")]
    expected = statistics.median(walls) if walls else 0.0
    if left <= 0 or left < expected:
        return f"time is up: {max(left, 0):.0f} s left, an experiment takes about {expected:.0f} s"
    return None


def read_text(path: Path) -> str:
    """File text, or an empty string when the file does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


class Aborted(KeyboardInterrupt):
    """A stop ``now`` (second signal, ``harness stop --now``): the run in flight is killed and
    recorded as ``interrupted``, then the session ends."""


class Session:
    """One ``harness start``: holds the sandbox lock, repairs what an earlier harness left, and
    runs experiments until a limit, a stop or the agent's end.

    Args:
        path: the sandbox folder.
        cfg: its settings.
        agent: proposes experiments after the baseline.
        display: receives progress events (see :mod:`harness.display`).
        limits: when to stop.
        on_interrupted: ``record`` or ``rerun`` an experiment a killed harness left running.
    """

    def __init__(self, path: Path, cfg: HarnessConfig, agent: Agent, display, limits: Limits,
                 on_interrupted: str = "record"):
        self.path = Path(path)
        self.cfg, self.agent, self.display, self.limits = cfg, agent, display, limits
        self.on_interrupted = on_interrupted
        self.sandbox = Sandbox(self.path, cfg.branch)
        self.ledger = Ledger(self.path)
        self.runner = ExperimentRunner(self.sandbox, self.ledger, cfg, agent.name)
        self.control = Control(self.path)
        self.started_at = time.time()
        self.done = 0
        self.stopped: Optional[str] = None  # why the session stopped early on request

    def run(self) -> int:
        """Run until a limit is reached; return the number of experiments recorded this session
        (``llm_error`` rows of an endpoint outage not counted).

        Raises:
            AlreadyRunning: another harness holds the sandbox.
            SandboxError: the tree has uncommitted changes to tracked files or the branch is missing.
            LedgerError: the ledger could not be written, or the disk is (nearly) full; git and
                the ledger are consistent (the next start completes a row left in the marker).
            KeyboardInterrupt: after the experiment in flight was recorded as ``interrupted``
                (:class:`Aborted` for a stop ``now``).
        """
        with SessionLock(self.path):
            self.control.clear()
            with deferred_signals():
                fixed = reconcile(self.sandbox, self.ledger, self.runner, self.on_interrupted)
            for line in fixed.messages:
                self.display.message(line)
            if fixed.rerun:
                m = fixed.rerun
                self._begin(m["experiment"], m["description"], "running")
                self._recorded(self.runner.execute(m, self._tick))
            while self._may_start_another():
                try:
                    self.step()
                except AgentExhausted as exc:
                    self.display.message(f"the agent has nothing more to propose: {exc}")
                    break
                failures = self._agent_failures_in_a_row()
                if failures >= MAX_AGENT_FAILURES:
                    self.display.message(
                        f"stopping: the agent failed {failures} times in a row (last: "
                        f"{self.ledger.records()[-1]['detail'][:200]}); fix the cause and `harness start` again")
                    break
            self.control.clear()
            self._state("finished")
        return self.done

    def step(self) -> None:
        """Run one experiment: the baseline if the ledger is empty, else the agent's proposal.

        Raises:
            LedgerError: less than :data:`MIN_FREE_BYTES` free on the sandbox's disk (nothing is
                written), or a row could not be written.
        """
        records = self.ledger.records()  # nothing writes the ledger before the proposal is recorded
        n = next_number(records)
        self._check_disk(n)
        started = time.time()
        files = {f: self.sandbox.read(f) for f in self.cfg.editable_files}
        if needs_baseline(records):
            self._run(n, None, {}, started)
            return
        self._begin(n, "asking the agent for a proposal", "proposing")
        best, _ = best_kept(records)
        context = Context(experiment=n, program=read_text(self.path / "program.md"), files=files,
                          history=records, best_val_bpb=best,
                          notes=read_text(self.path / "notes.md"), sandbox=self.path)
        try:
            proposal = self.agent.propose(context)
        except EndpointDown as exc:
            self._recorded(self.runner.record_refusal(n, None, "llm_error", str(exc), started, exc.usage,
                                                      llm_down=True))
            self._wait_for_endpoint(str(exc))
            return
        except AgentError as exc:
            self._recorded(self.runner.record_refusal(n, None, "llm_error", str(exc), started, exc.usage))
            return
        if self.control.stop() == "now":
            return  # asked to stop at once while the agent was thinking: nothing ran, nothing to record
        run_dir = self.runner.run_dir(n)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "proposal.diff").write_text(proposal.diff, encoding="utf-8")
        checked = check_proposal(proposal, files, self.cfg)
        if checked.files is None:
            self._recorded(self.runner.record_refusal(n, proposal, checked.outcome, checked.detail, started,
                                                      proposal.usage, checked.rail_verdicts))
        else:
            self._run(n, proposal, checked.files, started)

    def _run(self, n: int, proposal: Optional[Proposal], files: dict, started: float) -> None:
        """Run a checked experiment; a preempted run (killed from outside, not an OOM) is
        recorded and then run once more as the next experiment (``retry_of`` names it)."""
        self._begin(n, proposal.description if proposal else BASELINE, "running")
        rec = self._recorded(self.runner.run(n, proposal, files, started, self._tick, self._running))
        if rec.outcome != "preempted" or self.control.stop():
            return
        retry = None if proposal is None else replace(
            proposal, description=f"{proposal.description} (retry of #{n}, preempted)", usage=Usage())
        n2 = self.ledger.next_experiment()
        self.display.message(f"experiment {n} was killed from outside (preempted); running it again as {n2}")
        self._begin(n2, retry.description if retry else BASELINE, "running")
        self._recorded(self.runner.run(n2, retry, files, time.time(), self._tick, self._running, retry_of=n))

    def _recorded(self, rec: ExperimentRecord) -> ExperimentRecord:
        if not rec.llm_down:
            self.done += 1
        self.display.experiment_done(rec, self.ledger.best()[0])
        return rec

    def _agent_failures_in_a_row(self) -> int:
        count = 0
        for rec in reversed(self.ledger.records()):
            if rec.get("llm_down"):
                continue  # an outage is waited out, not counted as the agent failing
            if rec["outcome"] != "llm_error":
                break
            count += 1
        return count

    def _check_disk(self, n: int) -> None:
        free = shutil.disk_usage(self.path).free
        if free < MIN_FREE_BYTES:
            raise LedgerError(
                f"only {free / 2**20:.0f} MiB free on the disk of {self.path}: the harness stops before experiment {n} "
                f"(it needs {MIN_FREE_BYTES / 2**20:.0f} MiB to commit, run and record one safely); nothing of it was "
                "written. Free some space, then `harness start` again.")

    # --- waiting: pause, LLM outages -------------------------------------------------------
    def _may_start_another(self) -> bool:
        lim = self.limits
        shown = False
        while True:
            stop = self.control.stop()
            if stop:
                self.stopped = stop
                self.display.message("stopping as asked" + (" (now)" if stop == "now" else ""))
                return False
            if lim.max_experiments is not None and self.done >= lim.max_experiments:
                self.display.message(f"reached --max-experiments {lim.max_experiments}")
                return False
            reason = time_is_up(lim.deadline, self.ledger.records())
            if reason:
                self.display.message(reason)
                return False
            if not self.control.paused():
                if shown:
                    self.display.status(None)
                    self.display.message("resumed")
                return True
            if not shown:
                shown = True
                self.display.status("paused: `harness resume` (or removing .harness/pause) continues")
                self._state("paused")
            time.sleep(POLL_S)

    def _wait_for_endpoint(self, why: str) -> None:
        """Back off after a failed proposal of an unavailable endpoint: 15 s, 30 s, 60 s ... at
        most 10 min, never past the deadline; a stop ends the wait."""
        down = 0
        for rec in reversed(self.ledger.records()):
            if not rec.get("llm_down"):
                break
            down += 1
        first, longest = OUTAGE_BACKOFF_S
        wait_s = min(longest, first * 2 ** max(down - 1, 0))
        until = time.time() + wait_s
        if self.limits.deadline is not None:
            until = min(until, self.limits.deadline)
        self.display.status(f"LLM endpoint unavailable ({down} failed tr{'y' if down == 1 else 'ies'}); next try "
                            f"at {time.strftime('%H:%M:%S', time.localtime(until))}")
        self._state("waiting_for_llm", retry_at=until, detail=why[:300])
        while time.time() < until and not self.control.stop():
            time.sleep(min(POLL_S, max(until - time.time(), 0)))
        self.display.status(None)

    # --- state and display -----------------------------------------------------------------
    def _tick(self, elapsed_s: float) -> None:
        self.display.tick(elapsed_s)
        if self.control.stop() == "now":
            raise Aborted

    def _begin(self, n: int, description: str, phase: str) -> None:
        self._current = {"experiment": n, "description": description}
        self.display.experiment_started(n, description, self.ledger.best()[0], self.limits.deadline)
        self._state(phase, **self._current)

    def _running(self, commit: str) -> None:
        self._state("running", commit=commit, run_started_at=time.time(), **self._current)

    def _state(self, phase: str, **extra) -> None:
        best, _ = self.ledger.best()
        write_state(self.path, phase=phase, session_started_at=self.started_at, deadline=self.limits.deadline,
                    agent=self.agent.name, best_val_bpb=best, time_budget_s=self.cfg.time_budget_s,
                    experiments_this_session=self.done, **extra)


def run_until(session: Session) -> int:
    """Run ``session`` with SIGINT and SIGTERM meaning stop: the first lets the experiment in
    flight finish and then ends the session; a second aborts it (:class:`Aborted`, the run
    recorded as ``interrupted``). Returns the experiments recorded."""
    import signal

    def on_signal(signum, frame):
        if session.control.on_signal() == "now":
            raise Aborted
        session.display.message("stopping after the experiment in flight; send the signal again (Ctrl-C) to abort "
                                "it now")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return session.run()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
