"""The runner: real child processes, classified outcomes, scrubbed environment, hard kill."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from harness.runner import run_experiment, scrubbed_env

CANARY = "sk-canary-0123456789abcdef"


def run(tmp_path: Path, code: str, budget: float = 5, limit: float = 20, **kw):
    return run_experiment(["python", "-c", code], tmp_path, tmp_path / "run", budget, limit, **kw)


def write_result(val, train_s=1.0):
    return (
        "import json, os\n"
        f"json.dump({{'val_bpb': {val!r}, 'train_s': {train_s!r}, 'peak_vram_mb': 0.0}},"
        " open(os.environ['AUTORESEARCH_RESULT_FILE'], 'w'))\n"
    )


def test_scored_run_reads_the_metric_from_the_result_file_not_stdout(tmp_path):
    res = run(tmp_path, "print('val_bpb: 0.000001')\n" + write_result(1.25))
    assert res.outcome == "ok" and res.val_bpb == 1.25 and res.exit_code == 0
    assert "val_bpb: 0.000001" in (tmp_path / "run" / "run.log").read_text()
    assert res.peak_mem_gb > 0  # the child's peak RSS, from wait4


def test_printed_metric_without_result_file_is_missing_metric(tmp_path):
    res = run(tmp_path, "print('---'); print('val_bpb:          0.5')")
    assert res.outcome == "missing_metric" and res.val_bpb is None
    assert "evaluate_bpb was never called" in res.detail


def test_nonzero_exit_is_a_crash_with_the_traceback_in_the_tail(tmp_path):
    res = run(tmp_path, write_result(1.0) + "raise ValueError('kaboom')")
    assert res.outcome == "crash" and res.exit_code == 1
    assert "ValueError: kaboom" in res.log_tail


@pytest.mark.parametrize("text, outcome", [
    ("print('FAIL: loss is nan'); raise SystemExit(1)", "nan"),
    ("raise MemoryError()", "oom"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "preempted"),
])
def test_failures_are_classified(tmp_path, text, outcome):
    assert run(tmp_path, text).outcome == outcome


def test_training_past_the_budget_is_over_budget(tmp_path):
    res = run(tmp_path, write_result(1.0, train_s=30.0), budget=10, over_budget_tolerance_s=5)
    assert res.outcome == "over_budget" and res.val_bpb == 1.0
    assert "30.0 s on a budget of 10 s" in res.detail


def test_invalid_metric_values_are_missing_metric(tmp_path):
    res = run(tmp_path, write_result(float("nan")).replace("nan", "float('nan')"))
    assert res.outcome == "missing_metric"


def test_hung_run_is_killed_at_the_hard_limit(tmp_path):
    ticks = []
    res = run(tmp_path, "import time\nwhile True: time.sleep(1)", budget=1, limit=1.5, on_tick=ticks.append)
    assert res.outcome == "timeout"
    assert 1.5 <= res.wall_s < 1.5 + 5 + 2
    assert ticks and ticks[-1] >= 1.5


def test_a_process_ignoring_sigterm_is_killed_with_sigkill(tmp_path):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)"
    res = run(tmp_path, code, budget=1, limit=1)
    assert res.outcome == "timeout" and res.exit_code == -9


def test_secrets_in_the_parent_environment_never_reach_the_child(tmp_path, monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "HF_TOKEN", "MY_SERVICE_PASSWORD", "GLM_SECRET"):
        monkeypatch.setenv(name, CANARY)
    monkeypatch.setenv("AUTORESEARCH_CACHE", "/tmp/some-cache")
    res = run(tmp_path, "import os, json; print(json.dumps(dict(os.environ)))\n" + write_result(1.0))
    assert res.outcome == "ok"
    log = (tmp_path / "run" / "run.log").read_text()
    assert CANARY not in log
    child_env = json.loads(log.splitlines()[0])
    assert child_env["AUTORESEARCH_CACHE"] == "/tmp/some-cache"
    assert child_env["AUTORESEARCH_RESULT_FILE"].endswith("metrics.json")
    assert CANARY not in json.dumps(scrubbed_env())


def test_python_means_the_harness_interpreter(tmp_path):
    res = run(tmp_path, "import sys; print(sys.executable)\n" + write_result(1.0))
    assert (tmp_path / "run" / "run.log").read_text().splitlines()[0] == sys.executable
    assert res.outcome == "ok"


def processes_with_arg(arg: str) -> list[int]:
    """Host pids of live (non-zombie) processes with ``arg`` in their command line (pids written
    from inside the run's PID namespace mean nothing out here, so tests look processes up this way)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if arg.encode() in (entry / "cmdline").read_bytes().split(b"\0") and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def gone(arg: str, wait_s: float = 5.0) -> bool:
    """True once no live process has ``arg`` in its command line."""
    deadline = time.monotonic() + wait_s
    while processes_with_arg(arg):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_hard_kill_reaches_grandchildren_in_the_process_group(tmp_path):
    arg = f"{300 + time.time_ns() % 10**6 / 1e7:.7f}"  # a unique sleep length names the grandchild
    code = ("import subprocess, time\n"
            f"subprocess.Popen(['sleep', {arg!r}])\n"
            "time.sleep(600)")
    res = run(tmp_path, code, budget=1, limit=1.5)
    assert res.outcome == "timeout"
    assert gone(arg)


@pytest.mark.parametrize("isolate", [True, False], ids=["namespaces", "no_namespaces"])
@pytest.mark.parametrize("how", ["setsid", "double_fork_setsid"])
def test_descendants_that_leave_the_process_group_die_with_the_run(tmp_path, how, isolate):
    """In a PID namespace the kernel kills them when the run ends; without one the runner kills
    every process that carries the run's environment marker."""
    arg = f"{400 + time.time_ns() % 10**6 / 1e7:.7f}"
    if how == "setsid":
        spawn = f"subprocess.Popen(['sleep', {arg!r}], start_new_session=True)\n"
    else:
        spawn = ("if os.fork() == 0:\n    os.setsid()\n"
                 f"    if os.fork() == 0:\n        os.execvp('sleep', ['sleep', {arg!r}])\n    os._exit(0)\n")
    code = "import os, subprocess, time\n" + spawn + "time.sleep(0.5)\n" + write_result(1.0)
    res = run(tmp_path, code, isolate_network=isolate)
    assert res.outcome == "ok"
    assert gone(arg), "a daemon outlived the run"


def test_the_run_has_no_network_where_namespaces_are_available(tmp_path):
    from harness.runner import network_isolation_available

    if not network_isolation_available():
        pytest.skip("unshare --net is not available on this machine")
    code = ("import socket\n"
            "try:\n    socket.create_connection(('127.0.0.1', 9), timeout=2); print('connected')\n"
            "except OSError as e:\n    print('blocked', e.errno)\n"
            "import socket as s2; print('ifaces', s2.if_nameindex())\n") + write_result(1.0)
    res = run(tmp_path, code)
    log = (tmp_path / "run" / "run.log").read_text()
    assert res.outcome == "ok" and "blocked" in log and "'eth" not in log and "connected" not in log


def test_resource_limits_are_applied_to_the_child(tmp_path):
    code = ("import resource, time\ntime.sleep(0.5)\n"
            "print('nofile', resource.getrlimit(resource.RLIMIT_NOFILE))\n"
            "print('core', resource.getrlimit(resource.RLIMIT_CORE))\n") + write_result(1.0)
    res = run(tmp_path, code)
    log = (tmp_path / "run" / "run.log").read_text()
    assert res.outcome == "ok" and "nofile (4096, 4096)" in log and "core (0, 0)" in log


def test_address_space_and_process_limits(tmp_path):
    from harness.runner import NPROC_LIMIT, default_memory_limit_bytes, network_isolation_available

    code = ("import resource\nprint('as', resource.getrlimit(resource.RLIMIT_AS)[0])\n"
            "print('nproc', resource.getrlimit(resource.RLIMIT_NPROC)[0])\n") + write_result(1.0)
    assert run(tmp_path, code, memory_limit_gb=3).outcome == "ok"
    log = (tmp_path / "run" / "run.log").read_text()
    assert "as 3000000000" in log
    if network_isolation_available():  # RLIMIT_NPROC only inside a user namespace (see runner)
        assert f"nproc {NPROC_LIMIT}" in log
    assert run(tmp_path, code).outcome == "ok"  # default: "auto"
    default = default_memory_limit_bytes()
    assert f"as {default if default else resource_infinity()}" in (tmp_path / "run" / "run.log").read_text()


def resource_infinity() -> int:
    import resource

    return resource.RLIM_INFINITY


def test_a_memory_hog_hits_the_address_space_limit_and_is_oom(tmp_path):
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 28))\n"  # 256 MB a step, touched
    res = run(tmp_path, code, memory_limit_gb=1.5)
    assert res.outcome == "oom" and "MemoryError" in res.log_tail



@pytest.mark.parametrize("extra, message", [
    ({"eval_calls": 2}, "called 2 times"),
    ({"causal": False, "causality_max_diff": 3.5}, "not causal"),
    ({"tampered": ["time.perf_counter"]}, "replaced at run time: time.perf_counter"),
])
def test_what_the_trusted_evaluation_reports_makes_an_integrity_violation(tmp_path, extra, message):
    payload = {"val_bpb": 0.1, "train_s": 1.0, "peak_vram_mb": 0.0, "eval_calls": 1, "causal": True, **extra}
    code = f"import json, os\njson.dump({payload!r}, open(os.environ['AUTORESEARCH_RESULT_FILE'], 'w'))\n"
    res = run(tmp_path, code)
    assert res.outcome == "integrity_violation" and message in res.detail


def test_what_the_run_did_comes_from_the_result_file(tmp_path):
    payload = {"val_bpb": 1.5, "train_s": 4.0, "peak_vram_mb": 2048.0, "eval_calls": 1, "causal": True,
               "train_batches": 11, "train_tokens": 11 * 4 * 64, "num_params": 10**9,
               "device_name": "NVIDIA H100 80GB HBM3"}
    code = f"import json, os\njson.dump({payload!r}, open(os.environ['AUTORESEARCH_RESULT_FILE'], 'w'))\n"
    res = run(tmp_path, code)
    assert res.outcome == "ok" and res.steps == 11 and res.tokens == 2816
    assert res.tokens_per_s == pytest.approx(2816 / 4.0) and res.num_params == 10**9
    assert res.device_name == "NVIDIA H100 80GB HBM3" and res.mfu == pytest.approx(6e9 * 704 / 989e12)


def test_result_files_without_the_usage_keys_leave_the_fields_none(tmp_path):
    from harness.runner import classify

    log, result = tmp_path / "run.log", tmp_path / "metrics.json"
    log.write_text("")
    result.write_text(json.dumps({"val_bpb": 1.0, "train_s": 0.0, "train_batches": True, "train_tokens": -5,
                                  "num_params": "many", "device_name": 3}))
    res = classify(0, False, 1.0, log, result, 5, 10, 20, 0.1, gpu_clock_mhz=1755.0)
    assert res.outcome == "ok" and res.gpu_clock_mhz == 1755.0
    assert (res.steps, res.tokens, res.tokens_per_s, res.mfu, res.num_params, res.device_name) == (None,) * 6
    result.unlink()
    res = classify(0, False, 1.0, log, result, 5, 10, 20, 0.1)
    assert res.outcome == "missing_metric" and res.steps is None and res.gpu_clock_mhz is None


def test_the_runner_samples_the_gpu_clock_where_a_gpu_is_present(tmp_path, monkeypatch):
    from tests.test_gpu import fake_nvml

    import harness.runner as runner

    monkeypatch.setattr(runner, "gpu_present", lambda: True)
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(clocks=[1500]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    res = run(tmp_path, "import time; time.sleep(1.3)\n" + write_result(1.0), memory_limit_gb=None)
    assert res.outcome == "ok" and res.gpu_clock_mhz == 1500.0
    monkeypatch.setattr(runner, "gpu_present", lambda: False)  # no device node: no sampler
    assert run(tmp_path, write_result(1.0)).gpu_clock_mhz is None
