"""The research loop driven by API agents through the real SDKs and loopback servers: real git,
real training of a tiny model, the ledger as a user reads it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import git

from harness.agents import make_agent
from harness.config import load
from harness.display import Display
from harness.loop import Limits, Session
from harness.patch import make_unified_diff

from .fake_llm import (FakeLLMServer, anthropic_error, anthropic_turn, openai_error, openai_turn, text_block,
                       tool_use)
from .test_agent_api import CANARY, NEW_MLP, OLD_MLP

LR = "LEARNING_RATE = 3e-3  # peak AdamW learning rate"
BEST = re.compile(r"Current best train\.py \(your edit applies to exactly this text\):\n```python\n(.*?)```", re.S)


def trajectory(sandbox: Path) -> list[dict]:
    return [json.loads(line) for line in (sandbox / "trajectory.jsonl").read_text().splitlines()]


def best_train(body: dict) -> str:
    """The current best train.py as the harness sent it in the prompt (either wire format)."""
    system = body["system"][-1]["text"] if "system" in body else body["messages"][0]["content"]
    return BEST.search(system).group(1)


def gelu_diff(body: dict) -> str:
    old = best_train(body)
    return make_unified_diff(old, old.replace(OLD_MLP, NEW_MLP))


def test_anthropic_agent_edits_architecture_repairs_a_refused_diff_and_survives_errors(make_sandbox, monkeypatch):
    sandbox = make_sandbox()
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)

    def repaired(body):
        old = best_train(body)
        return anthropic_turn(tool_use("propose_edit", {"description": "LR 3e-3 -> 4e-3",
                                                        "diff": make_unified_diff(old, old.replace(LR, LR.replace("3e-3", "4e-3")))}, "t3"))

    script = [
        # experiment 2: read a file, then an architecture change accepted at once
        anthropic_turn(tool_use("read_file", {"path": "prepare.py"}, "t1")),
        lambda body: anthropic_turn(text_block("GELU instead of ReLU^2."),
                                    tool_use("propose_edit", {"description": "GELU MLP", "diff": gelu_diff(body)}, "t2")),
        # experiment 3: a rate limit (retried by the SDK), a look at experiment 2 and a note, a stale
        # SEARCH block refused, then the repair
        anthropic_error(429),
        anthropic_turn(tool_use("show_experiment", {"n": 2}, "s1"), tool_use("write_notes", {"text": "GELU tried"}, "s2")),
        anthropic_turn(tool_use("propose_edit", {"description": "LR", "search_replace":
                                                 "<<<<<<< SEARCH\nLEARNING_RATE = 0.003\n=======\nLEARNING_RATE = 0.004\n>>>>>>> REPLACE"}, "t2")),
        repaired,
    ]
    with FakeLLMServer(script, default=anthropic_error(400)) as srv:
        agent = make_agent("anthropic:claude-test", base_url=srv.url)
        cfg = load(sandbox)
        # asked one after another (not pipelined), so each request shows the experiment before it
        done = Session(sandbox, cfg, agent, Display(cfg.time_budget_s, cfg.hard_limit_s), Limits(max_experiments=4),
                       pipelined=False).run()

    assert done == 4
    traj = trajectory(sandbox)
    assert [t["outcome"] for t in traj][3] == "llm_error"
    assert traj[1]["outcome"] in ("improved", "not_improved") and traj[2]["outcome"] in ("improved", "not_improved")
    assert traj[1]["agent"] == "anthropic:claude-test" and traj[1]["proposal_format"] == "udiff"
    assert traj[1]["llm_calls"] == 2 and traj[1]["prompt_tokens"] == 2000 and traj[1]["completion_tokens"] == 100
    assert traj[1]["tool_calls"] == 2 and traj[2]["tool_calls"] == 4
    assert traj[2]["llm_calls"] == 3 and traj[2]["retries"] == 1 and traj[2]["description"] == "LR 3e-3 -> 4e-3"
    assert "API error 400" in traj[3]["detail"] and traj[3]["commit"] is None and not traj[3]["llm_down"]
    repo = git.Repo(sandbox)
    assert "F.gelu" in repo.git.show(traj[1]["commit"]) and "LEARNING_RATE = 4e-3" in repo.git.show(traj[2]["commit"])
    assert repo.git.status("--porcelain") == ""
    assert repo.head.commit.hexsha == [t for t in traj if t["status"] == "keep"][-1]["commit"]
    # the wire: tools and cache control on every request, the history in the next prompt, no key in a body
    bodies = [r.json for r in srv.requests]
    assert len(srv.requests) == 6 + 1  # six scripted replies, then the refused request (a 400 is not retried)
    assert all(b["system"][-1]["cache_control"] == {"type": "ephemeral"} and len(b["tools"]) == 7 for b in bodies)
    assert "#2 " in bodies[2]["messages"][0]["content"][0]["text"]
    shown, noted = bodies[4]["messages"][-1]["content"][:2]
    assert shown["tool_use_id"] == "s1" and "+        return x + self.drop(self.fc_out(F.gelu" in shown["content"]
    assert "end of runs/2/run.log" in shown["content"] and "val_bpb" in shown["content"]
    assert noted["tool_use_id"] == "s2" and not noted["is_error"]
    assert "GELU tried" in (sandbox / "notes.md").read_text()
    assert "refused (patch_failed)" in json.dumps(bodies[5]["messages"][-1])
    assert all(CANARY.encode() not in r.body for r in srv.requests)


def test_cli_runs_an_openai_compatible_agent_and_stops_after_a_storm_of_refusals(make_sandbox):
    sandbox = make_sandbox()
    script = [
        openai_turn([("propose_edit", '{"description": "GELU", "diff": ')]),  # malformed JSON arguments
        lambda body: openai_turn([("propose_edit", json.dumps({"description": "GELU MLP", "diff": gelu_diff(body)}))]),
    ]
    with FakeLLMServer(script, default=openai_error(400)) as srv:
        env = {**os.environ, "OPENAI_API_KEY": CANARY}
        res = subprocess.run([sys.executable, "-m", "harness", "start", str(sandbox), "--max-experiments", "20",
                              "--agent", "openai:test-model", "--base-url", f"{srv.url}/v1"],
                             capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "done: 7 experiments" in res.stdout and "failed 5 times in a row" in res.stdout + res.stderr
    traj = trajectory(sandbox)
    assert [t["outcome"] for t in traj][2:] == ["llm_error"] * 5
    assert traj[1]["agent"] == "openai:test-model" and traj[1]["llm_calls"] == 2 and traj[1]["retries"] == 0
    assert "F.gelu" in git.Repo(sandbox).git.show(traj[1]["commit"])
    malformed_answer = srv.requests[1].json["messages"][3]
    assert malformed_answer["role"] == "tool" and "not valid JSON" in malformed_answer["content"]
    assert all(CANARY.encode() not in r.body for r in srv.requests)
    assert all(r.headers["authorization"] == f"Bearer {CANARY}" for r in srv.requests)


def test_cli_without_the_key_fails_at_start_naming_the_variable(make_sandbox):
    sandbox = make_sandbox()
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")}
    res = subprocess.run([sys.executable, "-m", "harness", "start", str(sandbox), "--max-experiments", "1",
                          "--agent", "anthropic:claude-sonnet-4-5"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1 and "set ANTHROPIC_API_KEY" in res.stderr
    assert not (sandbox / "results.tsv").exists()


def test_an_llm_outage_is_waited_out_with_backoff_and_recorded(make_sandbox, monkeypatch):
    import harness.loop

    monkeypatch.setattr(harness.loop, "OUTAGE_BACKOFF_S", (0.2, 0.5))
    sandbox = make_sandbox()
    down = [openai_error(503)] * (5 * 7)  # 7 proposals fail: the SDK's first try + 4 retries each
    script = [*down, lambda body: openai_turn([("propose_edit", json.dumps({"description": "GELU MLP",
                                                                            "diff": gelu_diff(body)}))])]
    waits = []
    with FakeLLMServer(script, default=openai_error(400)) as srv:
        agent = make_agent("openai:test-model", base_url=f"{srv.url}/v1")
        cfg = load(sandbox)
        display = Display(cfg.time_budget_s, cfg.hard_limit_s)
        monkeypatch.setattr(display, "status", lambda text: waits.append(text))
        done = Session(sandbox, cfg, agent, display, Limits(max_experiments=2)).run()
    assert done == 2  # the outage rows do not count, and more than MAX_AGENT_FAILURES of them did not stop it
    traj = trajectory(sandbox)
    assert [(t["outcome"], t["llm_down"]) for t in traj] == [("improved", False)] + [("llm_error", True)] * 7 + [
        (traj[-1]["outcome"], False)]
    assert traj[-1]["outcome"] in ("improved", "not_improved") and "F.gelu" in git.Repo(sandbox).git.show(traj[-1]["commit"])
    assert all("API error 503" in t["detail"] for t in traj[1:8])
    assert [w for w in waits if w][0].startswith("LLM endpoint unavailable (1 failed try); next try at")
    assert "(7 failed tries)" in [w for w in waits if w][-1]
    assert git.Repo(sandbox).git.status("--porcelain") == ""
