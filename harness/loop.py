"""The research loop of ``harness start``: baseline first, then propose -> experiment, until the
deadline, the experiment limit, the agent's end, or Ctrl-C.

The loop keeps no state of its own between experiments: the next number, the best val_bpb and the
history come from the ledger and git each time, so a restarted harness continues where the last
one stopped.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .agents.base import Agent, AgentError, AgentExhausted, Context, Usage
from .config import HarnessConfig
from .critical import deferred_signals
from .experiment import BASELINE, ExperimentRunner, check_proposal
from .ledger import Ledger
from .sandbox import Sandbox, parse_trailers
from .state import SessionLock, write_state


#: consecutive ``llm_error`` experiments after which a session stops instead of spinning
MAX_AGENT_FAILURES = 5


@dataclass(frozen=True)
class Limits:
    """When a session ends: ``deadline`` (epoch seconds) and/or ``max_experiments`` (this session)."""

    deadline: Optional[float] = None
    max_experiments: Optional[int] = None


def recover(sandbox: Sandbox, ledger: Ledger, runner: ExperimentRunner) -> Optional[int]:
    """Repair the state a killed harness left: a HEAD commit still marked ``Status: running`` is an
    experiment that never finished; it is recorded as ``interrupted``, kept under the discarded
    refs, and the tree is reset to its parent. Returns that experiment's number, or None."""
    trailers = parse_trailers(sandbox.head_message())
    if trailers.get("Status") != "running":
        sandbox.reset_hard("HEAD")  # drop any half-written edit of a tracked file
        return None
    n = int(trailers.get("Experiment", ledger.next_experiment()))
    parent = sandbox.repo.head.commit.parents[0].hexsha
    desc = sandbox.head_message().split("\n", 1)[0]
    best, _ = ledger.best()
    commit = runner.finish(n, parent, desc, "interrupted", None, best)
    if all(r["experiment"] != n for r in ledger.records()):
        ledger.append(runner.make_record(n, "interrupted", desc, time.time(), Usage(), commit=commit, parent=parent,
                                     parent_val_bpb=best, detail="the harness was killed during this experiment"))
    return n


def needs_baseline(records: list[dict]) -> bool:
    """True until an unmodified baseline has run to the end (an interrupted one does not count).
    The built-in loop and the MCP server both run it before the first proposal."""
    return not any(r.get("proposal_format") == "baseline" and r["outcome"] != "interrupted" for r in records)


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


class Session:
    """One ``harness start``: holds the sandbox lock and runs experiments.

    Args:
        path: the sandbox folder.
        cfg: its settings.
        agent: proposes experiments after the baseline.
        display: receives progress events (see :mod:`harness.display`).
        limits: when to stop.
    """

    def __init__(self, path: Path, cfg: HarnessConfig, agent: Agent, display, limits: Limits):
        self.path = Path(path)
        self.cfg, self.agent, self.display, self.limits = cfg, agent, display, limits
        self.sandbox = Sandbox(self.path, cfg.branch)
        self.ledger = Ledger(self.path)
        self.runner = ExperimentRunner(self.sandbox, self.ledger, cfg, agent.name)
        self.started_at = time.time()
        self.done = 0

    def run(self) -> int:
        """Run until a limit is reached; return the number of experiments recorded this session.

        Raises:
            AlreadyRunning: another harness holds the sandbox.
            SandboxError: the tree has uncommitted changes to tracked files or the branch is missing.
            LedgerError: the ledger could not be written.
            KeyboardInterrupt: after the experiment in flight was recorded as ``interrupted``.
        """
        with SessionLock(self.path):
            self.sandbox.ensure_on_branch()
            with deferred_signals():
                n = recover(self.sandbox, self.ledger, self.runner)
            if n is not None:
                self.display.message(f"experiment {n} was interrupted by an earlier stop; recorded, tree reset")
            while self._may_start_another():
                try:
                    self.step()
                except AgentExhausted as exc:
                    self.display.message(f"the agent has nothing more to propose: {exc}")
                    break
                self.done += 1
                failures = self._agent_failures_in_a_row()
                if failures >= MAX_AGENT_FAILURES:
                    self.display.message(
                        f"stopping: the agent failed {failures} times in a row (last: "
                        f"{self.ledger.records()[-1]['detail'][:200]}); fix the cause and `harness start` again")
                    break
            self._state("finished")
        return self.done

    def step(self) -> None:
        """Run one experiment: the baseline if the ledger is empty, else the agent's proposal."""
        n = self.ledger.next_experiment()
        started = time.time()
        files = {f: self.sandbox.read(f) for f in self.cfg.editable_files}
        if self._needs_baseline():
            self._begin(n, BASELINE, "running")
            rec = self.runner.run(n, None, {}, started, self.display.tick, self._running)
            self.display.experiment_done(rec, self.ledger.best()[0])
            return
        self._begin(n, "asking the agent for a proposal", "proposing")
        best, _ = self.ledger.best()
        context = Context(experiment=n, program=read_text(self.path / "program.md"), files=files,
                          history=self.ledger.records(), best_val_bpb=best,
                          notes=read_text(self.path / "notes.md"), sandbox=self.path)
        try:
            proposal = self.agent.propose(context)
        except AgentError as exc:
            rec = self.runner.record_refusal(n, None, "llm_error", str(exc), started, exc.usage)
            self.display.experiment_done(rec, best)
            return
        run_dir = self.runner.run_dir(n)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "proposal.diff").write_text(proposal.diff, encoding="utf-8")
        checked = check_proposal(proposal, files, self.cfg)
        if checked.files is None:
            rec = self.runner.record_refusal(n, proposal, checked.outcome, checked.detail, started,
                                             proposal.usage, checked.rail_verdicts)
        else:
            self._begin(n, proposal.description, "running")
            rec = self.runner.run(n, proposal, checked.files, started, self.display.tick, self._running)
        self.display.experiment_done(rec, self.ledger.best()[0])

    def _agent_failures_in_a_row(self) -> int:
        count = 0
        for rec in reversed(self.ledger.records()):
            if rec["outcome"] != "llm_error":
                break
            count += 1
        return count

    def _needs_baseline(self) -> bool:
        return needs_baseline(self.ledger.records())

    # --- limits, state and display -------------------------------------------------------------
    def _may_start_another(self) -> bool:
        lim = self.limits
        if lim.max_experiments is not None and self.done >= lim.max_experiments:
            self.display.message(f"reached --max-experiments {lim.max_experiments}")
            return False
        reason = time_is_up(lim.deadline, self.ledger.records())
        if reason:
            self.display.message(reason)
            return False
        return True

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
    """Run ``session`` and turn Ctrl-C/SIGTERM into a clean stop; returns experiments recorded."""
    import signal

    def _term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _term)
    try:
        return session.run()
    finally:
        signal.signal(signal.SIGTERM, old)
