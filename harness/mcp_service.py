"""What ``harness mcp`` serves, without the protocol: the read-only tools of :mod:`tools` and
``run_experiment``, bound to one sandbox.

``run_experiment`` is the built-in loop's step with the proposal coming from an external agent:
the same validation (:func:`tools.propose_edit`), the same :class:`harness.experiment.ExperimentRunner`
(commit, time box, decide, record), the same baseline rule (:func:`harness.loop.needs_baseline`),
the same repair after a kill (:func:`harness.reconcile.reconcile`) and the same sandbox lock (:class:`harness.state.SessionLock`), so one experiment at a time runs
per sandbox whether the other party is a second MCP client or a ``harness start``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tools import ALL_TOOLS, Toolbox, propose_edit
from tools.experiments import CRASHES, log_tail

from .agents.base import Proposal, Usage
from .config import HarnessConfig, load
from .control import Control
from .critical import deferred_signals
from .experiment import BASELINE, ExperimentRunner
from .ledger import Ledger, LedgerError
from .loop import needs_baseline, time_is_up
from .patch import make_unified_diff
from .reconcile import reconcile
from .sandbox import Sandbox, SandboxError
from .state import AlreadyRunning, SessionLock, write_state

#: the tools of :mod:`tools` an external agent gets; propose_edit is replaced by run_experiment
SHARED_TOOLS = ("read_file", "list_experiments", "show_experiment", "write_notes")

RUN_EXPERIMENT = {
    "name": "run_experiment",
    "description": (
        "Run one experiment on train.py. Either edit train.py first (Edit/Write tools) and call this with `diff` "
        "empty, or pass `diff`, a unified diff of train.py against its current version ('--- a/train.py', "
        "'+++ b/train.py', '@@' hunks with exact context lines). `description`: one line, what you changed and why. "
        "The harness checks the edit (it must pass the rails), commits it, trains for the fixed time budget, scores "
        "val_bpb, keeps the commit if it beats the best so far or discards it (train.py goes back to the best "
        "version), and records it. The answer gives the outcome, val_bpb, the best so far and, on a crash, the end "
        "of the run log. The first call on a new sandbox runs the unmodified baseline first."),
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


class ResearchService:
    """The tools of one sandbox for external agents.

    Args:
        path: the sandbox folder.
        deadline: epoch seconds after which ``run_experiment`` answers that the run is over.
        agent_name: recorded in commits and the ledger (``mcp`` by default).
    """

    def __init__(self, path: Path, deadline: Optional[float] = None, agent_name: str = "mcp"):
        self.path = Path(path).resolve()
        self.cfg: HarnessConfig = load(self.path)
        self.deadline, self.agent_name = deadline, agent_name
        self.started_at = time.time()
        #: set by the server on SIGTERM/SIGINT: the experiment in flight is stopped and recorded
        self.stopping = threading.Event()
        #: True while run_experiment holds the sandbox
        self.busy = False
        #: ``harness pause|resume|stop`` and the flag files of :mod:`harness.control`
        self.control = Control(self.path)

    def start(self) -> None:
        """Begin serving: clear earlier pause/stop flags (starting means run, as for ``harness
        start``) and write the ``idle`` state, so ``harness status|pause|stop`` see this server."""
        self.control.clear()
        self._state("idle")

    def call(self, name: str, arguments: dict, on_tick: Callable[[float], None] | None = None) -> Answer:
        """Run tool ``name``; never raises for bad input (refusals come back as ``is_error``)."""
        if name == "run_experiment":
            if not isinstance(arguments, dict) or set(arguments) - {"description", "diff"}:
                return Answer("run_experiment takes exactly: description (string), diff (string)", True)
            return self.run_experiment(str(arguments.get("description") or ""), str(arguments.get("diff") or ""),
                                       on_tick)
        if name not in SHARED_TOOLS:
            return Answer(f"there is no tool {name!r}; the tools are {', '.join(t['name'] for t in tool_schemas())}", True)
        sandbox = Sandbox(self.path, self.cfg.branch)
        box = Toolbox(self.path, self.cfg, files={f: sandbox.read(f) for f in self.cfg.editable_files},
                      history=Ledger(self.path).records())
        res = box.call(name, arguments)
        return Answer(res.text, res.is_error)

    def time_left(self) -> Optional[float]:
        """Seconds until the deadline (None without one)."""
        return None if self.deadline is None else self.deadline - time.time()

    def run_experiment(self, description: str, diff: str,
                       on_tick: Callable[[float], None] | None = None) -> Answer:
        """Check, commit, run, decide and record one experiment (the baseline first on a new sandbox).

        An empty ``diff`` means the edits of the editable files in the work tree (made with the
        agent CLI's own edit tools): they are taken as the proposal, and the tree goes back to
        HEAD before the commit. Waits while ``harness pause`` is in force. Refused with a clear
        message when the deadline has passed or ``harness stop`` was asked, another experiment
        holds the sandbox, or there is nothing to run; an invalid edit is recorded
        (``patch_failed``/``syntax_error``/``rail_blocked``) and answered with every reason, as
        ``propose_edit`` gives them, and a direct edit is then left in the work tree to be fixed.
        """
        self._wait_while_paused()
        reason = self._over()
        if reason:
            return Answer(f"the run is over ({reason}): no new experiment starts. Stop here; summarise what you "
                          "learned with write_notes if you like.", True)

        def tick(elapsed: float) -> None:
            if self.stopping.is_set() or self.control.stop() == "now":
                raise KeyboardInterrupt  # the runner kills the run; ExperimentRunner records it as interrupted
            if on_tick:
                on_tick(elapsed)

        try:
            with SessionLock(self.path):
                self.busy = True
                try:
                    if self.stopping.is_set():
                        raise KeyboardInterrupt
                    return self._run_locked(description, diff, tick)
                finally:
                    self.busy = False
        except KeyboardInterrupt:
            why = ("the harness's MCP server is shutting down" if self.stopping.is_set() else
                   "the human stopped the run (`harness stop --now`); it is over")
            return Answer(f"stopped: {why}. The experiment in flight was killed and recorded as interrupted.", True)
        except AlreadyRunning as exc:
            return Answer(f"refused: only one experiment runs at a time in a sandbox. {exc} Wait until it ends "
                          "(list_experiments shows it once recorded), then call run_experiment again.", True)
        except (SandboxError, LedgerError) as exc:
            return Answer(f"refused: {exc}", True)

    def _run_locked(self, description: str, diff: str, on_tick) -> Answer:
        sandbox, ledger = Sandbox(self.path, self.cfg.branch), Ledger(self.path)
        head = {name: sandbox.read(name) for name in self.cfg.editable_files}
        try:
            edited = self._direct_edits(head)
        except UnicodeDecodeError as exc:
            return Answer(f"refused: an editable file in the work tree is not UTF-8 text ({exc}); rewrite it as "
                          "UTF-8, then call run_experiment again.", True)
        if edited and diff.strip():
            return Answer("refused: train.py has direct edits in the work tree and a diff was given too. Call "
                          "run_experiment with an empty diff to run the edited file, or undo the edits first.", True)
        if not diff.strip():
            if not edited:
                return Answer("nothing to run: the diff is empty and train.py has no direct edits. Edit train.py "
                              "(or pass a unified diff), then call run_experiment.", True)
            diff = "".join(make_unified_diff(head[f], text, f) for f, text in edited.items())
            for name in edited:  # the tree goes back to HEAD; the harness commits the checked edit itself
                (self.path / name).write_text(head[name], encoding="utf-8")
        self._committed = False
        try:
            return self._check_and_run(sandbox, ledger, description, diff, on_tick)
        finally:
            if edited and not self._committed:
                for name, text in edited.items():  # a direct edit that did not run is given back, to be fixed
                    (self.path / name).write_text(text, encoding="utf-8")

    def _over(self) -> Optional[str]:
        """Why no experiment may start now (a stop asked with ``harness stop`` or the deadline), or None."""
        if self.control.stop():
            return "the human stopped it with `harness stop`"
        return time_is_up(self.deadline, Ledger(self.path).records())

    def _wait_while_paused(self) -> None:
        """Hold a ``run_experiment`` call while ``harness pause`` is in force (``harness resume``,
        a stop or the server's shutdown ends the wait)."""
        shown = False
        while self.control.paused() and not self.control.stop() and not self.stopping.is_set():
            if not shown:
                self._state("paused")
                shown = True
            time.sleep(0.25)
        if shown:
            self._state("idle")

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

    def _check_and_run(self, sandbox: Sandbox, ledger: Ledger, description: str, diff: str, on_tick) -> Answer:
        """The experiment under the lock (``self._committed`` turns True once the proposal is committed)."""
        runner = ExperimentRunner(sandbox, ledger, self.cfg, self.agent_name)
        with deferred_signals():
            reconcile(sandbox, ledger, runner)  # the repair after a kill; also checks out the branch
        parts = []
        if needs_baseline(ledger.records()):
            n = ledger.next_experiment()
            self._state("running", experiment=n, description=BASELINE)
            base = runner.run(n, None, {}, time.time(), on_tick, self._on_commit(n, BASELINE))
            parts.append(f"first, the baseline ran as experiment {n}: {_summary(base.to_json(), self.path)}")
            reason = self._over()
            if reason:
                parts.append(f"your experiment did not run: the run is over ({reason}).")
                return Answer("\n".join(parts), True)
        n, started = ledger.next_experiment(), time.time()
        files = {f: sandbox.read(f) for f in self.cfg.editable_files}
        verdict = propose_edit(files, self.cfg, description, diff=diff)
        proposal = verdict.proposal or Proposal(description=" ".join(description.split())[:200] or "no description",
                                                diff=diff, format="udiff")
        run_dir = runner.run_dir(n)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "proposal.diff").write_text(diff, encoding="utf-8")
        checked = verdict.checked  # propose_edit ran the loop's check_proposal already
        if verdict.proposal is None:
            detail = checked.detail if checked is not None else verdict.message
            verdicts = checked.rail_verdicts if checked is not None else ()
            runner.record_refusal(n, proposal, verdict.outcome, detail, started, Usage(), verdicts)
            self._state("idle")
            parts.append(f"experiment {n} was not run and is recorded as {verdict.outcome}.\n{verdict.message}")
            return Answer("\n\n".join(parts), True)
        self._state("running", experiment=n, description=proposal.description)
        try:
            rec = runner.run(n, proposal, checked.files, started, on_tick,
                             self._on_commit(n, proposal.description, proposal=True))
        finally:
            self._state("idle")
        parts.append(f"experiment {n}: {_summary(rec.to_json(), self.path)}")
        best, _ = ledger.best()
        parts.append(f"best val_bpb so far: {best:.6f}" if best is not None else "no kept result yet")
        left = self.time_left()
        if left is not None:
            parts.append(f"time left in this run: {max(left, 0) / 60:.1f} min")
        return Answer("\n".join(parts))

    def _on_commit(self, n: int, description: str, proposal: bool = False) -> Callable[[str], None]:
        def on_commit(commit: str) -> None:
            self._committed = self._committed or proposal
            self._state("running", experiment=n, description=description, commit=commit, run_started_at=time.time())
        return on_commit

    def _state(self, phase: str, **extra) -> None:
        best, _ = Ledger(self.path).best()
        write_state(self.path, phase=phase, session_started_at=self.started_at, deadline=self.deadline,
                    agent=self.agent_name, best_val_bpb=best, time_budget_s=self.cfg.time_budget_s, **extra)


def _summary(rec: dict, sandbox: Path) -> str:
    """``outcome improved, val_bpb 2.1 (was 2.2), kept`` plus the detail and, for a crash, the log tail."""
    val = f"{rec['val_bpb']:.6f}" if rec.get("val_bpb") is not None else "-"
    parent = rec.get("parent_val_bpb")
    was = f" (best before: {parent:.6f})" if isinstance(parent, float) else ""
    text = f"outcome {rec['outcome']}, val_bpb {val}{was}, {'kept' if rec.get('status') == 'keep' else 'discarded'}"
    if rec.get("detail"):
        text += f"\n{rec['detail']}"
    if rec["outcome"] in CRASHES:
        tail = log_tail(sandbox, rec["experiment"])
        if tail:
            text += f"\nend of runs/{rec['experiment']}/run.log:\n{tail}"
    return text
