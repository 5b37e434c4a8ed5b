"""The agent seam: ``Agent.propose(context) -> Proposal``.

Agents are looked up by spec string (``local``, ``local:PATH.gguf``, ``scripted:FILE``) in
:mod:`harness.agents`. An agent never touches git or the ledger: it returns a proposal, and the
loop validates, commits, runs and records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol


class AgentError(Exception):
    """The agent could not produce a proposal this time (bad model output, endpoint down...).

    The loop records the experiment as ``llm_error`` with this message and moves on.
    ``usage`` carries the LLM calls and tokens spent on the failed attempt.
    """

    def __init__(self, message: str, usage: "Usage | None" = None):
        super().__init__(message)
        self.usage = usage or Usage()


class AgentExhausted(Exception):
    """The agent has nothing more to propose (a scripted agent at the end of its list)."""


@dataclass
class Usage:
    """LLM cost of one proposal: model calls, tool calls the model made, tokens, seconds spent
    waiting, retries after bad output (refused proposals)."""

    llm_calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_s: float = 0.0
    retries: int = 0


@dataclass(frozen=True)
class Proposal:
    """One proposed experiment.

    Attributes:
        description: one line, the commit subject and the results.tsv description.
        diff: a unified diff against the current best files (``--- a/train.py`` / ``+++ b/train.py``).
        format: ``udiff`` | ``search_replace`` | ``whole`` | ``knob`` | ``trial`` (the optimiser's).
        knob: for ``knob`` proposals, ``{"knob": NAME, "action": ACTION, "reason": TEXT}``; for
            ``trial`` proposals also ``"params"``, the knob values set.
        usage: what it cost to get this proposal.
    """

    description: str
    diff: str
    format: str = "udiff"
    knob: Optional[dict] = None
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class Context:
    """What an agent sees before proposing experiment ``experiment``.

    Attributes:
        experiment: the number of the experiment to propose.
        program: the text of program.md (the human's instructions).
        files: editable file name -> its text on the current best commit.
        history: trajectory objects of every earlier experiment, oldest first.
        best_val_bpb: the best kept val_bpb so far (None before the baseline has scored).
        notes: the agent's notes.md (may be empty).
        sandbox: the sandbox folder, for agents whose tools read logs, diffs and notes there
            (None: the agent works from this context alone).
        noise: the measured noise of val_bpb (:class:`harness.decisions.Noise`), or None.
        pending: experiments running while the agent thinks (pipelining, :mod:`harness.pipeline`):
            ``{"description", "file_key"}`` each; their results are not known yet.
        tried: rows of an adopted checkout's own results.tsv (:func:`harness.adopt.imported_rows`:
            commit, val_bpb, memory_gb, status, description, and file_key where git had the
            commit), oldest first; () for a sandbox that was not adopted.
    """

    experiment: int
    program: str
    files: dict
    history: list
    best_val_bpb: Optional[float]
    notes: str = ""
    sandbox: Optional[Path] = None
    noise: Optional[object] = None
    pending: tuple = ()
    tried: tuple = ()

    def taken(self) -> set:
        """File keys (:func:`harness.decisions.file_key`) a new proposal must not produce: the
        current best's, every file that ran, those running now and those an adopted checkout
        tried before; the core would refuse them as ``duplicate``."""
        from ..decisions import file_key

        ran = {r.get("file_key") for r in self.history if r.get("run_s") is not None}
        before = {r["file_key"] for r in self.tried if r.get("file_key")}
        return ran | before | {p["file_key"] for p in self.pending} | {file_key(self.files)}


class Agent(Protocol):
    """Anything with a ``name`` and a ``propose`` method.

    ``propose`` returns a :class:`Proposal`, or raises :class:`AgentError` (recorded as
    ``llm_error``) or :class:`AgentExhausted` (the loop stops).
    """

    name: str

    def propose(self, context: Context) -> Proposal: ...
