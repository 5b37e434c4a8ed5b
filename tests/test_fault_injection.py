"""Fault injection: ``harness start`` killed with SIGKILL at random instants and at every named point
of the write order, restarted, and checked after each restart: clean tree, results.tsv and
trajectory.jsonl and git in agreement, contiguous numbers, kept commits on the branch, discarded
ones under refs/autoresearch/discarded/, nothing recorded before the kill changed or lost.

The seed is printed; ``FAULT_SEED=N`` replays a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest

from harness.inflight import read_marker
from harness.ledger import Ledger
from harness.reconcile import verify
from harness.sandbox import Sandbox

from .quick_sandbox import quick_sandbox, start  # noqa: F401 (fixture)

#: the kill points of harness.experiment's write order, plus the ledger's own
POINTS = ("before_commit", "after_commit", "after_run", "before_trailers", "after_trailers", "after_discard_ref",
          "between_ledger_files", "after_row")
KNOBS = ("LEARNING_RATE", "WEIGHT_DECAY", "GRAD_CLIP", "ROPE_BASE", "WARMDOWN_FRAC")
RANDOM_KILLS = 26
MIN_EXPERIMENTS = 50


def proposals(path: Path, rng: random.Random) -> Path:
    """A scripted agent's file: knob moves (some repeat a file: duplicates), new constants (each
    a new file), some model failures and some broken diffs."""
    entries = []
    for _ in range(40):
        roll = rng.random()
        if roll < 0.08:
            entries.append({"error": "model returned junk"})
        elif roll < 0.15:
            entries.append({"description": "a diff that does not apply", "diff": "--- a/train.py\n+++ b/train.py\n"
                            "@@ -1,1 +1,1 @@\n-NOT THERE\n+NOR THIS\n"})
        elif roll < 0.55:
            name = f"UNUSED_{rng.randrange(10**9)}"
            entries.append({"description": f"add {name}", "diff": "--- a/train.py\n+++ b/train.py\n"
                            f"@@ -9,1 +9,2 @@\n import math\n+{name} = 1\n"})
        else:
            entries.append({"knob": rng.choice(KNOBS), "action": rng.choice(("x0.7", "x1.4"))})
    path.write_text("\n".join(json.dumps(e) for e in entries))
    return path


def check(sandbox: Path, seen: list[dict]) -> list[dict]:
    """Assert the record's guarantees; return the records (a superset of ``seen``, unchanged)."""
    sb, ledger = Sandbox(sandbox, "autoresearch/test"), Ledger(sandbox)
    assert verify(sb, ledger) == []
    assert git.Repo(sandbox).git.status("--porcelain") == ""
    assert sb.repo.active_branch.name == "autoresearch/test"
    records = ledger.records()
    assert records[:len(seen)] == seen, "a recorded experiment changed or vanished"
    return records


def repair_only(sandbox: Path, agent: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "harness", "start", str(sandbox), "--max-experiments", "0",
                          "--agent", agent], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    return res


def test_sigkill_at_any_instant_then_restart_keeps_the_record_complete_and_true(quick_sandbox, tmp_path):
    seed = int(os.environ.get("FAULT_SEED", random.randrange(1_000_000)))
    print(f"FAULT_SEED={seed}")
    rng = random.Random(seed)
    # the default noise-aware policy: kills also fall in baseline repeats, confirmation runs and re-measures
    # (the scores are hashes, so no futility stop: every promising first run gets its confirmation runs)
    sandbox = quick_sandbox(mode="score", sleep_s=0.4, policy={"remeasure_every": "6", "futility_power": "0"})
    plan = [("point", p) for p in POINTS for _ in range(2)] + [("random", None)] * RANDOM_KILLS
    rng.shuffle(plan)
    seen, kills, repaired, t0 = [], 0, [], time.monotonic()
    for i, (kind, where) in enumerate(plan):
        agent = f"scripted:{proposals(tmp_path / f'proposals{i}.jsonl', rng)}"  # a new script per start
        env = {"HARNESS_KILL_AT": f"{where}:{rng.randint(1, 3)}"} if kind == "point" else {}
        proc = start(sandbox, "--max-experiments", 8, "--agent", agent, env=env)
        if kind == "random":
            time.sleep(rng.uniform(0.3, 3.0))
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        marker = read_marker(sandbox)
        repair_only(sandbox, agent)
        if marker is not None:
            repaired.append((marker["phase"], bool(marker.get("record"))))
        seen = check(sandbox, seen)
    final = start(sandbox, "--max-experiments", 4, "--agent", agent)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    seen = check(sandbox, seen)
    elapsed = time.monotonic() - t0
    outcomes = [r["outcome"] for r in seen]
    print(f"{len(seen)} experiments, {kills} SIGKILLs, {len(repaired)} repairs of an experiment in flight, "
          f"{elapsed:.0f} s; outcomes: { {o: outcomes.count(o) for o in sorted(set(outcomes))} }")
    assert kills >= 30 and len(seen) >= MIN_EXPERIMENTS
    assert {"interrupted", "improved", "not_improved", "crash", "llm_error", "patch_failed"} <= set(outcomes)
    assert {phase for phase, _ in repaired} >= {"committing", "running", "deciding"}
    assert {"confirmation", "remeasure"} <= set(outcomes), "the noise policy's own runs were exercised"
    assert any(decided for _, decided in repaired), "no kill fell between the decision and the row"


@pytest.mark.parametrize("where", POINTS)
def test_a_kill_at_each_point_is_repaired_by_the_next_start(quick_sandbox, tmp_path, where):
    sandbox = quick_sandbox(mode="score", sleep_s=0.1, name=f"q-{where}")
    agent = f"scripted:{proposals(tmp_path / 'p.jsonl', random.Random(7))}"
    proc = start(sandbox, "--max-experiments", 12, "--agent", agent, env={"HARNESS_KILL_AT": f"{where}:2"})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"{where} was never reached"
    before = Ledger(sandbox).records()
    res = start(sandbox, "--max-experiments", 2, "--agent", agent)
    out, err = res.communicate(timeout=120)
    assert res.returncode == 0, err
    records = check(sandbox, before)
    killed = records[len(before)] if len(records) > len(before) + 2 else None
    if where == "before_commit" or where in ("between_ledger_files", "after_row"):
        assert len(records) == len(before) + 2 and killed is None  # nothing to record / recorded already
    elif where in ("after_commit", "after_run"):
        assert killed["outcome"] == "interrupted" and "killed" in killed["detail"]
    else:  # decided before the kill: the true outcome is recorded
        assert killed["outcome"] in ("improved", "not_improved", "crash") and killed["commit"]
