"""A real local model server: ``python -m llama_cpp.server`` serving the embedded SmolLM2 GGUF on
127.0.0.1, driven by the openai agent with a forced tool choice through the loop. The model is too
small to write good diffs; the test proves the wire path (tool schemas out, ``tool_calls`` back,
tokens counted) and that whatever it answers is recorded as an outcome."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import git
import pytest

from harness.agents import make_agent
from harness.config import load
from harness.display import Display
from harness.loop import Limits, Session

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"llama_cpp.server not ready after {READY_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture
def llama_server(tmp_path):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's [server] extra is not installed")
    from harness.agents.local import default_model_path

    port, log_path = free_port(), tmp_path / "llama_server.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", default_model_path(),
                                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(url, proc, log_path)
        yield url, log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_openai_agent_with_forced_tool_choice_runs_against_a_real_llama_cpp_server(make_sandbox, llama_server,
                                                                                  monkeypatch):
    url, log_path = llama_server
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    sandbox = make_sandbox()
    agent = make_agent("openai:smollm2", base_url=f"{url}/v1", tool_choice="propose_edit")
    agent.backend.max_tokens = 400  # the prompt plus the answer must fit the server's 8192-token context
    cfg = load(sandbox)
    done = Session(sandbox, cfg, agent, Display(cfg.time_budget_s, cfg.hard_limit_s), Limits(max_experiments=2)).run()

    assert done == 2
    rec = [json.loads(line) for line in (sandbox / "trajectory.jsonl").read_text().splitlines()][1]
    assert rec["agent"] == "openai:smollm2"
    # at least one full round trip: the server answered and reported its token counts
    assert rec["llm_calls"] >= 1 and rec["prompt_tokens"] > 2000 and rec["completion_tokens"] > 0, rec
    assert rec["outcome"] in ("llm_error", "improved", "not_improved", "crash", "patch_failed", "syntax_error",
                              "rail_blocked", "nan", "timeout", "oom")
    assert "POST /v1/chat/completions" in log_path.read_text()
    assert git.Repo(sandbox).git.status("--porcelain") == ""
