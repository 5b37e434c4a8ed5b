"""The files ``harness init`` writes for agent CLIs, and the PreToolUse guard hook fed the JSON
Claude Code sends on stdin (exit 0: allowed; exit 2: blocked, stderr shown to the model)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import git
import pytest

from harness.agent_files import write_agent_files

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("agent")
    (d / ".gitignore").write_text("runs/\n")
    write_agent_files(d)
    return d


def run_hook(sandbox: Path, tool_name: str, tool_input: dict) -> subprocess.CompletedProcess:
    """Run the hook command exactly as settings.json names it, with Claude Code's event on stdin."""
    settings = json.loads((sandbox / ".claude" / "settings.json").read_text())
    entry = settings["hooks"]["PreToolUse"][0]
    assert entry["hooks"][0]["type"] == "command"
    event = {"session_id": "abc", "transcript_path": "/tmp/t.jsonl", "cwd": str(sandbox),
             "hook_event_name": "PreToolUse", "tool_name": tool_name, "tool_input": tool_input}
    return subprocess.run(shlex.split(entry["hooks"][0]["command"]), input=json.dumps(event), cwd=sandbox,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("tool, tool_input", [
    ("Edit", {"file_path": "prepare.py", "old_string": "a", "new_string": "b"}),
    ("Edit", {"file_path": "/abs/train.py", "old_string": "a", "new_string": "b"}),
    ("Write", {"file_path": "notes.md", "content": "hello"}),
    ("Write", {"file_path": "../train.py", "content": "x"}),
    ("MultiEdit", {"file_path": "harness.toml", "edits": []}),
    ("NotebookEdit", {"notebook_path": "x.ipynb", "new_source": ""}),
])
def test_edits_of_any_file_but_train_py_are_blocked_with_a_pointer_to_run_experiment(agent_dir, tool, tool_input):
    res = run_hook(agent_dir, tool, tool_input)
    assert res.returncode == 2
    assert "run_experiment(description, diff)" in res.stderr and "write_notes" in res.stderr


@pytest.mark.parametrize("tool, tool_input", [
    ("Edit", {"file_path": "train.py", "old_string": "DEPTH = 4", "new_string": "DEPTH = 8"}),
    ("Write", {"file_path": "./train.py", "content": "x"}),
    ("MultiEdit", {"file_path": "{sandbox}/train.py", "edits": []}),
])
def test_train_py_may_be_edited_except_while_an_experiment_runs(agent_dir, tool, tool_input):
    tool_input = {k: v.format(sandbox=agent_dir) if isinstance(v, str) else v for k, v in tool_input.items()}
    state = agent_dir / ".harness" / "state.json"
    state.parent.mkdir(exist_ok=True)
    try:
        res = run_hook(agent_dir, tool, tool_input)
        assert res.returncode == 0 and res.stderr == ""
        state.write_text(json.dumps({"pid": os.getpid(), "phase": "running", "experiment": 7}))
        res = run_hook(agent_dir, tool, tool_input)
        assert res.returncode == 2 and "experiment 7 is running" in res.stderr
        # a harness that died mid-run (pid above Linux's largest pid_max, 2**22) does not block edits
        state.write_text(json.dumps({"pid": 2 ** 22 + 12345, "phase": "running", "experiment": 7}))
        assert run_hook(agent_dir, tool, tool_input).returncode == 0
        state.write_text(json.dumps({"pid": os.getpid(), "phase": "idle"}))
        assert run_hook(agent_dir, tool, tool_input).returncode == 0
    finally:
        state.unlink(missing_ok=True)


@pytest.mark.parametrize("command", [
    "cat > train.py <<'EOF'\nprint(1)\nEOF", "echo idea >> notes.md", "sed -i 's/DEPTH = 4/DEPTH = 8/' train.py",
    "sed -e s/a/b/ -i.bak ./train.py", "tee train.py < /tmp/new.py", "cp /tmp/new.py train.py",
    "mv /tmp/p.py prepare.py", "perl -pi -e s/a/b/ train.py", "rm results.tsv",
])
def test_shell_writes_into_the_sandbox_files_are_blocked(agent_dir, command):
    res = run_hook(agent_dir, "Bash", {"command": command})
    assert res.returncode == 2, command
    assert "run_experiment(description, diff)" in res.stderr


@pytest.mark.parametrize("command, tool", [
    ("python train.py", "run_experiment"),
    ("uv run train.py > run.log 2>&1", "run_experiment"),
    ("cd /x && CUDA_VISIBLE_DEVICES=0 python3 ./train.py", "run_experiment"),
    ("timeout 300 python -u train.py | tail", "run_experiment"),
    ("python prepare.py", "run_experiment"),
    ("git reset --hard HEAD~1", "git reset --hard"),
    ("git -C . commit --amend -m x", "git commit --amend"),
    ("git commit -am 'try'", "git commit"),
    ("git rebase -i HEAD~3", "git rebase"),
    ("git push --force origin main", "git push"),
    ("git filter-branch --tree-filter x", "git filter-branch"),
    ("git update-ref -d refs/autoresearch/discarded/3", "git update-ref"),
    ("git branch -D autoresearch/test", "git branch -D"),
    ("git checkout -- train.py", "git checkout"),
])
def test_training_runs_and_history_rewrites_are_blocked(agent_dir, command, tool):
    res = run_hook(agent_dir, "Bash", {"command": command, "description": "x"})
    assert res.returncode == 2, command
    assert tool in res.stderr and "Blocked by autoresearch-harness" in res.stderr


@pytest.mark.parametrize("tool, tool_input", [
    ("Bash", {"command": "git log --oneline -5"}),
    ("Bash", {"command": "git diff HEAD~1 -- train.py"}),
    ("Bash", {"command": "git show refs/autoresearch/discarded/2"}),
    ("Bash", {"command": "cat train.py | grep LEARNING_RATE"}),
    ("Bash", {"command": "harness status ."}),
    ("Bash", {"command": "cp train.py /tmp/scratch.py && grep -n LR train.py > /tmp/out 2>&1"}),
    ("Bash", {"command": "python -c 'import torch; print(torch.__version__)'"}),
    ("Read", {"file_path": "train.py"}),
    ("mcp__autoresearch__run_experiment", {"description": "x", "diff": "y"}),
])
def test_reads_and_the_mcp_tools_pass(agent_dir, tool, tool_input):
    res = run_hook(agent_dir, tool, tool_input)
    assert res.returncode == 0 and res.stderr == ""


def test_mcp_json_and_settings_register_the_server_and_the_hook(agent_dir):
    mcp = json.loads((agent_dir / ".mcp.json").read_text())["mcpServers"]["autoresearch"]
    assert mcp["args"][-3:] == ["harness", "mcp", str(agent_dir.resolve())] and Path(mcp["command"]).exists()
    codex = tomllib.loads((agent_dir / ".codex" / "config.toml").read_text())["mcp_servers"]["autoresearch"]
    assert [codex["command"], *codex["args"]] == [mcp["command"], *mcp["args"]]
    settings = json.loads((agent_dir / ".claude" / "settings.json").read_text())
    assert "mcp__autoresearch__run_experiment" in settings["permissions"]["allow"]
    assert "Edit" not in settings["permissions"]["deny"] and "Edit(./train.py)" in settings["permissions"]["allow"]
    assert shlex.split(settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"])[-1] == "train.py"
    assert ".claude/settings.local.json" in (agent_dir / ".gitignore").read_text()
    for name in ("CLAUDE.md", "AGENTS.md"):
        text = (agent_dir / name).read_text()
        assert "program_mcp.md" in text and "run_experiment" in text
    assert "until `run_experiment` answers that the run is over" in " ".join((agent_dir / "program_mcp.md").read_text().split())


def test_init_commits_the_agent_files_and_leaves_a_clean_tree(make_sandbox):
    sandbox = make_sandbox()
    repo = git.Repo(sandbox)
    tracked = set(repo.git.ls_files().split())
    assert {".mcp.json", ".codex/config.toml", "CLAUDE.md", "AGENTS.md", "program_mcp.md", ".claude/settings.json",
            ".claude/hooks/guard.py"} <= tracked
    (sandbox / ".claude" / "settings.local.json").write_text("{}")
    assert repo.git.status("--porcelain") == ""


def test_train_py_reached_through_a_symlinked_sandbox_path_may_be_edited(agent_dir, tmp_path):
    link = tmp_path / "link-to-sandbox"
    link.symlink_to(agent_dir)
    res = run_hook(agent_dir, "Edit", {"file_path": str(link / "train.py"), "old_string": "a", "new_string": "b"})
    assert res.returncode == 0 and res.stderr == ""
    res = run_hook(agent_dir, "Edit", {"file_path": str(link / "prepare.py"), "old_string": "a", "new_string": "b"})
    assert res.returncode == 2
