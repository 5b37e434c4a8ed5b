"""One experiment, end to end: check -> commit -> run -> decide -> record.

Data flows one way (DESIGN.md): the proposal is validated (unified diff parses and applies, touches
only editable files, every rail passes), committed on the experiment branch, run with the time box,
judged by the keep policy (:mod:`harness.decisions`: a promising candidate of the ``noise`` policy
runs again, with other seeds, as confirmation runs), and recorded in the ledger. A refused proposal
is recorded too (``patch_failed``, ``syntax_error``, ``rail_blocked``, ``duplicate``) without a
commit, its diff kept in ``runs/<n>/proposal.diff``. A repeat of the best (baseline repeats,
re-measures for drift) runs HEAD again and is recorded as one row.

Write order of one experiment that runs (crash consistency). Each numbered write is atomic on its
own (an ``os.replace``, a git ref update, an fsynced append); the names in brackets are the
:mod:`harness.faults` points the fault-injection tests kill the harness at:

1. ``runs/<n>/proposal.diff`` (the proposal, for the human; not part of the record).
2. ``.harness/inflight.json``, phase ``committing``: number, parent sha, description, start time,
   the proposal's format and LLM usage [before_commit].
3. the commit of the edit with ``Status: running`` [after_commit]; the marker, phase ``running``,
   gets its sha.
4. the run (the child process; nothing of ours is written) [after_run]; a promising candidate:
   the marker, phase ``confirming``, gets the runs so far before each confirmation run (its
   number is the candidate's plus j, its log ``runs/<n+j>/``).
5. the marker, phase ``deciding``, gets the complete ledger record and the confirmation rows
   [before_trailers].
6. ``git commit --amend`` with the final trailers (``Status: keep|discard|crash``) [after_trailers].
7. discard only: ``refs/autoresearch/discarded/<n>`` [after_discard_ref], then ``git reset --hard``
   to the parent.
8. the rows: trajectory.jsonl [between_ledger_files], then results.tsv [after_row]; the candidate's
   row first, then its confirmation rows.
9. the marker is removed.

After a kill anywhere, :func:`harness.reconcile.reconcile` reads the marker and git and finishes
the job: before 3 nothing happened (the tree is reset and the number is used again); between 3
and 5 the run was cut short (recorded ``interrupted``, or run again); from 5 on the decision is
known and steps 6-9 are completed from the marker; in phase ``confirming`` the candidate is
decided on the runs it has (a confirmation cut short keeps nothing). Refusals and ``llm_error``
rows are a single append (8) with no marker. A repeat writes the marker (phase ``repeating``;
SEED of train.py changed in the work tree for its seed), runs, restores train.py, appends its row
and clears the marker; after a kill its number is used again.

With several runners (:mod:`harness.runners`) the same steps happen off the branch, each
experiment with its own marker (``.harness/inflight/<n>.json``): 3 is a commit on the parent made
without moving the branch, under ``refs/autoresearch/running/<n>``, checked out in its own work
tree (``.harness/worktrees/<n>``), where 4 runs; 6 is a new commit of the same tree with the final
trailers; 7 is, for a keep, ``git reset --hard`` of the branch to it (the branch is still at the
parent: the decision saw to it) and otherwise the discarded ref; then the running ref and the
work tree go. Commits, decisions and rows happen one at a time under :attr:`ExperimentRunner.lock`;
only the runs overlap. Rows land in the order experiments end, so numbers may come out of order.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from .agents.base import Proposal, Usage
from .config import HarnessConfig
from .critical import deferred_signals
from .curves import curve_of_run
from .decisions import best_estimate, drift, file_key, judge, noise, pooled, seeded
from .faults import point
from .inflight import clear_marker, write_marker
from .integrity import check_after_run, fingerprint
from .ledger import STATUS_OF, ExperimentRecord, Ledger, next_number
from .optimiser import GitFiles
from .runners import Place, worktree_of
from .sandbox import DISCARDED_PREFIX, RUNNING_PREFIX, Sandbox, SandboxError, commit_message, parse_trailers
from .surrogate import model_evidence

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


class ExperimentRunner:
    """Runs numbered experiments in one sandbox and records each, in the write order of the
    module docstring (in-flight marker first, marker cleared last).

    Args:
        sandbox: the git sandbox, checked out on its experiment branch with a clean tree.
        ledger: where rows go.
        cfg: the sandbox's settings (``cfg.policy`` decides).
        agent_name: the agent spec recorded in trailers and rows.
        measure: runs one experiment; ``measure(run_dir, on_tick, place) -> RunResult`` where
            ``place`` (:class:`harness.runners.Place`) says which work tree and device. Default:
            the local subprocess runner (:func:`harness.runner.run_experiment`) with the
            sandbox's command and time box; a benchmark passes a simulated one.

    Attributes:
        lock: held while git, the markers and the ledger are written (several runners share
            this runner; their experiments' runs overlap, nothing else does).
        flying: experiments of several runners in flight: number -> ``{"description", "file_key"}``.
    """

    def __init__(self, sandbox: Sandbox, ledger: Ledger, cfg: HarnessConfig, agent_name: str, measure=None):
        self.sandbox, self.ledger, self.cfg, self.agent_name = sandbox, ledger, cfg, agent_name
        self.measure = measure or self._subprocess
        self.lock = threading.RLock()
        self.flying: dict[int, dict] = {}
        self._highest = 0
        self._head_files: tuple = (None, {})
        self._last_verdict: tuple = (None, None)

    def _subprocess(self, run_dir: Path, on_tick, place: Place):
        from .runner import run_experiment

        if place.remote is not None:
            return place.remote.run(self.cfg, place, run_dir, on_tick)
        return run_experiment(self.cfg.command, place.path, run_dir, self.cfg.time_budget_s,
                              self.cfg.hard_limit_s, self.cfg.over_budget_tolerance_s, on_tick,
                              checkpoint=self.cfg.checkpoints != "none", extra_env=place.env or None,
                              cpus=place.cpus, evaluation=self.cfg.evaluation)

    def reserve(self) -> int:
        """The next free experiment number (above every recorded one and every one handed out
        by this runner), taken. Call it holding :attr:`lock`."""
        with self.lock:
            self._highest = max(next_number(self.ledger.records()), self._highest + 1)
            return self._highest

    def run_dir(self, n: int) -> Path:
        """``runs/<n>/`` of the sandbox."""
        return self.sandbox.path / "runs" / str(n)

    def files_at_head(self) -> dict[str, str]:
        """The editable files of the current best (HEAD): name -> text (read from git once per
        HEAD commit; a copy)."""
        with self.lock:
            head = self.sandbox.head()
            if self._head_files[0] != head:
                self._head_files = (head, {f: self.sandbox.read(f) for f in self.cfg.editable_files})
            return dict(self._head_files[1])

    def record_refusal(self, n: int, proposal: Optional[Proposal], outcome: str, detail: str,
                       started: float, usage: Usage, verdicts=(), **fields) -> ExperimentRecord:
        """Record an experiment that never ran (``llm_error``, ``patch_failed``, rail refusals,
        ``duplicate``): one ledger append, no commit, no marker (a torn row is cut at the next start).

        Raises:
            LedgerError: the row could not be written (nothing partial is kept).
        """
        best, _ = self.ledger.best()
        desc = proposal.description if proposal else "no proposal"
        rec = self.make_record(n, outcome, f"{desc} [{outcome}: {detail}]"[:300], started, usage,
                               parent=self.sandbox.head(), parent_val_bpb=best, detail=detail,
                               proposal_format=proposal.format if proposal else None,
                               knob=proposal.knob if proposal else None, rail_verdicts=list(verdicts), **fields)
        with self.lock, deferred_signals():
            self.ledger.append(rec)
        return rec

    def evidence(self, records: Optional[list] = None) -> dict:
        """What a decision made now compares with: ``best`` (``{"val_bpb", "runs", "experiment"}``
        of the best's figure, or None), ``noise_sd`` (bits per byte, or None) and ``noise_df``."""
        records = self.ledger.records() if records is None else records
        est = best_estimate(records)
        best = None if est is None else {"val_bpb": est.val_bpb, "runs": est.runs, "experiment": est.experiment}
        nz = noise(records)
        return {"best": best, "noise_sd": nz.sd, "noise_df": nz.df}

    def run(self, n: int, proposal: Optional[Proposal], new_files: dict, started: float,
            on_tick: Callable[[float], None] | None = None,
            on_commit: Callable[[str], None] | None = None, retry_of: Optional[int] = None,
            may_confirm: Callable[[int], bool] = lambda n: True, place: Optional[Place] = None
            ) -> list[ExperimentRecord]:
        """Commit ``new_files``, run, decide (with confirmation runs where the policy asks and
        ``may_confirm(number)`` allows), move the branch and record experiment ``n``.

        ``proposal`` None means the baseline (an empty commit of the current best); ``retry_of``
        names the preempted experiment this one repeats; ``place`` with an ``index`` is one of
        several runners (the experiment runs off the branch in its own work tree, see the module
        docstring; None: here, on the branch). On KeyboardInterrupt the run is killed,
        the commit is kept under the discarded refs, the tree is reset, the experiment is recorded
        as ``interrupted`` (or, during a confirmation run, decided on the runs it has), and the
        interrupt is re-raised.

        Returns:
            The rows written: the experiment's, then its confirmation runs' (numbers n+1, ...).

        Raises:
            LedgerError: the row could not be written; git is final and the marker keeps the
                row, which the next start writes.
            OSError: the marker could not be written (before the commit: nothing happened).
        """
        several = place is not None and place.index is not None
        with self.lock, deferred_signals():
            ev = self.evidence()
            parent = self.sandbox.head()
            desc = proposal.description if proposal else BASELINE
            usage = proposal.usage if proposal else Usage()
            files = {**self.files_at_head(), **new_files}
            marker = {"experiment": n, "phase": "committing", "parent": parent, "description": desc,
                      "started_at": started, "parent_val_bpb": (ev["best"] or {}).get("val_bpb"),
                      "usage": asdict(usage), "retry_of": retry_of,
                      "proposal_format": proposal.format if proposal else "baseline",
                      "knob": proposal.knob if proposal else None, "attempts": 1, "file_key": file_key(files), **ev}
            if several:
                marker.update(runner=place.index, worktree=str(worktree_of(self.sandbox.path, n)))
            message = commit_message(desc, {"Experiment": n, "Status": "running",
                                            "Parent-Val-Bpb": _fmt(marker["parent_val_bpb"]),
                                            "Agent": self.agent_name})
            write_marker(self.sandbox.path, marker)
            point("before_commit")
            if several:
                commit = self.sandbox.commit_off_branch(new_files, parent, message, n)
                place = place.at(self.sandbox.add_worktree(Path(marker["worktree"]), commit))
                self.flying[n] = {"description": desc, "file_key": marker["file_key"]}
            else:
                commit = self.sandbox.commit_files(new_files, message)
            point("after_commit")
            marker.update(phase="running", commit=commit)
            write_marker(self.sandbox.path, marker)
            if on_commit:
                on_commit(commit)
        return self.execute(marker, on_tick, may_confirm, place)

    def execute(self, marker: dict, on_tick: Callable[[float], None] | None = None,
                may_confirm: Callable[[int], bool] = lambda n: True,
                place: Optional[Place] = None) -> list[ExperimentRecord]:
        """Run the committed experiment that ``marker`` describes (HEAD is its ``Status:
        running`` commit; with several runners, ``place`` is its work tree), confirm, decide and
        record it. Also used to re-run an interrupted experiment. Returns the rows written (see
        :meth:`run`).

        Raises:
            KeyboardInterrupt: after the experiment was recorded.
            LedgerError: as :meth:`run`.
        """
        n = marker["experiment"]
        several = marker.get("runner") is not None
        smoke = self.cfg.smoke_each and marker.get("proposal_format") not in (None, "baseline") and \
            self.measure == self._subprocess and (place is None or place.remote is None)
        try:
            first = self._measure(self.run_dir(n), on_tick, smoke=smoke, place=place)
        except KeyboardInterrupt:
            with self.lock, deferred_signals():
                self.conclude(marker, self.record_of(marker, "interrupted", detail="stopped by the user"))
            raise
        point("after_run")
        runs = [{**first, "number": n}]
        while first["outcome"] == "ok" and self._verdict(marker, runs).action == "confirm":
            with self.lock, deferred_signals():
                number = self.reserve() if several else n + len(runs)
                if not may_confirm(number):
                    if several:
                        self._highest -= 1  # taken under the lock just now: nobody took one after it
                    break
                marker.update(phase="confirming", runs=runs, next_run=number)
                write_marker(self.sandbox.path, marker)
            try:
                runs.append({**self._measure(self.run_dir(number), on_tick, len(runs), place=place),
                             "number": number})
            except KeyboardInterrupt:
                with self.lock, deferred_signals():
                    self.settle(marker, "a confirmation run was stopped by the user")
                raise
        with self.lock, deferred_signals():
            return self.settle({**marker, "runs": runs})

    def settle(self, marker: dict, cut_short: str = "") -> list[ExperimentRecord]:
        """Decide experiment ``marker`` on the runs it holds (``marker["runs"]``: the first, then
        confirmations) and write it; ``cut_short`` says why the confirmation stopped early (it is
        then not kept). Used after the runs, and by the repair of a kill during confirmation."""
        runs = marker["runs"]
        first, confirms = runs[0], runs[1:]
        if first["outcome"] != "ok":
            return [self.conclude(marker, self.record_of(marker, first["outcome"], first["ended_at"],
                                                         **_fields(first)))]
        if cut_short and marker.get("runner") is not None and marker.get("next_run") is not None:
            runs = runs + [{"outcome": "interrupted", "number": marker["next_run"], "val_bpb": None,
                            "started_at": time.time(), "ended_at": time.time(), "detail": cut_short}]
        verdict = self._verdict(marker, runs)
        evidence = dict(verdict.evidence)
        if verdict.action == "confirm":  # more runs were wanted: not kept
            evidence["reason"] = f"{evidence.get('reason', '')}; not kept: {cut_short or 'confirmation cut short'}"
        moved = verdict.action == "keep" and marker.get("runner") is not None and \
            self.sandbox.head() != marker["parent"]
        if moved:
            now = parse_trailers(self.sandbox.head_message()).get("Experiment", "?")
            evidence.update(moved_to=int(now) if now.isdigit() else None, reason=(
                f"{evidence.get('reason', '')}; not kept: experiment #{now} became the best while this one ran, "
                "so its edit runs again on the new best"))
        outcome = "improved" if verdict.action == "keep" and not moved else "not_improved"
        rec = self.record_of(marker, outcome, decision=evidence, ended=first["ended_at"], **_fields(first))
        extra = [self.make_record(r.get("number", marker["experiment"] + j),
                                  "confirmation" if r["outcome"] == "ok" else r["outcome"],
                                  f"confirmation {j} of #{marker['experiment']}", r["started_at"], Usage(),
                                  ended=r["ended_at"], parent=marker["parent"], parent_val_bpb=marker["parent_val_bpb"],
                                  repeat_of=marker["experiment"], file_key=marker.get("file_key"), **_fields(r))
                 for j, r in enumerate(confirms, 1)]
        return [self.conclude(marker, rec, extra), *extra]

    def _verdict(self, marker: dict, runs: list[dict]):
        """The policy's verdict on ``runs`` of experiment ``marker`` (:func:`judge`); the last one is
        reused for the same runs (the confirmation loop's last verdict is also the one
        :meth:`settle` writes: the model is fitted once)."""
        key = (marker["experiment"], tuple((r["outcome"], r.get("val_bpb")) for r in runs))
        if self._last_verdict[0] == key:
            return self._last_verdict[1]
        vals = [r["val_bpb"] for r in runs if r["outcome"] == "ok"]
        failed = next((r["outcome"] for r in runs[1:] if r["outcome"] != "ok"), None)
        sd, df = pooled(marker.get("noise_sd"), marker.get("noise_df", 0), vals)
        try:
            model, problem = (None if failed else self._model(marker, vals, sd)), None
        except (OSError, SyntaxError, ValueError, ArithmeticError) as exc:
            model, problem = None, f"the model of the knob variants failed ({exc}); the t-test decided alone"
        verdict = judge(self.cfg.policy, vals, failed, marker.get("best"), sd, df, model)
        if problem:
            verdict.evidence["model_error"] = problem
        self._last_verdict = (key, verdict)
        return verdict

    def _model(self, marker: dict, vals: list[float], sd: Optional[float]):
        """The pooled evidence of :mod:`harness.surrogate` on a candidate that looks better than
        the best on its own runs, or None (not asked for or not applicable).

        Raises:
            OSError, SyntaxError, ValueError, ArithmeticError: the model could not be built.
        """
        best, p = marker.get("best"), self.cfg.policy
        if p.keep != "noise" or not p.surrogate or best is None or not sd or not vals or \
                statistics.fmean(vals) >= best["val_bpb"] or not marker.get("commit"):
            return None
        records = self.ledger.records()
        top = next((r for r in records if r["experiment"] == best.get("experiment")), None)
        if top is None or not top.get("commit"):
            return None
        read = GitFiles(self.sandbox.path)
        return model_evidence(records, read, top["commit"], read(marker["commit"]), vals, sd)

    def repeat(self, n: int, of: dict, index: int, reason: str, started: float,
               on_tick: Callable[[float], None] | None = None, place: Optional[Place] = None) -> ExperimentRecord:
        """Run the best (HEAD, experiment ``of``) again as experiment ``n``: a baseline repeat or a
        re-measure for drift; ``index`` j > 0 runs it with SEED + 1000 j. Records one row
        (``remeasure``, or the failure), with ``drift`` when the value moved beyond the noise.
        ``place``: the device and cores to run with (its work tree is the sandbox's; None: as is).

        Raises:
            KeyboardInterrupt: after the row was recorded as ``interrupted``.
            LedgerError: the row could not be written.
        """
        marker = {"experiment": n, "phase": "repeating", "parent": self.sandbox.head(), "started_at": started,
                  "description": f"re-measure of #{of['experiment']}: {reason}", "repeat_of": of["experiment"]}
        fields = dict(parent=marker["parent"], commit=marker["parent"], repeat_of=of["experiment"],
                      file_key=of.get("file_key"), proposal_format="repeat")
        with deferred_signals():
            write_marker(self.sandbox.path, marker)
        try:
            run = self._measure(self.run_dir(n), on_tick, index, place=place)
        except KeyboardInterrupt:
            with deferred_signals():
                self.ledger.append(self.make_record(n, "interrupted", marker["description"], started, Usage(),
                                                    detail="stopped by the user", **fields))
                clear_marker(self.sandbox.path)
            raise
        records = self.ledger.records()
        est = best_estimate(records)
        moved = None
        if run["outcome"] == "ok" and est is not None and index == 0:
            moved = drift(run["val_bpb"], est, noise(records), self.cfg.policy)
        rec = self.make_record(n, "remeasure" if run["outcome"] == "ok" else run["outcome"], marker["description"],
                               started, Usage(), parent_val_bpb=None if est is None else est.val_bpb, drift=moved,
                               **fields, **_fields(run))
        with deferred_signals():
            self.ledger.append(rec)
            clear_marker(self.sandbox.path)
        return rec

    def _measure(self, run_dir: Path, on_tick, index: int = 0, smoke: bool = False,
                 place: Optional[Place] = None) -> dict:
        """Run the commit checked out at ``place`` (default: HEAD of the sandbox; for ``index``
        j > 0 with its seed changed in the work tree, restored after) and return the run's
        record fields with ``outcome`` ``ok`` or the failure, and its ``started_at``/``ended_at``
        (epoch seconds). With ``smoke``, a smoke run (:func:`harness.preflight.smoke_run`) comes
        first, inside the same integrity check; when it fails, its result is the run's and the
        full budget is not spent. A run in a linked work tree is checked there and in the sandbox."""
        place = place or Place(self.sandbox.path)
        tree = self.sandbox if place.path == self.sandbox.path else Sandbox(place.path, self.sandbox.branch)
        name = self.cfg.editable_files[0]
        committed = tree.read(name)
        text, seed = seeded(committed, index)
        path = tree.path / name
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        started = time.time()
        if seed is not None:
            path.write_text(text, encoding="utf-8")
        try:
            before = fingerprint(tree.path)
            before_sandbox = fingerprint(self.sandbox.path) if tree is not self.sandbox else None
            res = (self._smoke_failure(run_dir, on_tick, place) if smoke else None) or \
                self.measure(run_dir, on_tick, place)
            changed = seed is not None and path.read_text(encoding="utf-8") != text
        finally:
            if seed is not None:
                path.write_text(committed, encoding="utf-8")
        tampered = check_after_run(tree, before) or (f"{name} changed during the run" if changed else "")
        if before_sandbox is not None and not tampered:
            with self.lock:
                tampered = check_after_run(self.sandbox, before_sandbox)
        fields = {"outcome": "integrity_violation" if tampered else res.outcome, "val_bpb": res.val_bpb,
                  "run_s": round(res.wall_s, 3), "train_s": res.train_s, "peak_mem_gb": round(res.peak_mem_gb, 3),
                  "detail": tampered or res.detail, "seed": seed,
                  "load_1m": None if load is None else round(load, 2), "started_at": started,
                  "ended_at": time.time()}
        for key in ("steps", "tokens", "tokens_per_s", "mfu", "gpu_clock_mhz", "sample_s", "checkpoint_bytes",
                    "gpu_energy_j", "cpu_energy_j", "gpu_s"):
            value = getattr(res, key, None)
            fields[key] = round(value, 4) if isinstance(value, float) else value
        fields["curve"] = curve_of_run(res.log_path, self.cfg.time_budget_s) if res.log_path else None
        return fields

    def _smoke_failure(self, run_dir: Path, on_tick, place: Place):
        """The smoke run's :class:`harness.runner.RunResult` when it failed (its detail says so),
        else None (it scored, or prepare.py has no smoke setting)."""
        from .preflight import smoke_run

        res = smoke_run(place.path, self.cfg, run_dir, on_tick, place.env, place.cpus)
        if res is None or res.outcome == "ok":
            return None
        return replace(res, detail=f"caught by the smoke run ({res.train_s or 0:.0f} s of training) before the full "
                                   f"time budget: {res.detail}")

    def record_of(self, marker: dict, outcome: str, ended: Optional[float] = None, **fields) -> ExperimentRecord:
        """The ledger record of the experiment ``marker`` describes, ended with ``outcome`` (at
        ``ended``, epoch seconds; default now)."""
        return self.make_record(marker["experiment"], outcome, marker["description"], marker["started_at"],
                                Usage(**marker.get("usage", {})), ended, parent=marker["parent"],
                                parent_val_bpb=marker["parent_val_bpb"], proposal_format=marker.get("proposal_format"),
                                knob=marker.get("knob"), retry_of=marker.get("retry_of"),
                                file_key=marker.get("file_key"), **fields)

    def conclude(self, marker: dict, rec: ExperimentRecord, extra: list = ()) -> ExperimentRecord:
        """Write a decided experiment: the marker takes the record (and ``extra``, its
        confirmation rows), then the final trailers, the branch move or reset, the ledger rows
        (those not written yet), and the marker is cleared. Each step is idempotent, so a start
        after a crash re-runs this from the marker."""
        n = marker["experiment"]
        several = marker.get("runner") is not None
        with self.lock:
            write_marker(self.sandbox.path, {**marker, "phase": "deciding", "record": asdict(rec),
                                             "extra": [asdict(r) for r in extra]})
            point("before_trailers")
            if several:
                rec.commit = self.finish_off_branch(n, marker["parent"], marker["description"], rec,
                                                    Path(marker["worktree"]))
            else:
                rec.commit = self.finish(n, marker["parent"], marker["description"], rec)
            written = {r["experiment"] for r in self.ledger.records()}
            for row in (rec, *extra):
                row.commit = rec.commit
                if row.experiment not in written:
                    self.ledger.append(row)
            point("after_row")
            clear_marker(self.sandbox.path, marker)
            self.flying.pop(n, None)
        return rec

    def finish(self, n: int, parent: str, desc: str, rec: ExperimentRecord) -> str:
        """Write the final trailers on HEAD, then keep it (branch stays) or discard it (ref under
        ``refs/autoresearch/discarded/<n>``, reset to ``parent``). Returns the experiment's sha.

        Idempotent: steps already done (HEAD already amended, already discarded) are skipped.

        Raises:
            SandboxError: experiment ``n``'s commit is neither HEAD nor under the discarded refs.
        """
        status = STATUS_OF[rec.outcome]
        head = parse_trailers(self.sandbox.head_message())
        if head.get("Experiment") != str(n):
            commit = self.sandbox.discarded_refs().get(n)
            if commit is None:
                raise SandboxError(f"experiment {n}'s commit is neither HEAD nor refs/autoresearch/discarded/{n}; "
                                   "inspect `git log --all` before starting again.")
            return commit
        commit = self.sandbox.head()
        if head.get("Status") == "running":
            commit = self.sandbox.amend_message(commit_message(desc, trailers(rec, self.agent_name)))
            point("after_trailers")
        if status != "keep":
            self.sandbox.discard(n, parent)
        return commit

    def finish_off_branch(self, n: int, parent: str, desc: str, rec: ExperimentRecord, worktree: Path) -> str:
        """:meth:`finish` for an experiment of several runners: a new commit of its running
        commit's tree with the final trailers, then for a keep ``git reset --hard`` of the branch
        to it (the branch must still be at ``parent``), else ``refs/autoresearch/discarded/<n>``;
        then its running ref and ``worktree`` are removed. Returns the experiment's sha.

        Idempotent: a commit already on the branch or under the discarded refs is taken as done.

        Raises:
            SandboxError: experiment ``n`` has no commit anywhere, or it is to be kept while the
                branch is no longer at its parent (a decision bug; nothing is moved).
        """
        status = STATUS_OF[rec.outcome]
        head = parse_trailers(self.sandbox.head_message())
        if head.get("Experiment") == str(n) and head.get("Status") != "running":
            commit = self.sandbox.head()
        elif n in (discarded := self.sandbox.discarded_refs()):
            commit = discarded[n]
        else:
            running = self.sandbox.running_refs().get(n)
            if running is None:
                raise SandboxError(f"experiment {n} has no commit under {RUNNING_PREFIX}/{n}, on the branch or under "
                                   f"the discarded refs; inspect `git log --all` before starting again.")
            if status == "keep" and self.sandbox.head() != parent:
                raise SandboxError(f"experiment {n} was to be kept but the branch moved from its parent {parent[:7]}; "
                                   "nothing was moved. Please report this.")
            commit = self.sandbox.recommit(running, commit_message(desc, trailers(rec, self.agent_name)))
            point("after_trailers")
            if status == "keep":
                self.sandbox.reset_hard(commit)
            else:
                self.sandbox.git.update_ref(f"{DISCARDED_PREFIX}/{n}", commit)
                point("after_discard_ref")
        self.sandbox.drop_running(n, worktree)
        return commit

    def make_record(self, n, outcome, desc, started, usage: Usage, ended: Optional[float] = None,
                    **fields) -> ExperimentRecord:
        """An :class:`ExperimentRecord` of experiment ``n`` started at ``started`` and ended at
        ``ended`` (epoch seconds; default now), with the agent's ``usage`` and any other record
        ``fields``."""
        return ExperimentRecord(
            experiment=n, outcome=outcome, description=desc, agent=self.agent_name,
            started_at=datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            wall_s=round((time.time() if ended is None else ended) - started, 3), llm_calls=usage.llm_calls, tool_calls=usage.tool_calls,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            llm_s=round(usage.llm_s, 3), retries=usage.retries, **fields,
        )


def trailers(rec: ExperimentRecord, agent_name: str) -> dict:
    """The final git trailers of an experiment's commit: number, status, outcome, val_bpb, the
    best's figure, what the run did (steps, tokens/s, MFU and SM clock on CUDA) and, under a decision, the
    evidence (runs, mean, noise, delta, z, the model's z where :mod:`harness.surrogate` was asked,
    the reason)."""
    d = rec.decision or {}
    out = {"Experiment": rec.experiment, "Status": STATUS_OF[rec.outcome], "Outcome": rec.outcome,
           "Val-Bpb": _fmt(rec.val_bpb), "Parent-Val-Bpb": _fmt(rec.parent_val_bpb),
           "Steps": rec.steps, "Tokens-Per-S": None if rec.tokens_per_s is None else f"{rec.tokens_per_s:.0f}",
           "Mfu": None if rec.mfu is None else f"{rec.mfu:.3f}",
           "Gpu-Clock-Mhz": None if rec.gpu_clock_mhz is None else f"{rec.gpu_clock_mhz:.0f}",
           "Runs": d.get("runs"), "Mean-Val-Bpb": _fmt(d.get("mean_val_bpb")),
           "Noise-Sd": _fmt(d.get("noise_sd")), "Delta": _fmt(d.get("delta")), "Z": d.get("z"),
           "Model-Z": d.get("model_z"), "Decision": d.get("reason"), "Agent": agent_name}
    return {k: v for k, v in out.items() if v is not None}


def _fields(run: dict) -> dict:
    """A run's record fields (``outcome``, its times and its number left out)."""
    return {k: v for k, v in run.items() if k not in ("outcome", "started_at", "ended_at", "number")}


def _fmt(val) -> Optional[str]:
    return None if val is None else f"{val:.6f}"
