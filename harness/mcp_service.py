"""What ``harness mcp`` serves, without the protocol: the read-only tools of :mod:`tools` and
``run_experiment``, bound to one sandbox.

``run_experiment`` hands the external agent's edit to the same experiment core as ``harness
start`` (:class:`harness.core.ExperimentCore`: lock and repair, gate, baseline and noise runs,
duplicates, commit, run, confirmation, decision, record), so one experiment at a time runs per
sandbox whether the other party is a second MCP client or a ``harness start``. What is this
module's own: the tool schemas, turning a call (a diff, or direct edits of train.py in the work
tree) into a proposal, and phrasing the answer with the evidence of the decision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tools import ALL_TOOLS, Toolbox, propose_edit
from tools.experiments import CRASHES, log_tail

from .agent_files import TOOLS as AGENT_TOOLS
from .agents.base import Proposal, Usage
from .config import HarnessConfig, load
from .core import Events, ExperimentCore
from .curves import best_record, compare
from .decisions import noise
from .inflight import read_marker
from .ledger import LedgerError
from .patch import make_unified_diff
from .sandbox import SandboxError
from .state import AlreadyRunning

#: the tools of :mod:`tools` an external agent gets; propose_edit is replaced by run_experiment
SHARED_TOOLS = tuple(t for t in AGENT_TOOLS if t != "run_experiment")

RUN_EXPERIMENT = {
    "name": "run_experiment",
    "description": (
        "Run one experiment on train.py. Either edit train.py first (Edit/Write tools) and call this with `diff` "
        "empty, or pass `diff`, a unified diff of train.py against its current version ('--- a/train.py', "
        "'+++ b/train.py', '@@' hunks with exact context lines). `description`: one line, what you changed and why. "
        "The harness checks the edit (it must pass the rails; a file already run is refused as a duplicate), commits "
        "it, trains for the fixed time budget and scores val_bpb. Under the default noise-aware policy a run clearly "
        "worse than the best is discarded at once; a promising one runs again with other seeds (confirmation runs) "
        "and is kept only when its mean beats the best's by more than the measured noise allows by chance "
        "(a one-sided two-sample t-test at level `alpha` of harness.toml's [policy], p < 0.01 by default, split "
        "over the looks as confirmation runs come in), or, for a change of knob values only, when a Gaussian-process "
        "model of all runs of that code puts it below the best with probability > 1 - alpha (its level split "
        "like the t-test's after the first run; it pools the neighbouring files' runs, so a keep may come after "
        "one run, and a change it finds promising gets confirmation runs); "
        "otherwise train.py goes back to the best version. The answer gives the "
        "outcome, val_bpb, the evidence (runs, mean, noise, delta, t and its threshold, the model's z), the best so far "
        "and, on a crash, the end of "
        "the run log. The first call on a new sandbox runs the unmodified baseline first, several times, to measure "
        "the noise; from time to time the harness re-measures the best before your experiment (drift)."),
    "parameters": {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": "one line: what you changed and why"},
            "diff": {"type": "string", "description": (
                "a unified diff against the current train.py; leave it empty to run your direct edits of train.py")},
        },
        "required": ["description"],
    },
}


def tool_schemas() -> list[dict]:
    """The schemas served, in the neutral ``{name, description, parameters}`` shape."""
    return [t for t in ALL_TOOLS if t["name"] in SHARED_TOOLS] + [RUN_EXPERIMENT]


@dataclass(frozen=True)
class Answer:
    """A tool's answer: ``text`` for the model, ``is_error`` when the call was refused."""

    text: str
    is_error: bool = False


class _Collector(Events):
    """The core's events during one MCP call: notices are kept for the answer, ticks go to the
    call's progress callback."""

    def __init__(self):
        self.lines: list[str] = []
        self.on_tick: Optional[Callable[[float], None]] = None

    def message(self, text: str) -> None:
        self.lines.append(text)

    def tick(self, elapsed_s: float) -> None:
        if self.on_tick:
            self.on_tick(elapsed_s)


class ResearchService:
    """The tools of one sandbox for external agents: the MCP front end of the experiment core
    (:class:`harness.core.ExperimentCore`), which does the repair, the gate, the baseline and
    noise runs, the check, the run, the decision and the record, exactly as for ``harness start``.

    Args:
        path: the sandbox folder.
        deadline: epoch seconds after which ``run_experiment`` answers that the run is over.
        agent_name: recorded in commits and the ledger (``mcp`` by default).
        on_interrupted: ``record`` or ``rerun`` (once) an experiment a killed harness left running.
    """

    def __init__(self, path: Path, deadline: Optional[float] = None, agent_name: str = "mcp",
                 on_interrupted: str = "record"):
        self.path = Path(path).resolve()
        self.cfg: HarnessConfig = load(self.path)
        self.deadline, self.agent_name = deadline, agent_name
        self.events = _Collector()
        self.core = ExperimentCore(self.path, self.cfg, agent_name, self.events, deadline,
                                   on_interrupted=on_interrupted)
        #: set by the server on SIGTERM/SIGINT: the experiment in flight is stopped and recorded
        self.stopping = self.core.abort
        #: True while run_experiment holds the sandbox
        self.busy = False
        #: ``harness pause|resume|stop`` and the flag files of :mod:`harness.control`
        self.control = self.core.control

    def start(self) -> None:
        """Begin serving: clear earlier pause/stop flags (starting means run, as for ``harness
        start``) and write the ``idle`` state, so ``harness status|pause|stop`` see this server."""
        self.control.clear()
        self.core.publish("idle")

    def call(self, name: str, arguments: dict, on_tick: Callable[[float], None] | None = None) -> Answer:
        """Run tool ``name``; never raises for bad input (refusals come back as ``is_error``)."""
        if name == "run_experiment":
            if not isinstance(arguments, dict) or set(arguments) - {"description", "diff"}:
                return Answer("run_experiment takes exactly: description (string), diff (string)", True)
            return self.run_experiment(str(arguments.get("description") or ""), str(arguments.get("diff") or ""),
                                       on_tick)
        if name not in SHARED_TOOLS:
            return Answer(f"there is no tool {name!r}; the tools are {', '.join(t['name'] for t in tool_schemas())}", True)
        box = Toolbox(self.path, self.cfg, files=self.core.files(), history=self.core.ledger.records())
        res = box.call(name, arguments)
        return Answer(res.text, res.is_error)

    def time_left(self) -> Optional[float]:
        """Seconds until the deadline (None without one)."""
        return None if self.deadline is None else self.deadline - time.time()

    def run_experiment(self, description: str, diff: str,
                       on_tick: Callable[[float], None] | None = None) -> Answer:
        """Check, commit, run, decide and record one experiment (first whatever the core has due:
        the baseline and its repeats on a new sandbox, a re-measure of the best).

        An empty ``diff`` means the edits of the editable files in the work tree (made with the
        agent CLI's own edit tools): they are taken as the proposal, and the tree goes back to
        HEAD before the commit. Waits while ``harness pause`` is in force. Refused with a clear
        message when the deadline has passed or ``harness stop`` was asked, another experiment
        holds the sandbox, or there is nothing to run; an invalid edit is recorded
        (``patch_failed``/``syntax_error``/``rail_blocked``/``duplicate``) and answered with every
        reason, as ``propose_edit`` gives them, and a direct edit is then left in the work tree to
        be fixed.
        """
        self.events.lines, self.events.on_tick = [], on_tick
        self.core.proposal_committed = False
        reason = self.core.wait_to_start()
        if reason:
            return Answer(f"the run is over ({_over(reason)}): no new experiment starts. Stop here; summarise what "
                          "you learned with write_notes if you like.", True)
        taken = _Taken(diff)
        try:
            with self.core.holding(before_repair=lambda: self._take_direct_edits(taken)):
                self.busy = True
                try:
                    if self.stopping.is_set():
                        raise KeyboardInterrupt
                    taken.answer = self._check_and_run(description, taken.diff)
                    return taken.answer
                finally:
                    self.busy = False
                    self.core.publish("idle")
        except _Refused as refused:
            return refused.answer
        except KeyboardInterrupt:
            why = ("the harness's MCP server is shutting down" if self.stopping.is_set() else
                   "the human stopped the run (`harness stop --now`); it is over")
            return Answer(f"stopped: {why}. The experiment in flight was killed and recorded as interrupted.", True)
        except AlreadyRunning as exc:
            return Answer(f"refused: only one experiment runs at a time in a sandbox. {exc} Wait until it ends "
                          "(list_experiments shows it once recorded), then call run_experiment again.", True)
        except (SandboxError, LedgerError, OSError) as exc:
            return Answer(f"refused: {exc}", True)
        finally:
            if taken.edited and not self.core.proposal_committed and (taken.answer is None or taken.answer.is_error):
                for name, text in taken.edited.items():  # a direct edit that did not run is given back, to be fixed
                    (self.path / name).write_text(text, encoding="utf-8")

    def _take_direct_edits(self, taken: "_Taken") -> None:
        """Under the lock, before the repair: turn direct edits of the editable files into the
        proposal's diff and put HEAD's text back in the tree (the harness commits the checked edit
        itself), or raise :class:`_Refused` (the tree stays as it is). Nothing is taken while an
        experiment of a killed harness is marked in flight: the repair owns the tree then."""
        if read_marker(self.path) is not None:
            return
        head = self.core.files()
        try:
            edited = self._direct_edits(head)
        except UnicodeDecodeError as exc:
            raise _Refused(Answer(f"refused: an editable file in the work tree is not UTF-8 text ({exc}); rewrite "
                                  "it as UTF-8, then call run_experiment again.", True)) from None
        if edited and taken.diff.strip():
            raise _Refused(Answer("refused: train.py has direct edits in the work tree and a diff was given too. Call "
                                  "run_experiment with an empty diff to run the edited file, or undo the edits "
                                  "first.", True))
        if not taken.diff.strip() and not edited:
            raise _Refused(Answer("nothing to run: the diff is empty and train.py has no direct edits. Edit train.py "
                                  "(or pass a unified diff), then call run_experiment.", True))
        if edited:
            taken.diff = "".join(make_unified_diff(head[f], text, f) for f, text in edited.items())
            taken.edited = edited
            for name in edited:
                (self.path / name).write_text(head[name], encoding="utf-8")

    def _direct_edits(self, head: dict[str, str]) -> dict[str, str]:
        """Editable files whose work-tree text differs from their ``head`` text (name -> work-tree
        text). Raises UnicodeDecodeError for a file that is not UTF-8."""
        edited = {}
        for name, committed in head.items():
            path = self.path / name
            text = path.read_text(encoding="utf-8") if path.exists() else ""
            if text != committed:
                edited[name] = text
        return edited

    def _check_and_run(self, description: str, diff: str) -> Answer:
        """The experiment under the lock: what the core has due first, then the agent's edit."""
        core, parts = self.core, []
        while True:
            due = core.run_due()
            if not due:
                break
            parts += [(f"first, the baseline ran as experiment {r.experiment}: " if r.proposal_format == "baseline"
                       else f"first, the harness ran experiment {r.experiment} ({r.description}): ")
                      + _summary(r.to_json(), self.path) for r in due]
            reason = core.why_not_start()
            if reason:
                parts.append(f"your experiment did not run: the run is over ({_over(reason)}).")
                return Answer("\n".join(self.events.lines + parts), True)
        files, started = core.files(), time.time()
        verdict = propose_edit(files, self.cfg, description, diff=diff)
        proposal = verdict.proposal or Proposal(description=" ".join(description.split())[:200] or "no description",
                                                diff=diff, format="udiff")
        if verdict.proposal is None:  # refused by the check propose_edit ran: record it with every reason
            n = core.ledger.next_experiment()
            core.runner.run_dir(n).mkdir(parents=True, exist_ok=True)
            (core.runner.run_dir(n) / "proposal.diff").write_text(diff, encoding="utf-8")
            checked = verdict.checked
            core.refuse(n, proposal, verdict.outcome, checked.detail if checked is not None else verdict.message,
                        started, Usage(), checked.rail_verdicts if checked is not None else ())
            parts.append(f"experiment {n} was not run and is recorded as {verdict.outcome}.\n{verdict.message}")
            return Answer("\n\n".join(self.events.lines + parts), True)
        rows = core.submit(proposal, started, files, verdict.checked)
        first = rows[0]
        parts.append(f"experiment {first.experiment}: {_summary(first.to_json(), self.path)}")
        for r in rows[1:]:
            val = f"{r.val_bpb:.6f}" if r.val_bpb is not None else "-"
            parts.append(f"  experiment {r.experiment}: {r.outcome} val_bpb {val} ({r.description})")
        best, _ = core.ledger.best()
        records = core.ledger.records()
        if first.curve:
            parts.append(compare(first.to_json(), best_record(records)))
        parts.append((f"best val_bpb so far: {best:.6f}" if best is not None else "no kept result yet") +
                     f"; {noise(records).text()}")
        left = self.time_left()
        if left is not None:
            parts.append(f"time left in this run: {max(left, 0) / 60:.1f} min")
        return Answer("\n".join(self.events.lines + parts), first.outcome == "duplicate")


class _Refused(Exception):
    """A run_experiment call answered before the repair (``answer``); the tree is left as it is."""

    def __init__(self, answer: Answer):
        super().__init__(answer.text)
        self.answer = answer


class _Taken:
    """One run_experiment call's proposal text: ``diff`` (given, or made from direct edits),
    ``edited`` (the direct edits taken out of the tree), ``answer`` (set once it was answered)."""

    def __init__(self, diff: str):
        self.diff, self.edited, self.answer = diff, {}, None


def _over(reason: str) -> str:
    """The core's reason to stop, in the words an agent is told."""
    return "the human stopped it with `harness stop`" if reason.startswith("stopping") else reason


def _summary(rec: dict, sandbox: Path) -> str:
    """``outcome improved, val_bpb 2.1 (was 2.2), kept`` plus the detail and, for a crash, the log tail."""
    val = f"{rec['val_bpb']:.6f}" if rec.get("val_bpb") is not None else "-"
    parent = rec.get("parent_val_bpb")
    was = f" (best before: {parent:.6f})" if isinstance(parent, float) else ""
    text = f"outcome {rec['outcome']}, val_bpb {val}{was}, {'kept' if rec.get('status') == 'keep' else 'discarded'}"
    if rec.get("steps"):
        text += f" ({rec['steps']} steps, {rec.get('tokens_per_s') or 0:,.0f} tokens/s)"
    if (rec.get("decision") or {}).get("reason"):
        text += f"\ndecision: {rec['decision']['reason']}"
    if rec.get("drift"):
        text += f"\ndrift: the best moved from {rec['drift']['from']:.6f} to {rec['drift']['to']:.6f}"
    if rec.get("detail"):
        text += f"\n{rec['detail']}"
    if rec["outcome"] in CRASHES:
        tail = log_tail(sandbox, rec["experiment"])
        if tail:
            text += f"\nend of runs/{rec['experiment']}/run.log:\n{tail}"
    return text
