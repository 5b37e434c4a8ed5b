"""The research loop of ``harness start``: the front end of the experiment core that asks an agent.

The core (:mod:`harness.core`) repairs, gates, runs the baseline and the noise runs, checks,
commits, runs, decides and records; this loop only asks the agent for the next proposal and backs
off when it fails: a proposal that fails because the LLM endpoint is unavailable is recorded
(``llm_error``, ``llm_down``) and waited out with backoff; five agent failures in a row end the
session. The loop keeps no state of its own between experiments: the next number, the best and
the history come from the ledger and git each time, so a restarted harness continues.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .agents.base import Agent, AgentError, AgentExhausted, Context
from .agents.chat import EndpointDown
from .config import HarnessConfig
from .core import Aborted, ExperimentCore
from .decisions import noise
from .ledger import next_number

#: consecutive ``llm_error`` experiments (outages aside) after which a session stops instead of spinning
MAX_AGENT_FAILURES = 5
#: waits after a proposal failed on an unavailable endpoint: the first and the longest, seconds
OUTAGE_BACKOFF_S = (15.0, 600.0)
#: how often an outage wait looks at the flag files, seconds
POLL_S = 0.5

__all__ = ["Aborted", "Limits", "Session", "run_until"]


@dataclass(frozen=True)
class Limits:
    """When a session ends: ``deadline`` (epoch seconds) and/or ``max_experiments`` (rows recorded
    this session, the core's baseline repeats, confirmations and re-measures included)."""

    deadline: Optional[float] = None
    max_experiments: Optional[int] = None


def read_text(path: Path) -> str:
    """File text, or an empty string when the file does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


class Session:
    """One ``harness start``: the built-in loop's front end of the experiment core
    (:class:`harness.core.ExperimentCore`): it asks the agent for proposals and backs off when
    the agent fails; the core does everything else.

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
        self.core = ExperimentCore(self.path, cfg, agent.name, display, limits.deadline, limits.max_experiments,
                                   on_interrupted)
        self.control = self.core.control
        self.stopped: Optional[str] = None  # why the session stopped early on request

    @property
    def done(self) -> int:
        """Rows recorded this session (``llm_error`` rows of an endpoint outage not counted)."""
        return self.core.done

    def run(self) -> int:
        """Run until a limit is reached; return the number of rows recorded this session
        (``llm_error`` rows of an endpoint outage not counted).

        Raises:
            AlreadyRunning: another harness holds the sandbox.
            SandboxError: the tree has uncommitted changes to tracked files or the branch is missing.
            LedgerError: the ledger could not be written, or the disk is (nearly) full; git and
                the ledger are consistent (the next start completes a row left in the marker).
            KeyboardInterrupt: after the experiment in flight was recorded as ``interrupted``
                (:class:`Aborted` for a stop ``now``).
        """
        with self.core.holding(clear_flags=True):
            while True:
                reason = self.core.wait_to_start()
                if reason:
                    if self.control.stop():
                        self.stopped = self.control.stop()
                    self.display.message(reason)
                    break
                try:
                    self.step()
                except AgentExhausted as exc:
                    self.display.message(f"the agent has nothing more to propose: {exc}")
                    break
                failures = self._agent_failures_in_a_row()
                if failures >= MAX_AGENT_FAILURES:
                    self.display.message(
                        f"stopping: the agent failed {failures} times in a row (last: "
                        f"{self.core.ledger.records()[-1]['detail'][:200]}); fix the cause and `harness start` again")
                    break
            self.control.clear()
            self.core.publish("finished")
        return self.done

    def step(self) -> None:
        """Run one experiment: what the core has due (baseline, its repeats, a re-measure of the
        best), else the agent's proposal.

        Raises:
            LedgerError: less than the core's minimum free on the sandbox's disk (nothing is
                written), or a row could not be written.
        """
        core = self.core
        if core.run_due():
            return
        records = core.ledger.records()
        n = next_number(records)
        core.check_disk(n)
        started = time.time()
        files = core.files()
        core.begin(n, "asking the agent for a proposal", "proposing")
        context = Context(experiment=n, program=read_text(self.path / "program.md"), files=files,
                          history=records, best_val_bpb=core.ledger.best()[0],
                          notes=read_text(self.path / "notes.md"), sandbox=self.path, noise=noise(records))
        try:
            proposal = self.agent.propose(context)
        except EndpointDown as exc:
            core.refuse(n, None, "llm_error", str(exc), started, exc.usage, llm_down=True)
            self._wait_for_endpoint(str(exc))
            return
        except AgentError as exc:
            core.refuse(n, None, "llm_error", str(exc), started, exc.usage)
            return
        if self.control.stop() == "now":
            return  # asked to stop at once while the agent was thinking: nothing ran, nothing to record
        core.submit(proposal, started, files)

    def _agent_failures_in_a_row(self) -> int:
        count = 0
        for rec in reversed(self.core.ledger.records()):
            if rec.get("llm_down"):
                continue  # an outage is waited out, not counted as the agent failing
            if rec["outcome"] != "llm_error":
                break
            count += 1
        return count

    def _wait_for_endpoint(self, why: str) -> None:
        """Back off after a failed proposal of an unavailable endpoint: 15 s, 30 s, 60 s ... at
        most 10 min, never past the deadline; a stop ends the wait."""
        down = 0
        for rec in reversed(self.core.ledger.records()):
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
        self.core.publish("waiting_for_llm", retry_at=until, detail=why[:300])
        while time.time() < until and not self.control.stop():
            time.sleep(min(POLL_S, max(until - time.time(), 0)))
        self.display.status(None)


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
