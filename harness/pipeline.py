"""Pipelining: the agent prepares experiment n+1 while experiment n trains.

With one accelerator and an agent whose proposals take real time (an API model reading files and
repairing diffs: 10-60 s), asking for the next proposal only after a run ends leaves the
accelerator idle for that long on every experiment. :class:`ProposalAhead` asks the agent in a
background thread while the core runs the current experiment in the main thread; the agent's
context names the experiment in flight (``Context.pending``) so it does not propose the same file.

A proposal asked ahead was made against the best of its time. When it is taken and the best has
changed since (the experiment in flight was kept), it is checked again against the new best
(:func:`recheck`): it runs when its diff still applies and the result passes the rails; otherwise
it is recorded as ``stale`` (never trained) and the agent, seeing that row, proposes again.

When to pipeline (``[run] pipeline``): ``on``, ``off``, or ``auto`` (the default): on when the
runs train on a GPU, or when the agent is an API model (its thinking happens elsewhere); off on a
CPU-only machine with a local agent, whose model would take cores from the training run and make
its step count (and so val_bpb) depend on what the agent was doing (README "Keeping the
accelerator busy").
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Callable, Optional

from .agents.base import Context, Proposal
from .config import HarnessConfig
from .experiment import Checked, check_proposal

#: agent kinds (the spec before ``:``) whose proposals are computed away from this machine
REMOTE_AGENTS = ("anthropic", "openai")


def pipelining(setting: str, agent_name: str, gpu: Optional[bool] = None) -> bool:
    """Whether ``harness start`` asks for the next proposal while a run trains.

    Args:
        setting: ``[run] pipeline``: ``on``, ``off`` or ``auto``.
        agent_name: the agent's spec (``anthropic:MODEL``, ``hybrid``, ...).
        gpu: whether the runs train on a GPU (None: look for one, :func:`harness.runner.gpu_present`).
    """
    if setting != "auto":
        return setting == "on"
    if agent_name.partition(":")[0] in REMOTE_AGENTS:
        return True
    if gpu is None:
        from .runner import gpu_present

        gpu = gpu_present()
    return gpu


class ProposalAhead:
    """One proposal asked for in a background (daemon) thread.

    Args:
        agent: the agent (used by this thread only until the proposal is taken).
        context: what the agent sees (its ``files`` are the best's at the time of asking).

    Attributes:
        started: epoch seconds when the proposal was asked for (the experiment's wall time starts here).
        files: the editable files the proposal's diff was made against.
    """

    def __init__(self, agent, context: Context):
        self.context, self.files, self.started = context, dict(context.files), time.time()
        self._agent = agent
        self._proposal: Optional[Proposal] = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._work, name="proposal-ahead", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            self._proposal = self._agent.propose(self.context)
        except BaseException as exc:  # handed to the taker, who records it
            self._error = exc

    def done(self) -> bool:
        """True once the agent has answered (a proposal or an error)."""
        return not self._thread.is_alive()

    def wait(self, give_up: Callable[[], bool], poll_s: float = 0.5) -> bool:
        """Wait for the answer, polling ``give_up()`` every ``poll_s`` seconds; False when it said
        to give up first (the thread is left to finish on its own; its answer is dropped)."""
        while not self.done():
            if give_up():
                return False
            self._thread.join(poll_s)
        return True

    def result(self) -> Proposal:
        """The proposal.

        Raises:
            AgentError, AgentExhausted, EndpointDown: what the agent raised.
        """
        if self._error is not None:
            raise self._error
        return self._proposal


def recheck(proposal: Proposal, files_then: dict, files_now: dict, cfg: HarnessConfig) -> Checked:
    """Check ``proposal`` (made against ``files_then``) against the current best ``files_now``.

    Returns :func:`harness.experiment.check_proposal`'s result. When the best changed in between
    and the diff no longer applies there as it stands (its context lines moved: an edit next to
    the kept one), the edit is merged three ways instead (:func:`harness.patch.merge_files`: base
    ``files_then``, the new best, the proposal applied to ``files_then``) and the merge is checked;
    when that conflicts or fails the rails, the outcome is ``stale`` and the detail says what
    failed.
    """
    from .patch import make_unified_diff, merge_files

    checked = check_proposal(proposal, files_now, cfg)
    if checked.files is not None or files_then == files_now:
        return checked
    then = check_proposal(proposal, files_then, cfg)
    merged = None if then.files is None else merge_files(files_then, files_now, {**files_then, **then.files})
    if merged is not None:
        diff = "".join(make_unified_diff(files_now[f], merged[f], f) for f in files_now if merged[f] != files_now[f])
        again = check_proposal(replace(proposal, diff=diff), files_now, cfg) if diff else checked
        if again.files is not None:
            return again
        checked = again
    return Checked(None, "stale", "proposed while another experiment ran, against the best of that time; the best has "
                   f"changed since and the edit no longer fits it ({checked.outcome}: {checked.detail}). Nothing was "
                   "trained: propose again from the current best.", checked.rail_verdicts)
