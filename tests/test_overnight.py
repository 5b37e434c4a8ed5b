"""What an overnight run meets: stop and pause by command, flag file and signal, a stale lock,
preempted and OOM-killed runs, a full disk, a re-run of an interrupted experiment, and a resume
that continues numbers, best result, history and deadline."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest

from harness.agents.base import Context, Proposal
from harness.agents.scripted import ScriptedAgent
from harness.config import load
from harness.display import Display
from harness.inflight import read_marker
from harness.ledger import Ledger, LedgerError
from harness.loop import Limits, Session
from harness.reconcile import verify
from harness.sandbox import Sandbox
from harness.state import read_state

from .quick_sandbox import quick_sandbox, start  # noqa: F401 (fixture)
from .test_cli import wait_for_phase

KNOB_MOVES = [{"knob": "LEARNING_RATE", "action": a} for a in ("x1.4", "x0.7") * 20]


def harness(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def scripted(tmp_path: Path, entries=KNOB_MOVES) -> str:
    path = tmp_path / "proposals.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in entries))
    return f"scripted:{path}"


def records(sandbox: Path) -> list[dict]:
    return Ledger(sandbox).records()


def consistent(sandbox: Path) -> None:
    assert verify(Sandbox(sandbox, "autoresearch/test"), Ledger(sandbox)) == []
    assert git.Repo(sandbox).git.status("--porcelain") == ""


def wait_until(predicate, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def running_with_commit(sandbox: Path, n: int) -> dict:
    wait_until(lambda: read_state(sandbox).get("experiment") == n)
    return wait_for_phase(sandbox, "running", key="commit")


# --- stop ---------------------------------------------------------------------------------------
def test_harness_stop_lets_the_experiment_in_flight_finish_then_exits(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(mode="slow", sleep_s=2)
    proc = start(sandbox, "--max-experiments", 50, "--agent", scripted(tmp_path))
    running_with_commit(sandbox, 2)
    res = harness("stop", sandbox)
    assert res.returncode == 0 and "stops after its current experiment" in res.stdout
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped as asked: 2 experiments" in out
    got = records(sandbox)
    assert len(got) == 2 and got[-1]["outcome"] in ("improved", "not_improved", "crash")
    consistent(sandbox)
    assert not (sandbox / ".harness" / "stop").exists()
    assert harness("stop", sandbox).returncode == 1  # nothing runs any more


def test_harness_stop_now_kills_the_run_and_records_it_interrupted(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(mode="slow", sleep_s=20)
    proc = start(sandbox, "--max-experiments", 50, "--agent", scripted(tmp_path))
    running_with_commit(sandbox, 1)
    t0 = time.monotonic()
    assert harness("stop", sandbox, "--now").returncode == 0
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "aborted" in err
    assert time.monotonic() - t0 < 10  # the 20 s run did not finish
    assert [(r["experiment"], r["outcome"]) for r in records(sandbox)] == [(1, "interrupted")]
    consistent(sandbox)


def test_sigterm_stops_after_the_experiment_and_a_second_signal_aborts(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(mode="slow", sleep_s=2)
    agent = scripted(tmp_path)
    proc = start(sandbox, "--max-experiments", 50, "--agent", agent)
    running_with_commit(sandbox, 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped as asked: 1 experiments" in out, err
    assert [r["outcome"] for r in records(sandbox)] == ["improved"]

    proc = start(sandbox, "--max-experiments", 50, "--agent", agent)
    running_with_commit(sandbox, 2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert [r["outcome"] for r in records(sandbox)] == ["improved", "interrupted"]
    consistent(sandbox)


# --- pause --------------------------------------------------------------------------------------
def test_pause_by_flag_file_waits_and_resume_continues(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(mode="slow", sleep_s=1)
    proc = start(sandbox, "--max-experiments", 50, "--agent", scripted(tmp_path))
    try:
        running_with_commit(sandbox, 1)
        (sandbox / ".harness" / "pause").touch()  # a user without a terminal
        wait_for_phase(sandbox, "paused", timeout_s=30)
        status = harness("status", sandbox)
        assert "paused (pid" in status.stdout and "harness resume" in status.stdout
        held = len(records(sandbox))
        time.sleep(2)
        assert len(records(sandbox)) == held and proc.poll() is None
        res = harness("resume", sandbox)
        assert res.returncode == 0 and "continues" in res.stdout
        wait_until(lambda: len(records(sandbox)) > held, 30)
        assert harness("pause", sandbox).returncode == 0
        wait_for_phase(sandbox, "paused", timeout_s=30)
        assert harness("stop", sandbox).returncode == 0  # a stop ends a pause
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "stopped as asked" in out, err
    assert all(r["outcome"] != "interrupted" for r in records(sandbox))
    consistent(sandbox)


# --- one harness per sandbox ----------------------------------------------------------------------
def test_a_killed_harness_leaves_a_stale_lock_that_the_next_start_takes_over(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(mode="slow", sleep_s=30)
    agent = scripted(tmp_path)
    proc = start(sandbox, "--max-experiments", 5, "--agent", agent)
    running_with_commit(sandbox, 1)
    second = harness("start", sandbox, "--max-experiments", 1, "--agent", agent)
    assert second.returncode == 1 and f"(pid {proc.pid}, since " in second.stderr
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert json.loads((sandbox / ".harness" / "state.json").read_text())["pid"] == proc.pid  # stale
    assert (sandbox / ".harness" / "harness.lock").exists()
    assert "not running" in harness("status", sandbox).stdout
    res = harness("start", sandbox, "--max-experiments", 0, "--agent", agent)
    assert res.returncode == 0, res.stderr
    assert re.search(r"killed \d+ training process", res.stdout) and "experiment 1 was interrupted" in res.stdout
    assert [r["outcome"] for r in records(sandbox)] == ["interrupted"]
    consistent(sandbox)


# --- preemption -----------------------------------------------------------------------------------
def test_a_preempted_run_is_recorded_and_retried_once(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(mode="preempt_once", sleep_s=0.1)
    res = harness("start", sandbox, "--max-experiments", 1, "--agent", scripted(tmp_path))
    assert res.returncode == 0, res.stderr
    got = records(sandbox)
    assert [(r["experiment"], r["outcome"], r["retry_of"]) for r in got] == [(1, "preempted", None),
                                                                          (2, "improved", 1)]
    assert got[0]["proposal_format"] == got[1]["proposal_format"] == "baseline"
    repo = git.Repo(sandbox)
    assert repo.commit(got[0]["commit"]).tree == repo.commit(got[1]["commit"]).tree
    assert "running it again as 2" in res.stdout
    consistent(sandbox)


def test_an_out_of_memory_kill_is_not_retried(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(mode="oom", sleep_s=0.1)
    res = harness("start", sandbox, "--max-experiments", 1, "--agent", scripted(tmp_path))
    assert res.returncode == 0, res.stderr
    assert [r["outcome"] for r in records(sandbox)] == ["oom"]
    consistent(sandbox)


# --- disk full ------------------------------------------------------------------------------------
def session(sandbox: Path, agent=None, on_interrupted="record", **limits) -> Session:
    cfg = load(sandbox)
    return Session(sandbox, cfg, agent or ScriptedAgent(KNOB_MOVES), Display(cfg.time_budget_s, cfg.hard_limit_s),
                   Limits(**limits), on_interrupted=on_interrupted)


def test_a_full_disk_stops_before_the_row_and_the_next_start_completes_it(quick_sandbox, monkeypatch):
    sandbox = quick_sandbox(sleep_s=0.1)
    session(sandbox, max_experiments=2).run()
    before = {p: (sandbox / p).read_bytes() for p in ("results.tsv", "trajectory.jsonl")}
    real_fsync = os.fsync

    def full(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("trajectory.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(LedgerError, match="No space left on device.*harness start"):
        session(sandbox, max_experiments=1).run()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert {p: (sandbox / p).read_bytes() for p in before} == before  # nothing recorded was damaged
    marker = read_marker(sandbox)
    assert marker["experiment"] == 3 and marker["record"]["outcome"] in ("improved", "not_improved", "crash")
    assert git.Repo(sandbox).git.status("--porcelain") == ""
    session(sandbox, max_experiments=0).run()
    assert [r["experiment"] for r in records(sandbox)] == [1, 2, 3]
    consistent(sandbox)


def test_too_little_free_space_stops_before_anything_is_written(quick_sandbox, monkeypatch):
    sandbox = quick_sandbox(sleep_s=0.1)
    head = git.Repo(sandbox).head.commit.hexsha
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 5 * 2**20, 5 * 2**20))
    with pytest.raises(LedgerError, match="only 5 MiB free .* before experiment 1"):
        session(sandbox, max_experiments=3).run()
    assert git.Repo(sandbox).head.commit.hexsha == head and not (sandbox / "trajectory.jsonl").exists()
    assert read_marker(sandbox) is None


# --- re-run and resume ----------------------------------------------------------------------------
def test_rerun_mode_runs_an_interrupted_experiment_again_once(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(sleep_s=0.1)
    agent = scripted(tmp_path)
    proc = start(sandbox, "--max-experiments", 3, "--agent", agent, env={"HARNESS_KILL_AT": "after_commit"})
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # killed again while re-running: recorded as interrupted, not re-run a second time
    proc = start(sandbox, "--max-experiments", 0, "--on-interrupted", "rerun", "--agent", agent,
                 env={"HARNESS_KILL_AT": "after_run"})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and "runs again" in out
    res = harness("start", sandbox, "--max-experiments", 0, "--on-interrupted", "rerun", "--agent", agent)
    assert [r["outcome"] for r in records(sandbox)] == ["interrupted"], res.stdout

    sandbox2 = quick_sandbox(sleep_s=0.1, name="quick2")
    proc = start(sandbox2, "--max-experiments", 3, "--agent", agent, env={"HARNESS_KILL_AT": "after_commit"})
    proc.communicate(timeout=60)
    running = git.Repo(sandbox2).head.commit
    res = harness("start", sandbox2, "--max-experiments", 0, "--on-interrupted", "rerun", "--agent", agent)
    assert res.returncode == 0, res.stderr
    (rec,) = records(sandbox2)
    assert rec["outcome"] == "improved" and rec["proposal_format"] == "baseline"
    assert git.Repo(sandbox2).commit(rec["commit"]).tree == running.tree
    consistent(sandbox2)


class Recorder:
    """An agent that remembers what it was shown and proposes knob moves."""

    name = "recorder"

    def __init__(self):
        self.inner, self.contexts = ScriptedAgent(KNOB_MOVES), []

    def propose(self, context: Context) -> Proposal:
        self.contexts.append(context)
        return self.inner.propose(context)


def test_a_restart_continues_numbers_best_history_and_counts_the_deadline_from_now(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(mode="slow", sleep_s=0.3)
    proc = start(sandbox, "--max-experiments", 50, "--agent", scripted(tmp_path))
    running_with_commit(sandbox, 4)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    before = records(sandbox)
    assert len(before) == 3

    agent = Recorder()
    t0 = time.time()
    s = session(sandbox, agent, deadline=t0 + 600, max_experiments=2)
    assert s.run() == 2
    first = agent.contexts[0]
    assert first.experiment == 5
    assert [r["experiment"] for r in first.history] == [1, 2, 3, 4]
    assert first.history[:3] == before and first.history[3]["outcome"] == "interrupted"
    assert first.best_val_bpb == min(r["val_bpb"] for r in before if r["status"] == "keep")
    state = json.loads((sandbox / ".harness" / "state.json").read_text())
    assert state["deadline"] == pytest.approx(t0 + 600, abs=1) and state["session_started_at"] >= t0
    assert [r["experiment"] for r in records(sandbox)] == [1, 2, 3, 4, 5, 6]
    consistent(sandbox)
