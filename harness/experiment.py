"""One experiment, end to end: check -> commit -> run -> decide -> record.

Data flows one way (DESIGN.md): the proposal is validated (unified diff parses and applies, touches
only editable files, every rail passes), committed on the experiment branch, run with the time box,
judged by the greedy keep policy, and recorded in the ledger. A refused proposal is recorded too
(``patch_failed``, ``syntax_error``, ``rail_blocked``) without a commit, its diff kept in
``runs/<n>/proposal.diff``.

Write order of one experiment that runs (crash consistency). Each numbered write is atomic on its
own (an ``os.replace``, a git ref update, an fsynced append); the names in brackets are the
:mod:`harness.faults` points the fault-injection tests kill the harness at:

1. ``runs/<n>/proposal.diff`` (the proposal, for the human; not part of the record).
2. ``.harness/inflight.json``, phase ``committing``: number, parent sha, description, start time,
   the proposal's format and LLM usage [before_commit].
3. the commit of the edit with ``Status: running`` [after_commit]; the marker, phase ``running``,
   gets its sha.
4. the run (the child process; nothing of ours is written) [after_run].
5. the marker, phase ``deciding``, gets the complete ledger record [before_trailers].
6. ``git commit --amend`` with the final trailers (``Status: keep|discard|crash``) [after_trailers].
7. discard only: ``refs/autoresearch/discarded/<n>`` [after_discard_ref], then ``git reset --hard``
   to the parent.
8. the row: trajectory.jsonl [between_ledger_files], then results.tsv [after_row].
9. the marker is removed.

After a kill anywhere, :func:`harness.reconcile.reconcile` reads the marker and git and finishes
the job: before 3 nothing happened (the tree is reset and the number is used again); between 3
and 5 the run was cut short (recorded ``interrupted``, or run again); from 5 on the decision is
known and steps 6-9 are completed from the marker. Refusals and ``llm_error`` rows are a single
append (8) with no marker.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from .agents.base import Proposal, Usage
from .config import HarnessConfig
from .critical import deferred_signals
from .faults import point
from .inflight import clear_marker, write_marker
from .integrity import check_after_run, fingerprint
from .ledger import ExperimentRecord, Ledger
from .sandbox import Sandbox, SandboxError, commit_message, parse_trailers

BASELINE = "baseline (unmodified train.py)"


@dataclass
class Checked:
    """A proposal after validation: the new file texts, or the outcome and reason it was refused."""

    files: Optional[dict]
    outcome: Optional[str] = None
    detail: str = ""
    rail_verdicts: tuple = ()


def check_proposal(proposal: Proposal, files: dict, cfg: HarnessConfig) -> Checked:
    """Apply ``proposal.diff`` to ``files`` (name -> text) and run the rails on each changed file.

    Returns a :class:`Checked` with ``files`` set when the proposal may run; otherwise ``outcome``
    is ``patch_failed``, ``syntax_error`` or ``rail_blocked`` and ``detail`` says why.
    """
    from rails import RailConfig, check_source

    from .patch import PatchError, apply_unified_diff

    try:
        changed = apply_unified_diff(proposal.diff, files, cfg.editable_files)
    except PatchError as exc:
        return Checked(None, "patch_failed", str(exc))
    rail_cfg = RailConfig(**cfg.rail_settings())
    verdicts = []
    for name, text in changed.items():
        for v in check_source(files.get(name), text, rail_cfg):
            verdicts.append({"file": name, "rule": v.rule, "line": v.line, "message": v.message, "hint": v.hint})
    if verdicts:
        outcome = "syntax_error" if all(v["rule"] == "syntax" for v in verdicts) else "rail_blocked"
        detail = "; ".join(f"{v['file']}:{v['line']}: [{v['rule']}] {v['message']}" for v in verdicts)
        return Checked(None, outcome, detail, tuple(verdicts))
    if all(changed[n] == files.get(n) for n in changed):
        return Checked(None, "patch_failed", "the diff changes nothing")
    return Checked(changed)


def decide(run_outcome: str, val_bpb: Optional[float], best: Optional[float]) -> str:
    """Greedy keep policy (Karpathy's loop): ``improved`` when a scored run beats ``best``
    strictly (or there is no best yet), ``not_improved`` otherwise; failures keep their outcome."""
    if run_outcome != "ok":
        return run_outcome
    return "improved" if best is None or val_bpb < best else "not_improved"


class ExperimentRunner:
    """Runs numbered experiments in one sandbox and records each, in the write order of the
    module docstring (in-flight marker first, marker cleared last).

    Args:
        sandbox: the git sandbox, checked out on its experiment branch with a clean tree.
        ledger: where rows go.
        cfg: the sandbox's settings.
        agent_name: the agent spec recorded in trailers and rows.
    """

    def __init__(self, sandbox: Sandbox, ledger: Ledger, cfg: HarnessConfig, agent_name: str):
        self.sandbox, self.ledger, self.cfg, self.agent_name = sandbox, ledger, cfg, agent_name

    def run_dir(self, n: int) -> Path:
        """``runs/<n>/`` of the sandbox."""
        return self.sandbox.path / "runs" / str(n)

    def record_refusal(self, n: int, proposal: Optional[Proposal], outcome: str, detail: str,
                       started: float, usage: Usage, verdicts=(), **fields) -> ExperimentRecord:
        """Record an experiment that never ran (``llm_error``, ``patch_failed``, rail refusals):
        one ledger append, no commit, no marker (a torn row is cut at the next start).

        Raises:
            LedgerError: the row could not be written (nothing partial is kept).
        """
        best, _ = self.ledger.best()
        desc = proposal.description if proposal else "no proposal"
        rec = self.make_record(n, outcome, f"{desc} [{outcome}: {detail}]"[:300], started, usage,
                               parent=self.sandbox.head(), parent_val_bpb=best, detail=detail,
                               proposal_format=proposal.format if proposal else None,
                               knob=proposal.knob if proposal else None, rail_verdicts=list(verdicts), **fields)
        with deferred_signals():
            self.ledger.append(rec)
        return rec

    def run(self, n: int, proposal: Optional[Proposal], new_files: dict, started: float,
            on_tick: Callable[[float], None] | None = None,
            on_commit: Callable[[str], None] | None = None, retry_of: Optional[int] = None) -> ExperimentRecord:
        """Commit ``new_files``, run, decide, move the branch and record experiment ``n``.

        ``proposal`` None means the baseline (an empty commit of the current best); ``retry_of``
        names the preempted experiment this one repeats. On KeyboardInterrupt the run is killed,
        the commit is kept under the discarded refs, the tree is reset, the experiment is recorded
        as ``interrupted``, and the interrupt is re-raised.

        Raises:
            LedgerError: the row could not be written; git is final and the marker keeps the
                row, which the next start writes.
            OSError: the marker could not be written (before the commit: nothing happened).
        """
        best, _ = self.ledger.best()
        parent = self.sandbox.head()
        desc = proposal.description if proposal else BASELINE
        usage = proposal.usage if proposal else Usage()
        marker = {"experiment": n, "phase": "committing", "parent": parent, "description": desc,
                  "started_at": started, "parent_val_bpb": best, "usage": asdict(usage), "retry_of": retry_of,
                  "proposal_format": proposal.format if proposal else "baseline",
                  "knob": proposal.knob if proposal else None, "attempts": 1}
        trailers = {"Experiment": n, "Status": "running", "Parent-Val-Bpb": _fmt(best), "Agent": self.agent_name}
        with deferred_signals():
            write_marker(self.sandbox.path, marker)
            point("before_commit")
            commit = self.sandbox.commit_files(new_files, commit_message(desc, trailers))
            point("after_commit")
            marker.update(phase="running", commit=commit)
            write_marker(self.sandbox.path, marker)
            if on_commit:
                on_commit(commit)
        return self.execute(marker, on_tick)

    def execute(self, marker: dict, on_tick: Callable[[float], None] | None = None) -> ExperimentRecord:
        """Run the committed experiment that ``marker`` describes (HEAD is its ``Status:
        running`` commit), decide and record it. Also used to re-run an interrupted experiment.

        Raises:
            KeyboardInterrupt: after the experiment was recorded as ``interrupted``.
            LedgerError: as :meth:`run`.
        """
        from .runner import run_experiment

        n = marker["experiment"]
        before = fingerprint(self.sandbox.path)
        try:
            res = run_experiment(self.cfg.command, self.sandbox.path, self.run_dir(n), self.cfg.time_budget_s,
                                 self.cfg.hard_limit_s, self.cfg.over_budget_tolerance_s, on_tick)
            tampered = check_after_run(self.sandbox, before)
        except KeyboardInterrupt:
            with deferred_signals():
                self.conclude(marker, self.record_of(marker, "interrupted", detail="stopped by the user"))
            raise
        point("after_run")
        outcome = "integrity_violation" if tampered else decide(res.outcome, res.val_bpb, marker["parent_val_bpb"])
        rec = self.record_of(marker, outcome, val_bpb=res.val_bpb, run_s=round(res.wall_s, 3), train_s=res.train_s,
                             peak_mem_gb=round(res.peak_mem_gb, 3), detail=tampered or res.detail)
        with deferred_signals():
            self.conclude(marker, rec)
        return rec

    def record_of(self, marker: dict, outcome: str, **fields) -> ExperimentRecord:
        """The ledger record of the experiment ``marker`` describes, ended with ``outcome``."""
        return self.make_record(marker["experiment"], outcome, marker["description"], marker["started_at"],
                                Usage(**marker.get("usage", {})), parent=marker["parent"],
                                parent_val_bpb=marker["parent_val_bpb"], proposal_format=marker.get("proposal_format"),
                                knob=marker.get("knob"), retry_of=marker.get("retry_of"), **fields)

    def conclude(self, marker: dict, rec: ExperimentRecord) -> ExperimentRecord:
        """Write a decided experiment: the marker takes the record, then the final trailers, the
        branch move or reset, the ledger row (unless one exists), and the marker is cleared.
        Each step is idempotent, so a start after a crash re-runs this from the marker."""
        n = marker["experiment"]
        write_marker(self.sandbox.path, {**marker, "phase": "deciding", "record": asdict(rec)})
        point("before_trailers")
        rec.commit = self.finish(n, marker["parent"], marker["description"], rec.outcome, rec.val_bpb,
                                 marker["parent_val_bpb"])
        if all(r["experiment"] != n for r in self.ledger.records()):
            self.ledger.append(rec)
        point("after_row")
        clear_marker(self.sandbox.path)
        return rec

    def finish(self, n: int, parent: str, desc: str, outcome: str, val_bpb, best) -> str:
        """Write the final trailers on HEAD, then keep it (branch stays) or discard it (ref under
        ``refs/autoresearch/discarded/<n>``, reset to ``parent``). Returns the experiment's sha.

        Idempotent: steps already done (HEAD already amended, already discarded) are skipped.

        Raises:
            SandboxError: experiment ``n``'s commit is neither HEAD nor under the discarded refs.
        """
        from .ledger import STATUS_OF

        status = STATUS_OF[outcome]
        head = parse_trailers(self.sandbox.head_message())
        if head.get("Experiment") != str(n):
            commit = self.sandbox.discarded_refs().get(n)
            if commit is None:
                raise SandboxError(f"experiment {n}'s commit is neither HEAD nor refs/autoresearch/discarded/{n}; "
                                   "inspect `git log --all` before starting again.")
            return commit
        commit = self.sandbox.head()
        if head.get("Status") == "running":
            trailers = {"Experiment": n, "Status": status, "Outcome": outcome, "Val-Bpb": _fmt(val_bpb),
                        "Parent-Val-Bpb": _fmt(best), "Agent": self.agent_name}
            commit = self.sandbox.amend_message(commit_message(desc, trailers))
            point("after_trailers")
        if status != "keep":
            self.sandbox.discard(n, parent)
        return commit

    def make_record(self, n, outcome, desc, started, usage: Usage, **fields) -> ExperimentRecord:
        """An :class:`ExperimentRecord` of experiment ``n`` started at ``started`` (epoch seconds),
        with the agent's ``usage`` and any other record ``fields``."""
        return ExperimentRecord(
            experiment=n, outcome=outcome, description=desc, agent=self.agent_name,
            started_at=datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            wall_s=round(time.time() - started, 3), llm_calls=usage.llm_calls, tool_calls=usage.tool_calls,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            llm_s=round(usage.llm_s, 3), retries=usage.retries, **fields,
        )


def _fmt(val) -> Optional[str]:
    return None if val is None else f"{val:.6f}"
