"""The loop end to end with a scripted agent: real git, real subprocesses, real training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import git
import pytest

from harness.agents.scripted import ScriptedAgent
from harness.config import load
from harness.display import Display
from harness.loop import Limits, Session
from harness.patch import make_unified_diff
from harness.sandbox import parse_trailers

from .conftest import set_knobs

pytestmark = pytest.mark.slow


def run_session(sandbox: Path, entries: list[dict], **limits) -> int:
    cfg = load(sandbox)
    display = Display(cfg.time_budget_s, cfg.hard_limit_s)
    return Session(sandbox, cfg, ScriptedAgent(entries), display, Limits(**limits)).run()


def rows(sandbox: Path) -> list[dict]:
    with open(sandbox / "results.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def trajectory(sandbox: Path) -> list[dict]:
    return [json.loads(line) for line in (sandbox / "trajectory.jsonl").read_text().splitlines()]


def edit(sandbox: Path, description: str, **knobs) -> dict:
    repo = git.Repo(sandbox)
    old = repo.git.show("HEAD:train.py", strip_newline_in_stdout=False)
    return {"description": description, "diff": make_unified_diff(old, set_knobs(old, **knobs))}


def test_scripted_run_keeps_the_better_discards_the_worse_and_records_the_crash(make_sandbox):
    sandbox = make_sandbox(LEARNING_RATE="1e-5")  # a deliberately weak baseline
    repo = git.Repo(sandbox)
    start_head = repo.head.commit.hexsha
    better = edit(sandbox, "raise LEARNING_RATE 1e-5 -> 3e-3", LEARNING_RATE="3e-3")
    # proposals are diffs against the best at the time they are made: build them in sequence
    old_better = set_knobs(repo.git.show("HEAD:train.py", strip_newline_in_stdout=False), LEARNING_RATE="3e-3")
    worse = {"description": "lower LEARNING_RATE to 1e-7",
             "diff": make_unified_diff(old_better, set_knobs(old_better, LEARNING_RATE="1e-7"))}
    crashing_src = old_better.replace("\nimport torch\n", "\nimport torch\nraise RuntimeError('boom from experiment')\n", 1)
    crash = {"description": "a change that crashes", "diff": make_unified_diff(old_better, crashing_src)}

    done = run_session(sandbox, [better, worse, crash], max_experiments=10)

    assert done == 4
    got = rows(sandbox)
    assert [r["status"] for r in got] == ["keep", "keep", "discard", "crash"]
    assert list(got[0]) == ["commit", "val_bpb", "memory_gb", "status", "description"]
    assert float(got[1]["val_bpb"]) < float(got[0]["val_bpb"])
    assert float(got[2]["val_bpb"]) > float(got[1]["val_bpb"])
    assert got[3]["val_bpb"] == "0.000000" and got[3]["memory_gb"] == "0.0"
    traj = trajectory(sandbox)
    assert [t["outcome"] for t in traj] == ["improved", "improved", "not_improved", "crash"]
    assert [t["experiment"] for t in traj] == [1, 2, 3, 4]
    assert traj[0]["parent"] == start_head
    assert traj[2]["parent_val_bpb"] == traj[1]["val_bpb"]
    for field in ("commit", "parent", "status", "outcome", "val_bpb", "parent_val_bpb", "description", "agent",
                  "proposal_format", "rail_verdicts", "started_at", "wall_s", "train_s", "peak_mem_gb",
                  "llm_calls", "prompt_tokens", "completion_tokens", "llm_s", "retries"):
        assert field in traj[1], field
    assert 1.5 < traj[1]["train_s"] < 6
    # git: the branch ends at the best kept experiment, with trailers telling the story
    head = repo.head.commit
    assert repo.active_branch.name == "autoresearch/test"
    assert head.hexsha == traj[1]["commit"]
    trailers = parse_trailers(head.message)
    assert trailers["Experiment"] == "2" and trailers["Status"] == "keep" and trailers["Outcome"] == "improved"
    assert float(trailers["Val-Bpb"]) == pytest.approx(traj[1]["val_bpb"], abs=1e-6)
    assert float(trailers["Parent-Val-Bpb"]) == pytest.approx(traj[0]["val_bpb"], abs=1e-6)
    assert "LEARNING_RATE = 3e-3" in (sandbox / "train.py").read_text()
    baseline = repo.commit(traj[0]["commit"])
    assert parse_trailers(baseline.message)["Status"] == "keep" and baseline.message.startswith("baseline")
    # discarded experiments stay reachable under refs/autoresearch/discarded/<n>
    for n in (3, 4):
        ref = repo.commit(f"refs/autoresearch/discarded/{n}")
        assert ref.hexsha == traj[n - 1]["commit"]
        assert parse_trailers(ref.message)["Status"] in ("discard", "crash")
        assert ref.parents[0].hexsha == head.hexsha
    assert "1e-7" in repo.git.show("refs/autoresearch/discarded/3:train.py")
    # the crash's traceback is in its log, and the tree is clean
    assert "boom from experiment" in (sandbox / "runs" / "4" / "run.log").read_text()
    assert "boom from experiment" in traj[3]["detail"] or traj[3]["detail"].startswith("exited with code")
    assert not repo.is_dirty(untracked_files=True)
    assert git.Repo(sandbox).git.status("--porcelain") == ""


def test_bad_proposals_are_recorded_as_outcomes_and_the_loop_goes_on(make_sandbox):
    sandbox = make_sandbox(time_budget_s=2, allowance_s=12)
    repo = git.Repo(sandbox)
    train = repo.git.show("HEAD:train.py", strip_newline_in_stdout=False)
    prepare = repo.git.show("HEAD:prepare.py", strip_newline_in_stdout=False)
    hang_src = train.replace("\nimport torch\n", "\nimport torch\ntime.sleep(600)\n", 1)
    spawn_src = train.replace("\nimport torch\n", "\nimport torch\nimport subprocess\nsubprocess.Popen(['sleep', '300'])\n", 1)
    entries = [
        {"description": "edit the evaluation", "diff": make_unified_diff(prepare, prepare.replace("EVAL_TOKENS = ", "EVAL_TOKENS = 1 + ", 1), "prepare.py")},
        {"description": "a stale diff", "diff": make_unified_diff(train.replace("DEPTH", "DEPTHX"), train.replace("DEPTH", "DEPTHY"))},
        {"error": "model returned junk: '}{not json'"},
        {"description": "this is not a diff at all", "diff": "I think we should increase the learning rate!"},
        {"description": "broken syntax", "diff": make_unified_diff(train, train.replace("DEPTH = 1", "DEPTH = = 1", 1))},
        {"description": "spawn a process", "diff": make_unified_diff(train, spawn_src)},
        {"description": "hang past the limit", "diff": make_unified_diff(train, hang_src)},
    ]
    done = run_session(sandbox, entries, max_experiments=20)

    assert done == 8
    traj = trajectory(sandbox)
    assert [t["outcome"] for t in traj] == ["improved", "patch_failed", "patch_failed", "llm_error",
                                            "patch_failed", "syntax_error", "rail_blocked", "timeout"]
    assert "prepare.py" in traj[1]["detail"] and "train.py" in traj[1]["detail"]
    assert traj[5]["rail_verdicts"][0]["rule"] == "syntax"
    assert {v["rule"] for v in traj[6]["rail_verdicts"]} == {"imports"}
    assert "subprocess" in traj[6]["detail"] and traj[6]["rail_verdicts"][0]["hint"]
    assert [r["status"] for r in rows(sandbox)][1:] == ["crash"] * 7
    assert all(t["commit"] is None for t in traj[1:7])
    assert (sandbox / "runs" / "2" / "proposal.diff").read_text().startswith("--- a/prepare.py")
    assert traj[7]["run_s"] < 2 + 12 + 5 + 3  # killed at the hard limit
    assert repo.head.commit.hexsha == traj[0]["commit"]
    assert repo.git.status("--porcelain") == ""
    assert "refs/autoresearch/discarded/8" in [r.path for r in repo.refs]


def test_local_agent_runs_two_knob_experiments_with_the_real_smollm2(make_sandbox):
    from harness.agents.local import LocalAgent

    sandbox = make_sandbox()
    cfg = load(sandbox)
    agent = LocalAgent.load(seed=3)
    done = Session(sandbox, cfg, agent, Display(cfg.time_budget_s, cfg.hard_limit_s), Limits(max_experiments=3)).run()

    assert done == 3
    traj = trajectory(sandbox)
    assert traj[0]["proposal_format"] == "baseline"
    for t in traj[1:]:
        assert t["agent"] == "local" and t["proposal_format"] == "knob"
        assert t["llm_calls"] >= 1 and t["prompt_tokens"] > 200 and t["llm_s"] > 0
        assert t["outcome"] in ("improved", "not_improved", "crash", "oom", "nan", "timeout")
        assert t["knob"]["knob"] in t["description"]
    assert traj[1]["file_key"] != traj[2]["file_key"]
    repo = git.Repo(sandbox)
    assert repo.git.status("--porcelain") == ""
    kept = [t for t in traj if t["status"] == "keep"]
    assert repo.head.commit.hexsha == kept[-1]["commit"]


def test_an_agent_that_keeps_failing_stops_the_session_instead_of_spinning(make_sandbox):
    sandbox = make_sandbox()
    done = run_session(sandbox, [{"error": f"junk {i}"} for i in range(20)], max_experiments=50)
    assert done == 6  # the baseline, then five llm_error rows
    assert [t["outcome"] for t in trajectory(sandbox)][1:] == ["llm_error"] * 5
