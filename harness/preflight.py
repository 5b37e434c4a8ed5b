"""Preflight: a smoke run of the sandbox's train.py before its first baseline (and, with
``[run] smoke_each = true``, before each proposal's full run: :func:`smoke_run`).

A crash, an out-of-memory error or data that is not prepared would otherwise show only after the
baseline's whole time budget (and its evaluation). The preflight runs the same command, through the
same runner (time box, confinement, trusted result file), with ``AUTORESEARCH_SMOKE_S`` set:
prepare.py then sets ``TIME_BUDGET`` to :data:`SMOKE_S` seconds and ``EVAL_TOKENS`` to 4 windows,
and skips the sample and the checkpoint. Nothing is recorded in the ledger and nothing is committed:
a failure stops the session with what went wrong, the end of the log and what to do.

A prepare.py without the smoke setting (written by an older harness, or adopted from elsewhere)
is not smoke-tested: the preflight says so and the baseline runs as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .config import HarnessConfig
from .sandbox import SandboxError

#: seconds of training in the smoke run (the time budget, if shorter)
SMOKE_S = 3.0
SMOKE_ENV = "AUTORESEARCH_SMOKE_S"


class PreflightError(SandboxError):
    """train.py failed its smoke run; the message has the outcome, the log's end and what to do."""


def supported(sandbox: Path) -> bool:
    """True when the sandbox's prepare.py has the smoke setting."""
    try:
        return SMOKE_ENV in (Path(sandbox) / "prepare.py").read_text(encoding="utf-8")
    except OSError:
        return False


def smoke_run(sandbox: Path, cfg: HarnessConfig, run_dir: Path, on_tick=None, env: Optional[dict] = None,
              cpus=None):
    """One smoke run of the sandbox's work tree: the command with ``AUTORESEARCH_SMOKE_S`` set
    (:data:`SMOKE_S` seconds of training, or the time budget if shorter), through the real runner.
    ``env`` and ``cpus``: a runner's device variables and cores (:mod:`harness.runners`).

    Returns:
        The :class:`harness.runner.RunResult` (its ``run.log`` in ``run_dir``), or None when
        prepare.py has no smoke setting (:func:`supported`).
    Raises:
        KeyboardInterrupt: as :func:`harness.runner.run_experiment`.
    """
    from .runner import run_experiment

    if not supported(sandbox):
        return None
    budget = min(SMOKE_S, cfg.time_budget_s)
    return run_experiment(cfg.command, Path(sandbox), run_dir, budget, budget + cfg.allowance_s,
                          cfg.over_budget_tolerance_s, on_tick, extra_env={**(env or {}), SMOKE_ENV: f"{budget:g}"},
                          cpus=cpus)


def preflight(sandbox: Path, cfg: HarnessConfig, env: Optional[dict] = None, cpus=None) -> Optional[str]:
    """Run the smoke run of ``sandbox`` (its folder ``.harness/preflight/`` gets the log), with a
    runner's device variables ``env`` and cores ``cpus`` (:mod:`harness.runners`) when given.

    Returns:
        A one-line note for the session's output: how long the smoke run took, or why none ran.
    Raises:
        PreflightError: the smoke run did not end with a valid score.
    """
    run_dir = Path(sandbox) / ".harness" / "preflight"
    res = smoke_run(sandbox, cfg, run_dir, env=env, cpus=cpus)
    if res is None:
        return "preflight skipped: this prepare.py has no smoke setting (AUTORESEARCH_SMOKE_S); the baseline runs as is"
    budget = min(SMOKE_S, cfg.time_budget_s)
    if res.outcome == "ok":
        return f"preflight: a {budget:g} s smoke run of train.py scored in {res.wall_s:.1f} s; the baseline runs next"
    tail = "\n".join(res.log_tail.rstrip().splitlines()[-15:])
    hint = {"oom": "make the model or the batch smaller",
            "timeout": "it did not finish in the allowance: look for a hang before or after the training loop",
            "missing_metric": "train.py must call evaluate_bpb(model, tokenizer, batch_size) once, after training"
            }.get(res.outcome, "fix train.py (or prepare the data: `python prepare.py`) and commit it")
    raise PreflightError(
        f"preflight: a {budget:g} s smoke run of train.py ended in {res.outcome} ({res.detail}) after "
        f"{res.wall_s:.1f} s; nothing was recorded or committed. End of its log ({run_dir / 'run.log'}):\n{tail}\n"
        f"What to do: {hint}, then start again.")
