"""Repair on start: whatever instant the last harness was killed at, leave git, results.tsv and
trajectory.jsonl complete and in agreement before the next experiment starts.

:func:`reconcile` runs under the sandbox lock, in this order:

1. kill an orphaned training run of the dead harness (its process group), and wait for (then
   remove) git lock files a killed git command left;
2. repair the ledger (:meth:`harness.ledger.Ledger.repair`): a torn last line is cut,
   results.tsv is completed from trajectory.jsonl;
3. settle the experiment named by the in-flight marker (:mod:`harness.inflight`), following the
   write order of :mod:`harness.experiment`: no commit yet -> the tree is reset and nothing is
   recorded (its number is used again); the run was cut short -> recorded ``interrupted`` (or,
   with ``on_interrupted="rerun"``, run again once); cut short during its confirmation runs ->
   decided on the runs it had (not kept); decided -> trailers, branch move or reset and rows are
   completed from the record the marker holds; a repeat of the best cut short -> nothing recorded.
   A HEAD still marked ``Status: running`` with no marker (an older harness) is recorded
   ``interrupted`` too;
   the experiments of several runners (:mod:`harness.runners`), one marker each, the same way,
   except that every one cut short is recorded (``interrupted``; ``rerun`` does not apply: their
   numbers were handed out in parallel, so none is used again), and their work trees are removed;
   a number one of them had taken but not yet written anywhere (killed between numbering and its
   first marker or row, while another runner recorded a later one) is recorded ``interrupted``
   (nothing ran), so that the numbers stay contiguous;
4. check out the experiment branch and drop any half-written edit of a tracked file.

:func:`verify` states the invariants the repair guarantees; the tests check them after every kill.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .agents.base import Usage
from .experiment import ExperimentRunner
from .inflight import clear_marker, read_marker, runner_markers, write_marker
from .ledger import STATUS_OF, ExperimentRecord, Ledger, results_row
from .runners import WORKTREES_DIR
from .sandbox import DISCARDED_PREFIX, Sandbox, parse_trailers

ON_INTERRUPTED = ("record", "rerun")
GIT_LOCK_WAIT_S = 5.0


@dataclass
class Reconciled:
    """What :func:`reconcile` did.

    Attributes:
        messages: one line per repair, for the user.
        interrupted: the experiment recorded as ``interrupted``, if any.
        rerun: the marker of an interrupted experiment to run again (HEAD is its commit), if any;
            pass it to :meth:`harness.experiment.ExperimentRunner.execute`.
    """

    messages: list = field(default_factory=list)
    interrupted: Optional[int] = None
    rerun: Optional[dict] = None


def reconcile(sandbox: Sandbox, ledger: Ledger, runner: ExperimentRunner,
              on_interrupted: str = "record") -> Reconciled:
    """Repair what a killed harness left (see the module docstring). Call it holding the lock.

    Args:
        on_interrupted: ``record`` (an experiment cut short is recorded ``interrupted``) or
            ``rerun`` (it runs again, once; a second interruption is recorded).

    Raises:
        LedgerError: the ledger could not be repaired (disk full, permissions).
        SandboxError: the branch is missing, or tracked files were edited by hand with no
            experiment in flight.
    """
    out = Reconciled()
    killed = kill_orphan_runs(sandbox.path)
    if killed:
        out.messages.append(f"killed {killed} training process(es) left running by the stopped harness")
    if clear_stale_git_locks(sandbox.path):
        out.messages.append("removed git lock files left by a killed git command")
    out.messages += ledger.repair()
    marker = read_marker(sandbox.path)
    repo = sandbox.repo
    if (marker is not None or runner_markers(sandbox.path)) and not repo.head.is_detached and \
            repo.active_branch.name == sandbox.branch:
        sandbox.reset_hard("HEAD")  # our own half-applied edit, if the kill came mid-commit
    sandbox.ensure_on_branch()
    if marker is None:
        marker = _marker_of_running_head(sandbox, ledger)
    if marker is not None:
        _settle(marker, sandbox, ledger, runner, on_interrupted, out)
    for marker in runner_markers(sandbox.path):
        _settle_off_branch(marker, sandbox, ledger, runner, out)
    _record_gaps(sandbox, ledger, runner, out)
    if (sandbox.path / WORKTREES_DIR).is_dir():
        for folder in (sandbox.path / WORKTREES_DIR).iterdir():
            sandbox.remove_worktree(folder)
    sandbox.reset_hard("HEAD")
    return out


def _settle_off_branch(marker: dict, sandbox: Sandbox, ledger: Ledger, runner: ExperimentRunner,
                       out: Reconciled) -> None:
    """Settle an experiment of several runners from its own marker (module docstring, step 3)."""
    n = marker["experiment"]
    row = next((r for r in ledger.records() if r["experiment"] == n), None)
    committed = n in sandbox.running_refs() or n in sandbox.discarded_refs() or \
        parse_trailers(sandbox.head_message()).get("Experiment") == str(n)
    if marker.get("record"):
        rec = runner.conclude(marker, ExperimentRecord.from_json(marker["record"]),
                              [ExperimentRecord.from_json(r) for r in marker.get("extra", [])])
        out.messages.append(f"experiment {n} had ended ({rec.outcome}) when the harness stopped; its record is "
                            "now complete")
    elif row is not None:  # only the clean-up was left
        sandbox.drop_running(n, Path(marker["worktree"]))
        clear_marker(sandbox.path, marker)
    elif not committed:
        sandbox.drop_running(n, Path(marker["worktree"]))
        ledger.append(runner.record_of(marker, "interrupted", detail="the harness was killed before this experiment's "
                                       "commit; nothing ran"))
        clear_marker(sandbox.path, marker)
        out.messages.append(f"experiment {n} was stopped before its commit: nothing ran; recorded as interrupted")
    elif marker.get("phase") == "confirming":
        rows = runner.settle(marker, "the harness was stopped during a confirmation run")
        out.messages.append(f"experiment {n} was stopped during its confirmation runs; decided on the "
                            f"{len(marker['runs'])} run(s) it had: {rows[0].outcome}")
    else:
        runner.conclude(marker, runner.record_of(marker, "interrupted",
                                                 detail="the harness was killed during this experiment"))
        out.interrupted = n
        out.messages.append(f"experiment {n} (runner {marker.get('runner')}) was interrupted by an earlier stop; "
                            "recorded")


def _record_gaps(sandbox: Sandbox, ledger: Ledger, runner: ExperimentRunner, out: Reconciled) -> None:
    """Record each number missing below the highest recorded one as ``interrupted`` (module
    docstring, step 3): with several runners, one was numbered and killed before it wrote anything
    while another recorded a later number. Every marker is settled by now, so nothing else holds it."""
    records = ledger.records()
    numbers = {r["experiment"] for r in records}
    for n in sorted(set(range(1, max(numbers, default=0))) - numbers):
        diff = runner.run_dir(n) / "proposal.diff"
        seen = f"; its proposal is in runs/{n}/proposal.diff" if diff.is_file() else ""
        ledger.append(runner.make_record(
            n, "interrupted", "unknown: stopped after it was numbered, before it was recorded", time.time(), Usage(),
            parent=sandbox.head(), parent_val_bpb=ledger.best()[0],
            detail=f"the harness was killed after numbering this experiment and before its first record; nothing "
                   f"ran{seen}"))
        out.messages.append(f"experiment {n} was stopped after it was numbered, before anything was recorded: "
                            "nothing ran; recorded as interrupted")


def _settle(marker: dict, sandbox: Sandbox, ledger: Ledger, runner: ExperimentRunner, on_interrupted: str,
            out: Reconciled) -> None:
    n = marker["experiment"]
    if marker.get("phase") == "repeating":  # a repeat of HEAD writes nothing before its row: run it again when due
        clear_marker(sandbox.path)
        if any(r["experiment"] == n for r in ledger.records()):
            return  # its row was written: only the marker was left
        out.messages.append(f"re-measure {n} was cut short by an earlier stop; nothing recorded, its number is used "
                            "again")
        return
    head = parse_trailers(sandbox.head_message())
    committed = head.get("Experiment") == str(n) or n in sandbox.discarded_refs()
    row = next((r for r in ledger.records() if r["experiment"] == n), None)
    if marker.get("record"):
        rec = runner.conclude(marker, ExperimentRecord.from_json(marker["record"]),
                              [ExperimentRecord.from_json(r) for r in marker.get("extra", [])])
        out.messages.append(f"experiment {n} had ended ({rec.outcome}) when the harness stopped; its record is "
                            "now complete")
    elif row is not None:  # recorded already: only git may lag behind (a HEAD of an older harness)
        runner.finish(n, marker["parent"], marker["description"], ExperimentRecord.from_json(row))
        clear_marker(sandbox.path)
    elif not committed:
        clear_marker(sandbox.path)
        out.messages.append(f"experiment {n} was stopped before its commit: nothing ran; its number is used again")
    elif marker.get("phase") == "confirming" and head.get("Status") == "running":
        rows = runner.settle(marker, "the harness was stopped during a confirmation run")
        out.messages.append(f"experiment {n} was stopped during its confirmation runs; decided on the "
                            f"{len(marker['runs'])} run(s) it had: {rows[0].outcome}")
    elif head.get("Status") == "running" and on_interrupted == "rerun" and marker.get("attempts", 1) < 2:
        marker = {**marker, "phase": "running", "commit": sandbox.head(), "started_at": time.time(),
                  "attempts": marker.get("attempts", 1) + 1}
        marker.pop("runs", None)
        write_marker(sandbox.path, marker)
        out.rerun = marker
        out.messages.append(f"experiment {n} was interrupted by an earlier stop; it runs again")
    else:
        runner.conclude(marker, runner.record_of(marker, "interrupted",
                                                 detail="the harness was killed during this experiment"))
        out.interrupted = n
        out.messages.append(f"experiment {n} was interrupted by an earlier stop; recorded, tree reset")


def _marker_of_running_head(sandbox: Sandbox, ledger: Ledger) -> Optional[dict]:
    """A marker for a HEAD commit marked ``Status: running`` that no marker describes."""
    commit = sandbox.repo.head.commit
    trailers = parse_trailers(commit.message)
    if trailers.get("Status") != "running" or not commit.parents:
        return None
    best, _ = ledger.best()
    return {"experiment": int(trailers.get("Experiment", ledger.next_experiment())), "phase": "running",
            "parent": commit.parents[0].hexsha, "description": commit.message.split("\n", 1)[0],
            "started_at": float(commit.committed_date), "parent_val_bpb": best, "commit": commit.hexsha,
            "attempts": 1}


def kill_orphan_runs(sandbox: Path) -> int:
    """SIGKILL the process groups of training runs of ``sandbox`` still alive (a killed harness
    leaves its child running: it has its own session). Found by the result-file variable in their
    environment (Linux ``/proc``; elsewhere nothing is found). Returns how many were killed."""
    from .runner import RESULT_ENV, pids_with_env

    needle = f"{RESULT_ENV}={Path(sandbox).resolve() / 'runs'}{os.sep}".encode()
    groups = set()
    for pid in pids_with_env(needle):
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            continue
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    return len(groups)


def clear_stale_git_locks(sandbox: Path, wait_s: float = GIT_LOCK_WAIT_S) -> bool:
    """Wait up to ``wait_s`` seconds for git's ``*.lock`` files (index, HEAD, refs) to go (a git
    command of the killed harness may still be finishing), then remove those left. True when
    some had to be removed."""
    gitdir = Path(sandbox) / ".git"

    def locks():
        return [*gitdir.glob("*.lock"), *gitdir.glob("refs/**/*.lock")]

    deadline = time.monotonic() + wait_s
    while locks() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = locks()
    for path in left:
        path.unlink(missing_ok=True)
    return bool(left)


def verify(sandbox: Sandbox, ledger: Ledger) -> list[str]:
    """Every way ``sandbox`` breaks the record's guarantees (empty: none):

    - no experiment in flight (no marker, no running ref, no work tree of several runners) and no
      uncommitted change to a tracked file;
    - results.tsv holds exactly the rows of trajectory.jsonl, in order;
    - experiment numbers are 1, 2, 3 ... with none missing or repeated (in that order with one
      runner; several runners record in the order experiments end);
    - each experiment with a commit: its trailers carry its number and status; a kept one is on the
      branch, a discarded or crashed one is ``refs/autoresearch/discarded/<n>``; a repeat
      (confirmation, re-measure) names an earlier experiment and carries its commit;
    - no discarded ref without a row; the branch points at the best (the last kept) commit.
    """
    problems = []
    if read_marker(sandbox.path) is not None or runner_markers(sandbox.path):
        problems.append("an experiment is still marked in flight")
    if sandbox.running_refs():
        problems.append(f"refs/autoresearch/running/ still names experiments {sorted(sandbox.running_refs())}")
    worktrees = sandbox.path / WORKTREES_DIR
    if worktrees.is_dir() and any(worktrees.iterdir()):
        problems.append(f"work trees of experiments are left in {worktrees}")
    if sandbox.repo.is_dirty(untracked_files=False):
        problems.append("tracked files differ from HEAD")
    records = ledger.records()
    expected = "".join(results_row(r) for r in records)
    try:
        actual = (ledger.results_path.read_text(encoding="utf-8").split("\n", 1) + [""])[1]
    except FileNotFoundError:
        actual = ""
    if actual != expected:
        problems.append("results.tsv does not match trajectory.jsonl row for row")
    numbers = [r["experiment"] for r in records]
    if sorted(numbers) != list(range(1, len(numbers) + 1)):
        problems.append(f"experiment numbers are not contiguous from 1: {numbers}")
    refs = sandbox.discarded_refs()
    on_branch = set(sandbox.git.rev_list("HEAD").split())
    commits = {r["experiment"]: r.get("commit") for r in records}
    for r in records:
        if r.get("commit") is None:
            continue
        n, status = r["experiment"], STATUS_OF[r["outcome"]]
        if r.get("repeat_of"):
            if commits.get(r["repeat_of"]) != r["commit"]:
                problems.append(f"experiment {n} repeats #{r['repeat_of']} but names another commit")
            continue
        trailers = parse_trailers(sandbox.repo.commit(r["commit"]).message)
        if trailers.get("Experiment") != str(n) or trailers.get("Status") != status:
            problems.append(f"experiment {n}: commit trailers say {trailers.get('Experiment')}/{trailers.get('Status')}")
        if status == "keep" and r["commit"] not in on_branch:
            problems.append(f"experiment {n} was kept but is not on the branch")
        if status != "keep" and refs.get(n) != r["commit"]:
            problems.append(f"experiment {n} ({status}) is not {DISCARDED_PREFIX}/{n}")
    for n in set(refs) - set(numbers):
        problems.append(f"{DISCARDED_PREFIX}/{n} has no row")
    best, commit = ledger.best()
    if commit is not None and sandbox.head() != commit:
        problems.append(f"the branch is at {sandbox.head()[:7]}, not at the best kept commit {commit[:7]}")
    return problems
