"""Run one experiment as a child process with a hard time limit, and classify what happened.

The child (``python train.py`` by default) runs in its own session and process group
(``start_new_session=True``) so that the hard wall-clock kill reaches every descendant, with a
scrubbed environment (an allowlist; nothing that looks like a key, token or secret passes), and
with stdout and stderr sent to ``runs/<n>/run.log``. The metric comes from the JSON result file
that ``prepare.evaluate_bpb`` writes to ``$AUTORESEARCH_RESULT_FILE``; the text the script prints
is never read for the score (only a crash's log tail is kept for the agent and the human).

The command starts through :mod:`harness.child_init`, which sets the resource limits on itself, and,
where ``unshare`` works, inside new network, user and PID namespaces (see :func:`isolation_prefix`);
descendants that leave the process group die with the PID namespace, or, without one, by
:func:`sweep_marked`.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

RESULT_ENV = "AUTORESEARCH_RESULT_FILE"
CHECKPOINT_ENV = "AUTORESEARCH_CHECKPOINT_FILE"
SAMPLE_NAME = "sample.txt"
CHECKPOINT_NAME = "model.pt"
_ENV_ALLOW = {
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR", "SHELL",
    "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHASHSEED", "AUTORESEARCH_CACHE",
    "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "CUDA_PATH", "LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ENABLE_MPS_FALLBACK",
    "XDG_CACHE_HOME",
}
_ENV_ALLOW_PREFIX = ("LC_",)
_SECRET_WORDS = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)
_OOM_PATTERNS = re.compile(r"OutOfMemoryError|CUDA out of memory|MemoryError|Cannot allocate memory|"
                           r"MPS backend out of memory|DefaultCPUAllocator: (not enough|can.t allocate) memory")
_NAN_PATTERNS = re.compile(r"FAIL: loss (is nan|exploded)|loss is nan", re.I)
KILL_GRACE_S = 5.0
POLL_S = 0.25
#: resource limits of every run, set by the child's start-up shim (harness/child_init.py) on itself
#: before the command starts: open files, file size (bytes), no core dumps
RLIMITS = (("RLIMIT_NOFILE", 4096), ("RLIMIT_FSIZE", 8 << 30), ("RLIMIT_CORE", 0))
#: processes and threads a run may have at once; set only inside a new user namespace, where the
#: kernel counts the namespace's own tasks (outside one it counts every task of the user)
NPROC_LIMIT = 1024
#: isolation prefixes, best first: network + user + PID namespace with its own /proc, without its
#: own /proc, then network + user namespace only
ISOLATION_PREFIXES = (
    ("unshare", "--net", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"),
    ("unshare", "--net", "--map-root-user", "--pid", "--fork", "--kill-child"),
    ("unshare", "--net", "--map-root-user"),
)
MARKER_ENV = "AUTORESEARCH_RUN_MARKER"
_SHIM = Path(__file__).with_name("child_init.py")
_GUARD = Path(__file__).with_name("evalguard.py")
_isolation: tuple | None = None


def isolation_prefix() -> tuple[str, ...]:
    """The best ``unshare`` prefix that works here (probed once per process), or ``()`` when none
    does (macOS, no ``unshare``, user namespaces disabled). See :data:`ISOLATION_PREFIXES`."""
    global _isolation
    if _isolation is None:
        import shutil
        import subprocess

        _isolation = ()
        if shutil.which("unshare"):
            for prefix in ISOLATION_PREFIXES:
                try:
                    ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
                except (OSError, subprocess.SubprocessError):
                    ok = False
                if ok:
                    _isolation = prefix
                    break
    return _isolation


def network_isolation_available() -> bool:
    """True when the child runs in a new network namespace (Linux with user namespaces): no
    interface but a downed loopback, so it cannot reach any network."""
    return bool(isolation_prefix())


def gpu_present() -> bool:
    """Whether this machine has a GPU device node (NVIDIA ``/dev/nvidia<N>``, AMD ``/dev/kfd``,
    WSL ``/dev/dxg``): a cheap test that loads no driver."""
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists() or (dev / "dxg").exists()


def default_memory_limit_bytes() -> int | None:
    """The address-space limit a run gets by default, bytes: on Linux without a GPU device
    (``/dev/nvidia*``, ``/dev/kfd``, ``/dev/dxg``: CUDA and ROCm reserve huge address ranges) 3/4 of
    the physical memory (or of the cgroup's ``memory.max`` if lower), at least 2 GiB; else None."""
    if not sys.platform.startswith("linux") or gpu_present():
        return None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    try:
        cg = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cg.isdigit():
            total = min(total, int(cg))
    except OSError:
        pass
    return max(2 << 30, total * 3 // 4)


def pids_with_env(needle: bytes, uid: int | None = None) -> list[int]:
    """Pids of the processes (this one excepted; of user ``uid`` when given) whose initial
    environment contains ``needle`` (Linux ``/proc``; elsewhere none)."""
    found, me = [], os.getpid()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(entry.name)
            if pid != me and (uid is None or entry.stat().st_uid == uid) and needle in (entry / "environ").read_bytes():
                found.append(pid)
        except (OSError, ValueError):
            continue
    return found


def sweep_marked(marker: str) -> int:
    """SIGKILL every process of this user whose initial environment carries ``MARKER_ENV=marker``
    (Linux ``/proc``; elsewhere a no-op). Catches descendants that left the process group when no
    PID namespace holds them; a process that exec'd itself with a cleared environment escapes it.
    Returns the number of processes signalled."""
    needle = f"{MARKER_ENV}={marker}".encode() + b"\0"
    killed, uid = 0, os.getuid()
    for _ in range(5):  # again, for what a fork bomb started meanwhile
        found = 0
        for pid in pids_with_env(needle, uid):
            try:
                os.kill(pid, signal.SIGKILL)
                found += 1
            except OSError:
                continue
        killed += found
        if not found:
            break
    return killed


@dataclass(frozen=True)
class RunResult:
    """What one experiment run produced.

    Attributes:
        outcome: ``ok`` (scored), or a failure from the outcome taxonomy: ``crash``, ``oom``,
            ``nan``, ``timeout``, ``missing_metric``, ``over_budget``, ``preempted``,
            ``integrity_violation`` (the trusted evaluation found extra calls, a non-causal model or
            replaced constants/functions).
        val_bpb: bits per byte from the trusted result file, or None.
        exit_code: the child's exit code (negative: killed by that signal), None if never started.
        wall_s: wall-clock seconds from start to exit (or kill).
        train_s: training seconds measured by prepare.py, or None.
        peak_mem_gb: on CUDA the peak allocated GPU memory in GiB (``peak_vram_mb / 1024``, as
            Karpathy's ``memory_gb``); elsewhere the child's peak resident set size in GB.
        log_path: the run's log file.
        log_tail: the last lines of the log (crash tracebacks), at most ~4 KB.
        detail: one line saying why a failed run failed.

    What the run did, from the trusted result file (None when there is no valid one, or it lacks
    the key):
        steps: training batches drawn from prepare's "train" dataloader before evaluate_bpb
            (``train_batches``; the template train.py draws one ahead, so optimizer steps + 1);
            for a foreign prepare.py (``capture``) the optimizer steps the guard counted.
        tokens: training tokens in those batches (``train_tokens``, batch size x sequence length
            each).
        tokens_per_s: ``tokens / train_s``, training tokens per second.
        mfu: model FLOPs utilisation, a fraction of the GPU's dense bf16 peak
            (:func:`harness.gpu.mfu`, ``6 * num_params * tokens_per_s / peak``); None off CUDA or
            on a GPU that :data:`harness.gpu.PEAK_BF16_FLOPS` does not know.
        gpu_clock_mhz: mean SM clock of the GPU during the run, MHz, sampled about once a second
            through NVML by the runner (start-up and evaluation included); None without a GPU or
            without ``pynvml``.
        num_params: parameters of the evaluated model (sum of ``numel``).
        device_name: the CUDA device's name (e.g. "NVIDIA H100 80GB HBM3"), else the device
            ("cpu", "mps").
        sample_s: seconds prepare.py spent generating ``runs/<n>/sample.txt`` after scoring (not
            training time), or None when it wrote no sample.
        checkpoint_bytes: size of the weights prepare.py saved to ``runs/<n>/model.pt``, bytes, or
            None when none was asked for or saved.

    Energy (:mod:`harness.energy`), measured by the runner around the whole run:
        gpu_energy_j, cpu_energy_j: joules, or None where not measured.
        gpu_s: GPU-seconds, wall seconds x the GPUs the run could see (None without a GPU).
    """

    outcome: str
    val_bpb: Optional[float]
    exit_code: Optional[int]
    wall_s: float
    train_s: Optional[float]
    peak_mem_gb: float
    log_path: Path
    log_tail: str
    detail: str = ""
    steps: Optional[int] = None
    tokens: Optional[int] = None
    tokens_per_s: Optional[float] = None
    mfu: Optional[float] = None
    gpu_clock_mhz: Optional[float] = None
    num_params: Optional[int] = None
    device_name: Optional[str] = None
    sample_s: Optional[float] = None
    checkpoint_bytes: Optional[int] = None
    gpu_energy_j: Optional[float] = None
    cpu_energy_j: Optional[float] = None
    gpu_s: Optional[float] = None


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: an allowlist of harmless variables from ours, minus anything whose
    name looks like a secret (``*KEY*``, ``*TOKEN*``, ``*SECRET*`` ...), plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items()
        if (k in _ENV_ALLOW or k.startswith(_ENV_ALLOW_PREFIX)) and not _SECRET_WORDS.search(k)
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def resolve_command(command: Sequence[str]) -> list[str]:
    """Replace a leading ``python`` with the harness's own interpreter (``sys.executable``)."""
    argv = list(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def guarded_command(command: Sequence[str], evaluation: str = "prepare") -> list[str]:
    """The argv of a run: ``python SCRIPT.py ARGS`` becomes ``python evalguard.py EVALUATION --
    SCRIPT.py ARGS`` (:mod:`harness.evalguard`, the trusted start-up that watches training and
    evaluation, and in ``capture`` mode writes the result); any other command runs as it is. A
    leading ``python`` means the harness's interpreter."""
    argv = resolve_command(command)
    if len(argv) >= 2 and argv[0] == sys.executable and argv[1].endswith(".py") and not argv[1].startswith("-"):
        return [argv[0], str(_GUARD), evaluation, "--", *argv[1:]]
    return argv


def _tail(path: Path, max_bytes: int = 4096) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read_result(path: Path) -> tuple[Optional[dict], str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no result file: evaluate_bpb was never called (or the run was stopped before it)"
    except (OSError, ValueError) as exc:
        return None, f"result file unreadable: {exc}"
    val = data.get("val_bpb") if isinstance(data, dict) else None
    if not isinstance(val, (int, float)) or not math.isfinite(val) or val <= 0:
        return None, f"result file has no valid val_bpb ({val!r})"
    return data, ""


def _integrity_problems(data: dict) -> str:
    """What the trusted evaluation and the guard (:mod:`harness.evalguard`) reported as wrong (one
    line), or "" when all is well."""
    problems = []
    if data.get("eval_calls", 1) != 1:
        problems.append(f"evaluate_bpb was called {data['eval_calls']} times (exactly once is allowed)")
    if data.get("causal") is False:
        problems.append(f"the model is not causal (earlier logits moved by {data.get('causality_max_diff', 0):.3g} "
                        "when later tokens changed)")
    if data.get("tampered"):
        problems.append("replaced at run time: " + ", ".join(map(str, data["tampered"])))
    findings = data["guard"].get("findings") if isinstance(data.get("guard"), dict) else None
    if findings and isinstance(findings, list):
        problems.append("; ".join(map(str, findings)))
    return "; ".join(problems)


def run_experiment(
    command: Sequence[str],
    cwd: Path,
    run_dir: Path,
    time_budget_s: float,
    hard_limit_s: float,
    over_budget_tolerance_s: float = 10.0,
    on_tick: Callable[[float], None] | None = None,
    isolate_network: bool = True,
    memory_limit_gb: float | None | str = "auto",
    checkpoint: bool = False,
    extra_env: dict[str, str] | None = None,
    cpus: Sequence[int] | None = None,
    evaluation: str = "prepare",
) -> RunResult:
    """Run ``command`` in ``cwd`` and return a classified :class:`RunResult`.

    Args:
        command: argv; a leading ``python`` means this interpreter.
        cwd: the sandbox folder; the child's ``AUTORESEARCH_CACHE`` is its data root
            (:func:`harness.datacache.root`), whatever HOME is; its HOME is ``[run] data_home``
            when the sandbox records one (:func:`harness.datacache.data_home`).
        run_dir: ``runs/<n>``; created; receives ``run.log``, ``metrics.json``, ``sample.txt``
            (the text the trained model generated after scoring) and, with ``checkpoint``,
            ``model.pt`` (the weights, saved by prepare.py after scoring).
        time_budget_s: the training budget, seconds (for the over-budget check).
        hard_limit_s: wall-clock seconds after which the whole process group gets SIGTERM, then
            SIGKILL after a grace of 5 s.
        over_budget_tolerance_s: trained seconds past the budget that are still accepted.
        on_tick: called about 4 times a second with the elapsed seconds (for a progress display).
        isolate_network: run in new network, user and (where possible) PID namespaces when
            :func:`isolation_prefix` finds a working ``unshare`` (else on the host network).
        memory_limit_gb: address-space limit of the child in GB; ``"auto"`` (default):
            :func:`default_memory_limit_bytes` (none where a GPU is present); None: no limit.
        checkpoint: ask prepare.py to save the weights after scoring.
        extra_env: more variables for the child's environment (the preflight's smoke setting,
            a runner's device: :mod:`harness.runners`).
        cpus: CPU cores the child is pinned to (one runner of several); None: any.
        evaluation: ``[run] evaluation``: ``prepare`` (prepare.py writes the result file) or
            ``capture`` (a foreign prepare.py: :mod:`harness.evalguard` writes it from
            evaluate_bpb's return value). A ``python SCRIPT.py`` command always starts through
            the guard (:func:`guarded_command`).

    Raises:
        KeyboardInterrupt: re-raised after the child's group has been killed.
        OSError: the command could not be started (e.g. missing interpreter).
    """
    import subprocess
    import uuid

    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "run.log"
    result_path = run_dir / "metrics.json"
    result_path.unlink(missing_ok=True)
    for stale in (SAMPLE_NAME, CHECKPOINT_NAME):
        (run_dir / stale).unlink(missing_ok=True)
    marker = uuid.uuid4().hex
    from .datacache import ENV as CACHE_ENV, data_home, root as data_root

    home = data_home(cwd)
    extra = {CACHE_ENV: str(data_root(cwd)), **({"HOME": home} if home else {}), **(extra_env or {}),
             RESULT_ENV: str(result_path.resolve()), MARKER_ENV: marker}
    if checkpoint:
        extra[CHECKPOINT_ENV] = str((run_dir / CHECKPOINT_NAME).resolve())
    env = scrubbed_env(extra)
    prefix = isolation_prefix() if isolate_network else ()
    limits = dict(RLIMITS)
    mem = default_memory_limit_bytes() if memory_limit_gb == "auto" else (
        int(float(memory_limit_gb) * 1e9) if memory_limit_gb else None)
    if mem:
        limits["RLIMIT_AS"] = mem
    if prefix:
        limits["RLIMIT_NPROC"] = NPROC_LIMIT
    if cpus:
        limits["cpus"] = sorted(cpus)
    argv = [*prefix, sys.executable, "-I", "-S", str(_SHIM), json.dumps(limits), "--", *guarded_command(command, evaluation)]
    clock = None
    if gpu_present():
        from .gpu import ClockSampler

        clock = ClockSampler()
    from .energy import EnergyMeter

    meter = EnergyMeter()
    start = time.monotonic()
    timed_out = False
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        rusage = None
        try:
            while True:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                elapsed = time.monotonic() - start
                if clock is not None:
                    clock.sample()  # at most once a second, a no-op without NVML
                if on_tick:
                    on_tick(elapsed)
                if elapsed > hard_limit_s and not timed_out:
                    timed_out = True
                    _kill_group(proc.pid, signal.SIGTERM)
                    kill_at = time.monotonic() + KILL_GRACE_S
                if timed_out and time.monotonic() > kill_at:
                    _kill_group(proc.pid, signal.SIGKILL)
                time.sleep(POLL_S)
        except BaseException:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            _kill_group(proc.pid, signal.SIGKILL)  # stray descendants of a finished run
            sweep_marked(marker)  # and those that left the group (setsid) outside a PID namespace
            if clock is not None:
                clock.close()
    wall_s = time.monotonic() - start
    energy = meter.stop()
    code = proc.returncode
    if "--pid" in prefix and 128 < code <= 128 + 64:
        code = 128 - code  # the shim, as process 1, reports "killed by signal n" as 128 + n
    maxrss_gb = (rusage.ru_maxrss * 1024 / 1e9) if rusage else 0.0  # ru_maxrss is KiB on Linux
    result = classify(code, timed_out, wall_s, log_path, result_path, time_budget_s,
                      over_budget_tolerance_s, hard_limit_s, maxrss_gb,
                      gpu_clock_mhz=clock.mean_mhz() if clock is not None else None)
    _write_sample(result_path, run_dir / SAMPLE_NAME)
    return replace(result, gpu_energy_j=energy.gpu_j, cpu_energy_j=energy.cpu_j,
                   gpu_s=wall_s * energy.gpus if energy.gpus else None)


def _write_sample(result_path: Path, sample_path: Path) -> None:
    """Write the sample of the result file (prompt, then continuation) to ``sample_path``; nothing
    when the result has none."""
    data, _ = _read_result(result_path)
    if data and isinstance(data.get("sample"), str):
        prompt = data.get("sample_prompt") if isinstance(data.get("sample_prompt"), str) else ""
        sample_path.write_text(prompt + data["sample"], encoding="utf-8")


def _count(data: dict, key: str) -> Optional[int]:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _usage(data: Optional[dict], train_s) -> dict:
    """The RunResult fields that say what the run did, from the result file's ``train_batches``,
    ``train_tokens``, ``num_params`` and ``device_name`` (None for each one missing or malformed)."""
    from .gpu import mfu

    if not data:
        return {}
    tokens, num_params = _count(data, "train_tokens"), _count(data, "num_params")
    device_name = data.get("device_name") if isinstance(data.get("device_name"), str) else None
    tokens_per_s = None
    if tokens is not None and isinstance(train_s, (int, float)) and math.isfinite(train_s) and train_s > 0:
        tokens_per_s = tokens / train_s
    sample_s = data.get("sample_s") if isinstance(data.get("sample"), str) else None
    steps = _count(data, "train_batches")
    return {"steps": steps if steps is not None else _count(data, "optimizer_steps"), "tokens": tokens, "tokens_per_s": tokens_per_s,
            "mfu": mfu(num_params, tokens_per_s, device_name), "num_params": num_params,
            "device_name": device_name, "checkpoint_bytes": _count(data, "checkpoint_bytes"),
            "sample_s": sample_s if isinstance(sample_s, (int, float)) else None}


def classify(exit_code, timed_out, wall_s, log_path, result_path, time_budget_s,
             over_budget_tolerance_s, hard_limit_s, maxrss_gb, gpu_clock_mhz=None) -> RunResult:
    """Turn an exit status, the result file and the log into a :class:`RunResult` outcome.

    ``wall_s``, ``time_budget_s``, ``over_budget_tolerance_s``, ``hard_limit_s`` in seconds,
    ``maxrss_gb`` in GB (the child's peak resident set size), ``gpu_clock_mhz`` the mean SM clock
    in MHz (None when not sampled). The fields saying what the run did (steps, tokens,
    tokens_per_s, mfu, num_params, device_name) come from the result file whenever it holds a
    valid score, whatever the outcome. ``train_s`` is the larger of prepare's (from the first
    training batch) and the guard's ``first_step_s`` (from the first optimizer step), so steps
    taken before the timed loop count; steps before prepare's first training batch (training on
    other data) make an ``integrity_violation``."""
    tail = _tail(log_path)
    data, why = _read_result(result_path)
    train_s = data.get("train_s") if data else None
    guard = data.get("guard") if data and isinstance(data.get("guard"), dict) else {}
    first_step_s, early_s = guard.get("first_step_s"), 0.0
    if isinstance(first_step_s, (int, float)) and math.isfinite(first_step_s) and (
            not isinstance(train_s, (int, float)) or first_step_s > train_s):
        early_s = first_step_s - train_s if isinstance(train_s, (int, float)) else 0.0
        train_s = first_step_s
    vram_mb = float(data.get("peak_vram_mb") or 0.0) if data else 0.0
    mem_gb = vram_mb / 1024 if vram_mb > 0 else maxrss_gb
    usage = _usage(data, train_s)

    def result(outcome, detail="", val=None):
        return RunResult(outcome, val, exit_code, wall_s, train_s, mem_gb, log_path, tail, detail,
                         gpu_clock_mhz=gpu_clock_mhz, **usage)

    if timed_out:
        return result("timeout", f"killed after the hard limit of {hard_limit_s:.0f} s")
    if exit_code != 0:
        if _OOM_PATTERNS.search(tail):
            return result("oom", "ran out of memory")
        if _NAN_PATTERNS.search(tail):
            return result("nan", "loss became NaN or exploded")
        if exit_code in (-signal.SIGKILL, 137):
            return result("preempted", "killed from outside (SIGKILL) without an out-of-memory message")
        return result("crash", f"exited with code {exit_code}")
    if data is None:
        return result("missing_metric", why)
    integrity = _integrity_problems(data)
    if early_s > 0:
        integrity = "; ".join(filter(None, [integrity, f"optimizer steps began {early_s:.2f} s before the first "
                                            "training batch (training outside the timed loop, on other data)"]))
    if integrity:
        return result("integrity_violation", integrity, float(data["val_bpb"]))
    if isinstance(train_s, (int, float)) and train_s > time_budget_s + over_budget_tolerance_s:
        return result("over_budget", f"trained {train_s:.1f} s on a budget of {time_budget_s} s",
                      float(data["val_bpb"]))
    return result("ok", "", float(data["val_bpb"]))
