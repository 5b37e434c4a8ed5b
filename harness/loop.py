"""The research loop of ``harness start``: the front end of the experiment core that asks an agent.

The core (:mod:`harness.core`) repairs, gates, runs the baseline and the noise runs, checks,
commits, runs, decides and records; this loop only asks the agent for the next proposal and backs
off when it fails, and, pipelined (:mod:`harness.pipeline`), asks for the next proposal while the
current experiment trains. A proposal that fails because the LLM endpoint is unavailable is recorded
(``llm_error``, ``llm_down``) and waited out with backoff; five agent failures in a row end the
session. The loop keeps no state of its own between experiments beyond a proposal asked ahead
(lost with a kill: a restart asks again): the next number, the best and the history come from the
ledger and git each time, so a restarted harness continues.

With several runners (``--gpus``, ``--workers``: :mod:`harness.runners`) the loop asks the agent
whenever a runner is free, while the others train, and hands each proposal to that runner's
thread; the baseline and the repeats of the best wait until no experiment is in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .agents.base import Agent, AgentError, AgentExhausted, Context, Proposal
from .adopt import imported_rows
from .agents.chat import EndpointDown
from .config import HarnessConfig
from .core import Aborted, ExperimentCore, needs_baseline
from .decisions import file_key, noise
from .experiment import Checked
from .ledger import next_number
from .pipeline import ProposalAhead, pipelining, recheck
from .runners import Place, Pool

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
        pipelined: ask for the next proposal while a run trains (None: as ``[run] pipeline`` and
            :func:`harness.pipeline.pipelining` say).
        places: the runners (:func:`harness.runners.places_for`); more than one runs that many
            experiments at once. None: one, here.
        measure: a simulated run function for the core (benchmarks; see
            :class:`harness.experiment.ExperimentRunner`); None: real runs.
    """

    def __init__(self, path: Path, cfg: HarnessConfig, agent: Agent, display, limits: Limits,
                 on_interrupted: str = "record", pipelined: Optional[bool] = None,
                 places: Optional[list[Place]] = None, measure=None):
        self.path = Path(path)
        self.cfg, self.agent, self.display, self.limits = cfg, agent, display, limits
        self.core = ExperimentCore(self.path, cfg, agent.name, display, limits.deadline, limits.max_experiments,
                                   on_interrupted, measure)
        self.control = self.core.control
        self.stopped: Optional[str] = None  # why the session stopped early on request
        self.pipelined = pipelining(cfg.pipeline, agent.name) if pipelined is None else pipelined
        #: the proposal asked while the current experiment trains (pipelining)
        self.ahead: Optional[ProposalAhead] = None
        self.places = places or [Place(self.path)]

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
            if len(self.places) > 1:
                self._run_several()
            else:
                self._run_one()
            if self.ahead is not None:
                self.display.message("a proposal asked ahead was not run: the session ended before its turn")
            self.control.clear()
            self.core.publish("finished")
        return self.done

    def _stop_reason(self) -> Optional[str]:
        """Why no new experiment may start (a stop, a limit; shown), or None to go on; waits out
        a pause."""
        reason = self.core.wait_to_start()
        if reason and self.control.stop():
            self.stopped = self.control.stop()
        return reason

    def _failing(self) -> Optional[str]:
        """Why the session ends after the agent failed :data:`MAX_AGENT_FAILURES` times in a row,
        or None."""
        failures = self._agent_failures_in_a_row()
        if failures < MAX_AGENT_FAILURES:
            return None
        return (f"stopping: the agent failed {failures} times in a row (last: "
                f"{self.core.ledger.records()[-1]['detail'][:200]}); fix the cause and `harness start` again")

    def _run_several(self) -> None:
        """Keep every runner busy until a limit: ask the agent when a runner is free and hand the
        proposal to that runner's thread; run what the core has due when nothing is in flight.
        At the end, wait for the experiments in flight (a stop ``now`` aborts them)."""
        core, pool = self.core, Pool(self.places)
        names = ", ".join(p.label for p in self.places)
        self.display.message(f"{len(self.places)} runners ({names}); each experiment runs in its own work tree")
        remote = self.places[0].remote
        if hasattr(remote, "warm") and needs_baseline(core.ledger.records()):
            # the baseline runs alone: start the other runners' Ray workers meanwhile
            remote.warm(len(self.places) - 1, self.cfg.time_budget_s)

        def abort_if_asked():
            if self.control.stop() == "now":
                core.abort.set()

        try:
            while True:
                reason = self._stop_reason()
                if reason:
                    self.display.message(reason)
                    break
                if core.due():
                    if pool.busy():
                        pool.wait(POLL_S)  # the best runs again alone, as every experiment did
                    else:
                        core.run_due(self.places[0])
                    continue
                place = pool.free()
                if place is None:
                    pool.wait(POLL_S)
                    continue
                files = core.files()
                try:
                    taken = self._take(next_number(core.ledger.records()), files)
                except AgentExhausted as exc:
                    self.display.message(f"the agent has nothing more to propose: {exc}")
                    break
                if taken is not None:
                    proposal, started, checked = taken
                    pool.start(place, lambda p=proposal, s=started, f=files, c=checked, at=place:
                               core.submit(p, s, f, c, place=at))
                elif self._failing():
                    self.display.message(self._failing())
                    break
            if pool.busy():
                self.display.message(f"waiting for the {pool.busy()} experiment(s) in flight")
            pool.drain(POLL_S, abort_if_asked)
        except KeyboardInterrupt:
            core.abort.set()
            try:
                pool.drain(POLL_S)
            except KeyboardInterrupt:
                pass  # the runners' own Aborted: each recorded its experiment
            raise

    def _run_one(self) -> None:
        """One experiment after another (pipelined when :attr:`pipelined`)."""
        while True:
            reason = self._stop_reason()
            if reason:
                self.display.message(reason)
                break
            try:
                self.step()
            except AgentExhausted as exc:
                self.display.message(f"the agent has nothing more to propose: {exc}")
                break
            if self._failing():
                self.display.message(self._failing())
                break

    def step(self) -> None:
        """Run one experiment: what the core has due (baseline, its repeats, a re-measure of the
        best), else the agent's proposal. Pipelined, the agent is asked for the next proposal
        while this one (or a repeat of the best) trains.

        Raises:
            LedgerError: less than the core's minimum free on the sandbox's disk (nothing is
                written), or a row could not be written.
            AgentExhausted: the agent has nothing more to propose.
        """
        core = self.core
        if core.due():
            if self.pipelined:  # the baseline or the best runs (again): the agent can think meanwhile
                self._ask_ahead(core.files())
            core.run_due(self.places[0])
            return
        n = next_number(core.ledger.records())
        core.check_disk(n)
        files = core.files()
        taken = self._take(n, files)
        if taken is None:
            return
        proposal, started, checked = taken
        if self.pipelined and checked.files is not None:
            self._ask_ahead(files, {"description": proposal.description, "file_key": file_key({**files, **checked.files})})
        core.submit(proposal, started, files, checked, place=self.places[0])

    def _context(self, n: int, files: dict, pending: tuple = ()) -> Context:
        """What the agent sees; ``pending`` (default: the experiments of several runners in
        flight) are experiments that run before this one or alongside it."""
        records = self.core.ledger.records()
        if not pending:
            with self.core.runner.lock:
                pending = tuple(dict(f) for f in self.core.runner.flying.values())
        return Context(experiment=n, program=read_text(self.path / "program.md"), files=files,
                       history=records, best_val_bpb=self.core.ledger.best()[0],
                       notes=read_text(self.path / "notes.md"), sandbox=self.path, noise=noise(records),
                       pending=pending, tried=tuple(imported_rows(self.path)))

    def _ask_ahead(self, files: dict, *pending: dict) -> None:
        """Ask the agent for the next proposal against the best's ``files`` in the background (once;
        nothing when one is asked already); ``pending`` names the experiments that will run first."""
        if self.ahead is None:
            n = next_number(self.core.ledger.records()) + len(pending)
            self.ahead = ProposalAhead(self.agent, self._context(n, files, pending))

    def _take(self, n: int, files: dict) -> Optional[tuple[Proposal, float, Checked]]:
        """The next proposal checked against the current best ``files``: the one asked ahead, else
        one asked now. None when there is nothing to run: the agent failed (recorded as
        ``llm_error``), the proposal asked ahead no longer fits the best (recorded as ``stale``),
        or a stop ``now`` came while the agent thought (nothing recorded).

        Raises:
            AgentExhausted: the agent has nothing more to propose.
        """
        core, ahead, self.ahead = self.core, self.ahead, None
        if ahead is None:
            core.begin(n, "asking the agent for a proposal", "proposing")
            started, asked = time.time(), files
            get = lambda: self.agent.propose(self._context(n, files))  # noqa: E731
        else:
            if not ahead.done():
                core.begin(n, "waiting for the proposal asked while the last experiment ran", "proposing")
            if not ahead.wait(lambda: self.control.stop() == "now", POLL_S):
                return None
            started, asked, get = ahead.started, ahead.files, ahead.result
        try:
            proposal = get()
        except EndpointDown as exc:
            core.refuse(core.runner.reserve(), None, "llm_error", str(exc), started, exc.usage, llm_down=True)
            self._wait_for_endpoint(str(exc))
            return None
        except AgentError as exc:
            core.refuse(core.runner.reserve(), None, "llm_error", str(exc), started, exc.usage)
            return None
        if self.control.stop() == "now":
            return None  # asked to stop at once while the agent was thinking: nothing ran, nothing to record
        checked = recheck(proposal, asked, files, self.cfg)
        if checked.outcome == "stale":
            self.display.message(f"experiment {n}: the proposal asked ahead no longer fits the new best; recorded as "
                                 "stale, the agent proposes again")
            core.refuse(core.runner.reserve(), proposal, "stale", checked.detail, started, proposal.usage,
                        checked.rail_verdicts)
            return None
        if checked.files is not None and asked != files:
            self.display.message(f"experiment {n}: the proposal asked ahead was made against an earlier best; it "
                                 "still applies and passes the rails on the new best, so it runs there")
        return proposal, started, checked

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
