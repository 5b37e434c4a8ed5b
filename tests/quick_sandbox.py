"""A sandbox whose experiments take a fraction of a second: harness.toml runs ``fake_train.py``,
which scores train.py's text (a hash) instead of training (and passes the preflight's smoke run
at once), so that tests of the loop's plumbing
(kills, restarts, pause, stop, preemption) run dozens of real experiments through the real
harness, git and runner in seconds."""

from __future__ import annotations

import re
import sys
import subprocess
from pathlib import Path

import pytest

from harness.sandbox import Sandbox

FAKE_TRAIN = '''"""Stands in for train.py in tests: scores train.py's text in a moment."""
import hashlib, json, os, pathlib, signal, sys, time

MODE = {mode!r}
SLEEP_S = {sleep_s!r}
h = int(hashlib.sha256(pathlib.Path("train.py").read_bytes()).hexdigest(), 16)
if os.environ.get("AUTORESEARCH_SMOKE_S"):  # the preflight's smoke run: pass it, test what follows
    pathlib.Path(os.environ["AUTORESEARCH_RESULT_FILE"]).write_text(json.dumps({{"val_bpb": 1.0, "eval_calls": 1}}))
    sys.exit(0)
time.sleep(SLEEP_S * (h % 1000) / 1000 if MODE == "score" else SLEEP_S)
flag = pathlib.Path("runs") / "killed_once"
if MODE == "preempt_once" and not flag.exists():
    flag.touch()
    os.kill(os.getpid(), signal.SIGKILL)
if MODE == "oom":
    print("torch.OutOfMemoryError: CUDA out of memory", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
if MODE == "score" and h % 7 == 0:
    sys.exit("fake crash")
result = {{"val_bpb": 1.0 + (h % 100000) / 1e6, "train_s": 0.1, "eval_calls": 1}}
pathlib.Path(os.environ["AUTORESEARCH_RESULT_FILE"]).write_text(json.dumps(result))
'''


@pytest.fixture
def quick_sandbox(make_sandbox):
    """Factory: ``quick_sandbox(mode="score", sleep_s=0.3)``: a sandbox whose command is
    ``python fake_train.py``. Modes: ``score`` (sleep up to ``sleep_s``, crash on 1 text in 7),
    ``slow`` (sleep ``sleep_s``, then score), ``preempt_once`` (SIGKILL itself on the first run),
    ``oom`` (print an out-of-memory error, then SIGKILL itself). ``policy``: ``[policy]`` settings
    as for ``make_sandbox``. A repeat with another seed changes train.py's text, so it scores
    differently: seeds look like noise of sd ~0.03."""

    def make(mode: str = "score", sleep_s: float = 0.3, name: str = "quick", policy: dict | None = None) -> Path:
        sandbox = make_sandbox(time_budget_s=1, allowance_s=30, name=name, policy=policy)
        toml = re.sub(r"command = \[.*\]", 'command = ["python", "fake_train.py"]',
                      (sandbox / "harness.toml").read_text())
        sb = Sandbox(sandbox, "autoresearch/test")
        sb.commit_files({"harness.toml": toml, "fake_train.py": FAKE_TRAIN.format(mode=mode, sleep_s=sleep_s)},
                        "score with fake_train.py (tests)")
        return sandbox

    return make


def start(sandbox: Path, *args, env: dict | None = None) -> subprocess.Popen:
    """``harness start SANDBOX ARGS...`` as a child process (output to pipes)."""
    import os

    return subprocess.Popen([sys.executable, "-m", "harness", "start", str(sandbox), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
