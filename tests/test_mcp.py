"""``harness mcp`` through a real MCP client session (the ``mcp`` SDK) over stdio, on a real
prepared sandbox with a tiny model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import git
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from harness.patch import make_unified_diff
from harness.sandbox import Sandbox
from tests.conftest import set_knobs
from tools.schemas import READ_FILE


def server_params(sandbox: Path, *extra: str) -> StdioServerParameters:
    """The server exactly as the sandbox's .mcp.json registers it for Claude Code (run in the
    sandbox), plus ``extra`` arguments and the test's data cache."""
    entry = json.loads((sandbox / ".mcp.json").read_text())["mcpServers"]["autoresearch"]
    assert entry["command"] == sys.executable
    return StdioServerParameters(command=entry["command"], args=[*entry["args"], *extra],
                                 env={"AUTORESEARCH_CACHE": os.environ["AUTORESEARCH_CACHE"]}, cwd=str(sandbox))


async def with_client(sandbox: Path, body, *extra: str):
    """Open a client session on a fresh server, initialize it, and run ``body(session)``."""
    async with stdio_client(server_params(sandbox, *extra)) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "autoresearch"
            return await body(session)


def text(result) -> str:
    return "\n".join(c.text for c in result.content)


def results_rows(sandbox: Path) -> list[list[str]]:
    lines = (sandbox / "results.tsv").read_text().splitlines()
    return [line.split("\t") for line in lines[1:]]


def test_a_client_lists_tools_runs_a_good_and_a_bad_experiment_and_reads_results(make_sandbox):
    sandbox = make_sandbox()
    train = Sandbox(sandbox, "autoresearch/test").read("train.py")
    good = make_unified_diff(train, set_knobs(train, LEARNING_RATE="1e-2"))
    bad = make_unified_diff(train, train + "\nimport subprocess\n")
    progress = []

    async def body(session: ClientSession):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {"read_file", "list_experiments", "show_experiment", "training_curve", "ask_optimiser",
                              "write_notes", "run_experiment"}
        assert tools["read_file"].input_schema == READ_FILE["parameters"]
        assert tools["run_experiment"].input_schema["required"] == ["description"]
        program = await session.call_tool("read_file", {"path": "program.md"})
        assert not program.is_error and "val_bpb" in text(program)

        async def on_progress(done, total, message):
            progress.append((done, total, message))

        first = await session.call_tool("run_experiment", {"description": "higher learning rate", "diff": good},
                                        progress_callback=on_progress)
        second = await session.call_tool("run_experiment", {"description": "spawn a process", "diff": bad})
        listing = await session.call_tool("list_experiments", {})
        shown = await session.call_tool("show_experiment", {"n": 2})
        curve = await session.call_tool("training_curve", {"n": 2})
        advice = await session.call_tool("ask_optimiser", {})
        return first, second, listing, shown, curve, advice

    first, second, listing, shown, curve, advice = anyio.run(with_client, sandbox, body)
    # the real run's log gives a curve of 10 losses, shown beside the best's when #2 was not kept
    assert not curve.is_error and "#2 training loss at 10%..100% of the budget: " in text(curve), text(curve)
    assert len(text(curve).split(": ")[1].split(" (best")[0].split()) == 10
    assert len(json.loads((sandbox / "runs" / "2" / "curve.json").read_text())["series"]) >= 2
    assert not advice.is_error, text(advice)
    assert "optimiser (tpe) after 2 trials" in text(advice) and "--- a/train.py" in text(advice)
    assert not first.is_error, text(first)
    assert "the baseline ran as experiment 1" in text(first)
    assert "experiment 2: outcome" in text(first) and "best val_bpb so far:" in text(first)
    assert "#2 training loss at 10%..100% of the budget: " in text(first)  # the run's curve, beside the best's
    assert second.is_error and "rail_blocked" in text(second) and "subprocess" in text(second)
    assert "#3 rail_blocked" in text(listing) and "#2 " in text(listing)
    assert "higher learning rate" in text(shown)

    rows = results_rows(sandbox)
    assert [r[3] for r in rows][0] == "keep" and rows[2][3] == "crash" and len(rows) == 3
    repo = git.Repo(sandbox)
    assert not repo.is_dirty(untracked_files=False)
    messages = [c.message for c in repo.iter_commits("autoresearch/test", max_count=3)]
    assert any("Experiment: 1" in m for m in messages)
    kept_2 = rows[1][3] == "keep"
    assert any("Experiment: 2" in m for m in messages) == kept_2
    assert "Agent: mcp" in messages[0]
    assert progress, "a 2-second run with a progress token reports progress"
    traj = [json.loads(x) for x in (sandbox / "trajectory.jsonl").read_text().splitlines()]
    assert [t["proposal_format"] for t in traj] == ["baseline", "udiff", "udiff"]
    assert traj[2]["rail_verdicts"] and traj[2]["agent"] == "mcp"
    assert (sandbox / "runs" / "3" / "proposal.diff").read_text() == bad


def test_run_experiment_answers_that_the_run_is_over_after_the_deadline(make_sandbox):
    sandbox = make_sandbox()

    async def body(session: ClientSession):
        await anyio.sleep(0.2)
        return await session.call_tool("run_experiment", {"description": "x", "diff": "y"})

    res = anyio.run(with_client, sandbox, body, "--minutes", "0.001")
    assert res.is_error and "the run is over" in text(res)
    assert not (sandbox / "results.tsv").exists() or len(results_rows(sandbox)) == 0


def test_two_clients_at_once_one_runs_the_other_is_refused_and_the_ledger_stays_consistent(make_sandbox):
    sandbox = make_sandbox()
    train = Sandbox(sandbox, "autoresearch/test").read("train.py")
    diffs = [make_unified_diff(train, set_knobs(train, LEARNING_RATE=lr)) for lr in ("1e-2", "1e-3")]
    answers = {}

    async def client(i: int):
        async def body(session: ClientSession):
            return await session.call_tool("run_experiment", {"description": f"client {i}", "diff": diffs[i]})
        answers[i] = await with_client(sandbox, body)

    async def both():
        async with anyio.create_task_group() as tg:
            tg.start_soon(client, 0)
            tg.start_soon(client, 1)

    anyio.run(both)
    refused = [i for i, a in answers.items() if a.is_error]
    assert len(refused) == 1, {i: text(a) for i, a in answers.items()}
    assert "only one experiment runs at a time" in text(answers[refused[0]])
    ran = 1 - refused[0]
    rows = results_rows(sandbox)
    assert len(rows) == 2 and rows[1][4] == f"client {ran}"  # baseline + the one that ran; the refusal is not recorded
    repo = git.Repo(sandbox)
    assert not repo.is_dirty(untracked_files=False)


def test_concurrent_calls_of_one_client_run_one_experiment_at_a_time(make_sandbox):
    sandbox = make_sandbox()
    train = Sandbox(sandbox, "autoresearch/test").read("train.py")
    diff = make_unified_diff(train, set_knobs(train, LEARNING_RATE="1e-2"))
    answers = []

    async def body(session: ClientSession):
        async def call(i):
            answers.append(await session.call_tool("run_experiment", {"description": f"call {i}", "diff": diff}))
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, 0)
            tg.start_soon(call, 1)

    anyio.run(with_client, sandbox, body)
    assert sorted(a.is_error for a in answers) == [False, True]
    assert len(results_rows(sandbox)) == 2


def test_a_dirty_tree_or_an_unknown_tool_is_refused_with_a_message(make_sandbox):
    from harness.mcp_service import ResearchService

    sandbox = make_sandbox()
    service = ResearchService(sandbox)
    assert service.call("propose_edit", {}).is_error
    ans = service.call("run_experiment", {"description": "x"})
    assert ans.is_error and "nothing to run" in ans.text
    (sandbox / "train.py").write_bytes(b"\xff\xfe not utf-8")
    ans = service.call("run_experiment", {"description": "x"})
    assert ans.is_error and "not UTF-8" in ans.text
    git.Repo(sandbox).git.checkout("--", "train.py")
    (sandbox / "train.py").write_text((sandbox / "train.py").read_text() + "\n# hand edit\n")
    ans = service.call("run_experiment", {"description": "x", "diff": "y"})
    assert ans.is_error and "direct edits" in ans.text and "empty diff" in ans.text
    (sandbox / "prepare.py").write_text((sandbox / "prepare.py").read_text() + "\n# hand edit\n")
    ans = service.call("run_experiment", {"description": "x"})
    assert ans.is_error and "uncommitted changes" in ans.text
    assert "# hand edit" in (sandbox / "train.py").read_text(), "the direct edit is given back"
    assert not (sandbox / "results.tsv").exists() or len(results_rows(sandbox)) == 0


def test_direct_edits_of_train_py_run_with_an_empty_diff_and_a_refused_one_stays_to_be_fixed(make_sandbox):
    from harness.mcp_service import ResearchService

    sandbox = make_sandbox()
    service = ResearchService(sandbox)
    repo = git.Repo(sandbox)
    train = sandbox / "train.py"
    original = train.read_text()
    train.write_text(original + "\nimport subprocess\n")
    refused = service.call("run_experiment", {"description": "spawn", "diff": ""})
    assert refused.is_error and "rail_blocked" in refused.text and "subprocess" in refused.text
    assert train.read_text() == original + "\nimport subprocess\n", "the refused edit stays in the tree"
    assert [r[3] for r in results_rows(sandbox)] == ["keep", "crash"]  # the baseline ran first

    train.write_text(set_knobs(original, LEARNING_RATE="1e-2"))
    ran = service.call("run_experiment", {"description": "higher learning rate"})
    assert not ran.is_error and "experiment 3: outcome" in ran.text, ran.text
    rows = results_rows(sandbox)
    assert len(rows) == 3 and rows[2][4] == "higher learning rate"
    assert not repo.is_dirty(untracked_files=False)
    kept = rows[2][3] == "keep"
    assert ("LEARNING_RATE = 1e-2" in train.read_text()) == kept
    assert (sandbox / "runs" / "3" / "proposal.diff").read_text() == make_unified_diff(
        original, set_knobs(original, LEARNING_RATE="1e-2"))


def test_sigterm_during_an_experiment_records_it_as_interrupted_and_the_server_exits(make_sandbox):
    """What an agent CLI does when it quits mid-run: the server kills the run's whole process
    group, records the experiment as interrupted, answers the call and exits, leaving a clean tree."""
    import signal
    import subprocess
    import time

    sandbox = make_sandbox(time_budget_s=60)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "mcp", str(sandbox)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def send(message: dict) -> None:
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        proc.stdin.flush()

    try:
        send({"id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}})
        assert json.loads(proc.stdout.readline())["result"]["serverInfo"]["name"] == "autoresearch"
        send({"method": "notifications/initialized"})
        send({"id": 2, "method": "tools/call", "params": {"name": "run_experiment",
                                                          "arguments": {"description": "x", "diff": "y"}}})
        log = sandbox / "runs" / "1" / "run.log"
        deadline = time.time() + 60
        while not (log.exists() and "step" in log.read_text()) and time.time() < deadline:
            time.sleep(0.2)  # the baseline is training
        assert log.exists() and "step" in log.read_text(), "the baseline did not start training"
        state = json.loads((sandbox / ".harness" / "state.json").read_text())
        assert state["pid"] == proc.pid and state["phase"] == "running"
        proc.send_signal(signal.SIGTERM)  # stdin stays open, as a client that only signals leaves it
        proc.wait(timeout=30)
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    answer = json.loads(out.splitlines()[-1])
    assert answer["id"] == 2 and answer["result"]["isError"] and "interrupted" in answer["result"]["content"][0]["text"]
    assert proc.returncode is not None
    rows = results_rows(sandbox)
    assert len(rows) == 1 and rows[0][3] == "crash"
    traj = [json.loads(x) for x in (sandbox / "trajectory.jsonl").read_text().splitlines()]
    assert traj[0]["outcome"] == "interrupted"
    repo = git.Repo(sandbox)
    assert not repo.is_dirty(untracked_files=False)
    assert "Status: crash" in repo.commit("refs/autoresearch/discarded/1").message
    from harness.ledger import Ledger
    from harness.reconcile import verify

    assert verify(Sandbox(sandbox, "autoresearch/test"), Ledger(sandbox)) == []
    alive = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cwd(p) == sandbox.resolve()
             and b"train.py" in _read(p / "cmdline")]
    assert not alive, "a training process outlived the server"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _cwd(proc_dir: Path):
    try:
        return Path(os.readlink(proc_dir / "cwd"))
    except OSError:
        return None


def test_harness_pause_holds_run_experiment_and_stop_ends_the_run(make_sandbox):
    """`harness pause|resume|stop` act on an MCP session as on `harness start`."""
    import subprocess
    import threading
    import time

    from harness.control import request_pause, request_resume, request_stop
    from harness.mcp_service import ResearchService
    from harness.state import read_state

    sandbox = make_sandbox()
    service = ResearchService(sandbox)
    request_stop(sandbox)  # left from an earlier session: starting the server clears it
    service.start()
    assert read_state(sandbox)["phase"] == "idle" and read_state(sandbox)["alive"]
    status = subprocess.run([sys.executable, "-m", "harness", "status", str(sandbox)], capture_output=True, text=True)
    assert "serving an agent over MCP" in status.stdout, status.stdout + status.stderr
    train = Sandbox(sandbox, "autoresearch/test").read("train.py")
    diff = make_unified_diff(train, set_knobs(train, LEARNING_RATE="1e-2"))

    request_pause(sandbox)
    answers = []
    call = threading.Thread(target=lambda: answers.append(service.call("run_experiment", {"description": "lr", "diff": diff})))
    call.start()
    time.sleep(2)
    assert not answers and read_state(sandbox)["phase"] == "paused"
    assert not (sandbox / "results.tsv").exists()
    assert request_resume(sandbox)
    call.join(timeout=120)
    assert answers and not answers[0].is_error, answers
    assert len(results_rows(sandbox)) == 2  # baseline + lr

    request_stop(sandbox)
    over = service.call("run_experiment", {"description": "lr again", "diff": diff})
    assert over.is_error and "the run is over" in over.text and "harness stop" in over.text
    assert len(results_rows(sandbox)) == 2


def test_harness_stop_now_kills_the_mcp_run_in_flight_and_records_it(make_sandbox):
    import threading
    import time

    from harness.control import request_stop
    from harness.mcp_service import ResearchService

    sandbox = make_sandbox(time_budget_s=60)
    service = ResearchService(sandbox)
    service.start()
    answers = []
    call = threading.Thread(target=lambda: answers.append(service.call("run_experiment", {"description": "x", "diff": "y"})))
    call.start()
    log = sandbox / "runs" / "1" / "run.log"
    deadline = time.time() + 60
    while not (log.exists() and "step" in log.read_text()) and time.time() < deadline:
        time.sleep(0.2)  # the baseline trains
    request_stop(sandbox, now=True)
    call.join(timeout=30)
    assert answers and answers[0].is_error and "harness stop --now" in answers[0].text
    traj = [json.loads(x) for x in (sandbox / "trajectory.jsonl").read_text().splitlines()]
    assert [t["outcome"] for t in traj] == ["interrupted"]
    assert not git.Repo(sandbox).is_dirty(untracked_files=False)
