"""The command line as a user meets it: init, start, status, log, double start, Ctrl-C, rails check."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import git




def harness(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_help_is_fast_because_nothing_heavy_is_imported():
    code = ("import sys, harness.cli\n"
            "heavy = ('torch', 'libcst', 'git', 'llama_cpp', 'anthropic', 'openai', 'rich', 'unidiff')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    res = harness("--help")
    assert res.returncode == 0 and "init" in res.stdout and "start" in res.stdout


def test_init_creates_a_prepared_sandbox_on_its_branch(tmp_path, corpus_dir):
    dest = tmp_path / "run1"
    res = harness("init", dest, "--corpus", corpus_dir, "--time-budget", 7, "--tag", "t1")
    assert res.returncode == 0, res.stderr
    assert f"harness start {dest}" in res.stdout
    repo = git.Repo(dest)
    assert repo.active_branch.name == "autoresearch/t1"
    assert repo.git.status("--porcelain") == ""
    assert sorted(repo.git.ls_files().split()) == [
        ".claude/hooks/guard.py", ".claude/settings.json", ".codex/config.toml", ".gitignore", ".mcp.json", "AGENTS.md", "CLAUDE.md",
        "harness.toml", "prepare.py", "program.md", "program_mcp.md", "train.py"]
    prepare = (dest / "prepare.py").read_text()
    assert "TIME_BUDGET = 7  #" in prepare and f'CORPUS = "{corpus_dir}"' in prepare
    assert "time_budget_s = 7" in (dest / "harness.toml").read_text()
    again = harness("init", dest)
    assert again.returncode == 1 and "already a sandbox" in again.stderr and "harness start" in again.stderr


def test_init_with_a_missing_corpus_says_what_is_wrong(tmp_path):
    res = harness("init", tmp_path / "x", "--corpus", tmp_path / "nope")
    assert res.returncode == 1 and "neither a known name" in res.stderr


def test_start_runs_the_baseline_then_status_and_log_show_it(make_sandbox):
    sandbox = make_sandbox()
    res = harness("start", sandbox, "--max-experiments", 1)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "done: 1 experiments" in res.stdout
    status = harness("status", sandbox)
    assert "not running" in status.stdout and "experiments: 1 (1 keep, 0 discard, 0 crash)" in status.stdout
    assert "best val_bpb:" in status.stdout
    log = harness("log", sandbox)
    assert "baseline" in log.stdout and "keep" in log.stdout


def test_start_needs_a_limit_and_a_known_agent(make_sandbox, tmp_path):
    sandbox = make_sandbox()
    res = harness("start", sandbox)
    assert res.returncode == 2 and "--hours H, --minutes M or --max-experiments N" in res.stderr
    res = harness("start", sandbox, "--max-experiments", 1, "--agent", "gpt9")
    assert res.returncode == 1 and "unknown agent 'gpt9'" in res.stderr
    res = harness("start", tmp_path / "not-a-sandbox", "--minutes", 1)
    assert res.returncode == 1 and "harness init" in res.stderr


def wait_for_phase(sandbox: Path, phase: str, timeout_s: float = 120, key: str | None = None) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = json.loads((sandbox / ".harness" / "state.json").read_text())
            if state.get("phase") == phase and (key is None or key in state):
                return state
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"harness never reached phase {phase}")


def test_second_start_is_refused_and_ctrl_c_twice_leaves_a_clean_recorded_state(make_sandbox, tmp_path):
    sandbox = make_sandbox(time_budget_s=30)
    first = subprocess.Popen([sys.executable, "-m", "harness", "start", str(sandbox), "--minutes", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        state = wait_for_phase(sandbox, "running", key="commit")  # "running" is written before and after the commit
        second = harness("start", sandbox, "--minutes", 1)
        assert second.returncode == 1
        assert f"another harness is running in {sandbox} (pid {first.pid}" in second.stderr
        status = harness("status", sandbox)
        assert f"running (pid {first.pid}" in status.stdout and "running experiment 1" in status.stdout
        time.sleep(2)
        first.send_signal(signal.SIGINT)  # the first Ctrl-C asks to stop after this experiment ...
        time.sleep(0.5)
        first.send_signal(signal.SIGINT)  # ... a second one aborts it
        out, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130, err
    assert "recorded as" in err and "interrupted" in err
    repo = git.Repo(sandbox)
    assert repo.git.status("--porcelain") == ""
    traj = [json.loads(x) for x in (sandbox / "trajectory.jsonl").read_text().splitlines()]
    assert [(t["experiment"], t["outcome"], t["status"]) for t in traj] == [(1, "interrupted", "crash")]
    assert repo.commit("refs/autoresearch/discarded/1").hexsha == traj[0]["commit"]
    assert repo.commit(traj[0]["commit"]).tree == repo.commit(state["commit"]).tree
    assert repo.head.commit.hexsha == traj[0]["parent"]
    # the next start runs the baseline again, as experiment 2
    res = harness("start", sandbox, "--max-experiments", 1)
    assert res.returncode == 0 and "experiment 2" in res.stdout and "baseline" in res.stdout


def test_rails_check_exit_codes(tmp_path):
    template = Path(__file__).resolve().parent.parent / "harness" / "templates" / "sandbox" / "train.py"
    good, bad, sneaky = tmp_path / "good.py", tmp_path / "bad.py", tmp_path / "sneaky.py"
    good.write_text(template.read_text())
    bad.write_text("X = = 1\n")
    sneaky.write_text(template.read_text().replace("\nimport torch\n", "\nimport torch\nimport socket\n", 1))
    assert harness("rails", "check", good).returncode == 0
    res = harness("rails", "check", bad)
    assert res.returncode == 1 and "[syntax]" in res.stdout
    res = harness("rails", "check", sneaky, "--against", good)
    assert res.returncode == 1 and "[imports] import of 'socket'" in res.stdout
