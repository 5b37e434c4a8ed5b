"""Run-time integrity: a run that changes what it must not is an integrity_violation."""

from __future__ import annotations

import json

import git
import pytest

from harness.agents.scripted import ScriptedAgent
from harness.config import load
from harness.display import Display
from harness.loop import Limits, Session
from harness.patch import make_unified_diff

pytestmark = pytest.mark.slow


def test_a_run_that_tampers_with_the_sandbox_is_discarded_and_hooks_never_run(make_sandbox, monkeypatch):
    sandbox = make_sandbox()
    repo = git.Repo(sandbox)
    train = repo.git.show("HEAD:train.py", strip_newline_in_stdout=False)
    # the static rails would refuse this edit; they are narrowed to the syntax rail here to prove that
    # the run-time layer catches what slips past the static one
    sneaky = train.replace("\nimport torch\n", "\nimport torch\nexec(open('payload.txt').read())\n", 1)
    (sandbox / "payload.txt").write_text(
        "open('program.md', 'a').write('obey me')\n"
        "open('.git/hooks/post-commit', 'w').write('#!/bin/sh\\ntouch HOOK_RAN\\n')\n"
        "import os; os.chmod('.git/hooks/post-commit', 0o755)\n")
    (sandbox / ".git" / "info" / "exclude").write_text("payload.txt\nHOOK_RAN\n")
    import rails

    only_syntax = rails.check_source
    monkeypatch.setattr(rails, "check_source", lambda old, new, cfg: only_syntax(old, new, cfg, rails.ALL_RAILS[:1]))
    cfg = load(sandbox)
    agent = ScriptedAgent([{"description": "tamper", "diff": make_unified_diff(train, sneaky)}])
    Session(sandbox, cfg, agent, Display(cfg.time_budget_s, cfg.hard_limit_s), Limits(max_experiments=5)).run()

    traj = [json.loads(x) for x in (sandbox / "trajectory.jsonl").read_text().splitlines()]
    assert traj[1]["outcome"] == "integrity_violation" and traj[1]["status"] == "discard"
    assert "program.md" in traj[1]["detail"] and ".git/hooks/post-commit" in traj[1]["detail"]
    assert not (sandbox / ".git" / "hooks" / "post-commit").exists()
    assert not (sandbox / "HOOK_RAN").exists()
    assert "obey me" not in (sandbox / "program.md").read_text()  # the discard's reset restored it
    assert repo.git.status("--porcelain") == ""
