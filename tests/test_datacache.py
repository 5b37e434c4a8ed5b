"""The prepared data is found whoever runs the harness: another HOME, a copied sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def harness(*args, home: Path, timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AUTORESEARCH_CACHE"}
    env["HOME"] = str(home)
    env["COLUMNS"] = "400"  # one message per line
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.slow
def test_another_home_finds_the_data_and_a_copied_sandbox_prepares_it_again(tmp_path, corpus_dir):
    first, second, third = (tmp_path / n for n in ("home-a", "home-b", "home-c"))
    for home in (first, second, third):
        home.mkdir()
    sandbox = tmp_path / "sbx"
    made = harness("init", sandbox, "--corpus", corpus_dir, "--time-budget", 2, "--tag", "t", home=first)
    assert made.returncode == 0, made.stderr
    root = first / ".cache" / "autoresearch-harness"
    assert f'data_cache = "{root.resolve()}"' in (sandbox / "harness.toml").read_text()
    # an agent CLI started under another HOME: the runs still read the data prepared under the first
    res = harness("start", sandbox, "--max-experiments", 1, "--agent", "optuna", home=second)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not prepared" not in res.stdout + res.stderr and "keep" in res.stdout
    assert not (second / ".cache" / "autoresearch-harness").exists()
    # the sandbox copied to a machine without that data: prepared once where harness.toml says, then run
    copy = tmp_path / "copied"
    shutil.copytree(sandbox, copy)
    shutil.rmtree(root)
    res = harness("start", copy, "--max-experiments", 1, "--agent", "optuna", home=third)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "was not prepared in" in res.stdout and "prepared it there" in res.stdout
    assert any(root.iterdir())
    from harness.ledger import Ledger

    assert [r["status"] for r in Ledger(copy).records()][-1] in ("keep", "discard")


def test_an_mcp_session_under_another_home_without_the_cache_variable_records_a_scored_experiment(
        tmp_path, make_sandbox, monkeypatch):
    """An external agent's ``harness mcp`` (stdio, the real ``mcp`` client) started under an empty
    HOME without AUTORESEARCH_CACHE (a container, another user, sudo) trains on the data that
    ``harness init`` prepared under the first HOME and recorded in harness.toml."""
    import json

    import anyio
    from mcp import ClientSession
    from mcp.client.stdio import stdio_client

    from harness.datacache import corpus_dir
    from harness.patch import make_unified_diff
    from harness.sandbox import Sandbox
    from tests.conftest import set_knobs
    from tests.test_mcp import results_rows, server_params, text
    from tools.experiments import CRASHES

    first, second = tmp_path / "home-a", tmp_path / "home-b"
    first.mkdir()
    second.mkdir()
    with monkeypatch.context() as m:  # harness init under HOME=a: prepared into a's ~/.cache, recorded
        m.delenv("AUTORESEARCH_CACHE", raising=False)
        m.setenv("HOME", str(first))
        sandbox = make_sandbox()
    root = (first / ".cache" / "autoresearch-harness").resolve()
    assert f'data_cache = "{root}"' in (sandbox / "harness.toml").read_text()
    assert (corpus_dir(sandbox, root) / "meta.json").is_file()
    # a variable left in the test's own environment must not reach the server: if it did, the
    # corpus would be prepared into this folder
    trap = tmp_path / "leaked-cache"
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(trap))
    params = server_params(sandbox).model_copy(update={"env": {"HOME": str(second)}})
    train = Sandbox(sandbox, "autoresearch/test").read("train.py")
    diff = make_unified_diff(train, set_knobs(train, LEARNING_RATE="1e-2"))

    async def session_run():
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                pid = json.loads((sandbox / ".harness" / "state.json").read_text())["pid"]
                environ = dict(v.split(b"=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if v)
                answer = await session.call_tool("run_experiment", {"description": "higher learning rate",
                                                                    "diff": diff})
                return environ, answer

    environ, answer = anyio.run(session_run)
    assert environ[b"HOME"] == str(second).encode() and b"AUTORESEARCH_CACHE" not in environ
    assert not answer.is_error, text(answer)
    assert "not prepared" not in text(answer) and "the baseline ran as experiment 1: outcome" in text(answer)
    assert "experiment 2: outcome" in text(answer)
    traj = [json.loads(x) for x in (sandbox / "trajectory.jsonl").read_text().splitlines()]
    assert [(t["experiment"], t["proposal_format"], t["agent"]) for t in traj] == [
        (1, "baseline", "mcp"), (2, "udiff", "mcp")]
    baseline = traj[0]
    assert baseline["outcome"] not in CRASHES and baseline["status"] == "keep", baseline
    assert isinstance(baseline["val_bpb"], float) and 0 < baseline["val_bpb"] < 20 and baseline["steps"] > 0
    rows = results_rows(sandbox)
    assert len(rows) == 2 and rows[0][3] == "keep" and float(rows[0][1]) == pytest.approx(baseline["val_bpb"], abs=1e-6)
    # nothing was prepared under the second HOME, nor where a leaked variable would have put it
    assert not (second / ".cache" / "autoresearch-harness").exists()
    assert not corpus_dir(sandbox, second / ".cache" / "autoresearch-harness").exists()
    assert not trap.exists()
