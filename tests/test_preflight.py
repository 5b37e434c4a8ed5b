"""Preflight: a smoke run of train.py before the first baseline catches a crash in seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import git
import pytest

from harness.sandbox import Sandbox

pytestmark = pytest.mark.slow


def harness(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_a_crash_at_step_3_is_refused_by_preflight_long_before_the_budget(make_sandbox):
    sandbox = make_sandbox(time_budget_s=60, allowance_s=60)
    sb = Sandbox(sandbox, "autoresearch/test")
    broken = sb.read("train.py").replace("    step += 1\n", "    step += 1\n    if step == 3:\n"
                                         "        raise RuntimeError('boom at step 3')\n", 1)
    assert "boom at step 3" in broken
    sb.commit_files({"train.py": broken}, "a train.py that crashes at step 3")
    head = git.Repo(sandbox).head.commit.hexsha
    t0 = time.monotonic()
    res = harness("start", sandbox, "--max-experiments", 1, "--agent", "optuna")
    took = time.monotonic() - t0
    assert res.returncode == 1, res.stdout + res.stderr
    assert "preflight: a 3 s smoke run of train.py ended in crash" in res.stderr
    assert "boom at step 3" in res.stderr and "nothing was recorded or committed" in res.stderr
    assert took < 60, took  # the full budget alone would be 60 s of training; measured ~10 s here
    assert not (sandbox / "trajectory.jsonl").exists() or (sandbox / "trajectory.jsonl").read_text() == ""
    assert git.Repo(sandbox).head.commit.hexsha == head and git.Repo(sandbox).git.status("--porcelain") == ""


def test_a_sound_train_py_passes_preflight_and_the_baseline_follows(make_sandbox):
    sandbox = make_sandbox()
    res = harness("start", sandbox, "--max-experiments", 1, "--agent", "optuna")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "preflight: a 2 s smoke run of train.py scored in" in res.stdout
    assert (sandbox / ".harness" / "preflight" / "run.log").exists()
    assert "done: 1 experiments" in res.stdout


def test_a_prepare_py_without_the_smoke_setting_is_not_smoke_tested(make_sandbox):
    sandbox = make_sandbox()
    sb = Sandbox(sandbox, "autoresearch/test")
    prepare = sb.read("prepare.py").replace("AUTORESEARCH_SMOKE_S", "AUTORESEARCH_SMOKE_GONE")
    sb.commit_files({"prepare.py": prepare}, "an older prepare.py")
    res = harness("start", sandbox, "--max-experiments", 1, "--agent", "optuna")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "preflight skipped: this prepare.py has no smoke setting" in res.stdout


def test_smoke_each_ends_a_late_crash_in_seconds_and_runs_a_sound_proposal_in_full(make_sandbox):
    from harness.agents.scripted import ScriptedAgent
    from harness.config import load
    from harness.core import Events
    from harness.loop import Limits, Session
    from harness.patch import make_unified_diff

    sandbox = make_sandbox(time_budget_s=20, allowance_s=60)
    sb = Sandbox(sandbox, "autoresearch/test")
    toml = (sandbox / "harness.toml").read_text().replace("smoke_each = false", "smoke_each = true")
    sb.commit_files({"harness.toml": toml}, "smoke-test each proposal")
    base = sb.read("train.py")
    late = base.replace("    val_bpb = evaluate_bpb(", "    raise RuntimeError('boom after training')\n"
                        "    val_bpb = evaluate_bpb(", 1)
    assert "boom after training" in late
    sound = base.replace("WEIGHT_DECAY = 0.1", "WEIGHT_DECAY = 0.05", 1)
    agent = ScriptedAgent([{"description": "crash after training", "diff": make_unified_diff(base, late)},
                           {"description": "WEIGHT_DECAY 0.1 -> 0.05", "diff": make_unified_diff(base, sound)}])
    cfg = load(sandbox)
    assert cfg.smoke_each

    Session(sandbox, cfg, agent, Events(), Limits(max_experiments=3)).run()

    rows = [json.loads(line) for line in (sandbox / "trajectory.jsonl").read_text().splitlines()]
    baseline, crash, ran = rows
    assert baseline["train_s"] > 15  # the baseline is not smoke-tested: it trains its whole budget
    assert crash["outcome"] == "crash" and "caught by the smoke run" in crash["detail"]
    assert crash["run_s"] < 20 and "boom after training" in (sandbox / "runs" / "2" / "run.log").read_text()
    assert ran["outcome"] in ("improved", "not_improved") and ran["train_s"] > 15  # smoke passed, full run followed
