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


def test_a_changed_data_cache_is_an_integrity_violation_and_stays_one(make_sandbox):
    from harness.integrity import check_after_run, corpus_cache_dir, fingerprint
    from harness.sandbox import Sandbox

    sandbox = make_sandbox()
    folder = corpus_cache_dir(sandbox)
    assert folder is not None and (folder / "val.bin").is_file()
    sb = Sandbox(sandbox, "autoresearch/test")
    before = fingerprint(sandbox)
    assert "cache:val.bin" in before and "cache:tokenizer.json" in before
    assert check_after_run(sb, before) == ""
    original = (folder / "val.bin").read_bytes()
    try:
        (folder / "val.bin").write_bytes(original[::-1])
        assert "cache:val.bin" in check_after_run(sb, before)
        # the next run starts from the corrupted cache: still flagged, with the remedy
        problem = check_after_run(sb, fingerprint(sandbox))
        assert "cache:val.bin" in problem and "prepare.py" in problem
    finally:
        (folder / "val.bin").write_bytes(original)
    assert check_after_run(sb, fingerprint(sandbox)) == ""
