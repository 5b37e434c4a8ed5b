"""The prepared data is found whoever runs the harness: another HOME, a copied sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def harness(*args, home: Path, timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AUTORESEARCH_CACHE"}
    env["HOME"] = str(home)
    env["COLUMNS"] = "400"  # one message per line
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


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
