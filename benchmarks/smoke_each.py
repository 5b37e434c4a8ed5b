"""What a smoke run before each proposal (``[run] smoke_each = true``) costs and saves.

On one sandbox made from the real template (real training on ``--corpus``, time budget
``--time-budget`` s), three versions of train.py run through the real runner, each with and
without the smoke run first, alternating, ``--repeats`` times:

- ``sound``: the template's train.py (the smoke run passes, then the full run): the smoke's cost;
- ``early``: raises before the first step (crashes in seconds either way);
- ``late``: raises after training, before the evaluation: the crash the smoke run exists for
  (without it the whole time budget is spent first).

Per case and mode: the median wall time (smoke run + full run as the harness does it). From
those: the smoke's cost on a sound proposal (``cost_s``), its saving on a late crash
(``saved_s``), and the break-even share of late crashes among proposals, ``cost_s / (cost_s +
saved_s)``: above it, smoke runs save time. The crash rates seen here (the ledgers of your own
sessions, ``--ledger trajectory.jsonl ...``) are printed beside it: the share of rows that
crashed after more than the smoke run's time (the late crashes a smoke run would have caught).

The last line is ``smoke_break_even=<share> cost_s=<median> saved_s=<median> time_budget_s=<b>
repeats=<r> late_crash_rate=<share or none>``.

Usage: python benchmarks/smoke_each.py [--repeats 2] [--time-budget 30] [--ledger PATH ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

CRASHES = ("crash", "oom", "nan", "timeout", "missing_metric")


def late_crash_rate(ledgers: list[str], smoke_s: float) -> tuple[float, int] | None:
    """Share of proposal rows (not baselines or repeats) that crashed after more than ``smoke_s``
    seconds of training, over ``ledgers``; with the number of such rows. None without rows."""
    rows = []
    for path in ledgers:
        rows += [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    proposals = [r for r in rows if r.get("run_s") is not None and not r.get("repeat_of")
                 and r.get("proposal_format") not in ("baseline", "repeat")]
    if not proposals:
        return None
    late = [r for r in proposals if r["outcome"] in CRASHES and (r.get("train_s") or 0) > smoke_s]
    return len(late) / len(proposals), len(proposals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--time-budget", type=int, default=30)
    ap.add_argument("--corpus", default="shakespeare")
    ap.add_argument("--ledger", nargs="*", default=[], help="trajectory.jsonl files of real sessions")
    args = ap.parse_args()

    from harness.config import load
    from harness.init import create_sandbox
    from harness.preflight import SMOKE_S, smoke_run
    from harness.runner import run_experiment

    root = Path(tempfile.mkdtemp(prefix="smoke-"))
    dest = root / "sandbox"
    create_sandbox(dest, args.corpus, args.time_budget, "bench")
    cfg = load(dest)
    sound = (dest / "train.py").read_text()
    cases = {
        "sound": sound,
        "early": sound.replace("\nwhile True:\n", "\nraise RuntimeError('boom before the first step')\nwhile True:\n", 1),
        "late": sound.replace("    val_bpb = evaluate_bpb(", "    raise RuntimeError('boom after training')\n"
                              "    val_bpb = evaluate_bpb(", 1),
    }
    assert all(text != sound for name, text in cases.items() if name != "sound")

    def once(name: str, smoke: bool, i: int) -> tuple[float, str]:
        (dest / "train.py").write_text(cases[name])
        run_dir = root / f"{name}-{'smoke' if smoke else 'plain'}-{i}"
        t0 = time.monotonic()
        res = smoke_run(dest, cfg, run_dir) if smoke else None
        if res is None or res.outcome == "ok":
            res = run_experiment(cfg.command, dest, run_dir, cfg.time_budget_s, cfg.hard_limit_s,
                                 cfg.over_budget_tolerance_s)
        return time.monotonic() - t0, res.outcome

    walls: dict[tuple[str, bool], list[float]] = {}
    print(f"time budget {args.time_budget} s, smoke run {SMOKE_S:g} s of training, sandbox {dest}", flush=True)
    for i in range(args.repeats):
        for name in cases:
            for smoke in (False, True):
                wall, outcome = once(name, smoke, i)
                walls.setdefault((name, smoke), []).append(wall)
                print(f"repeat {i + 1} {name:5s} {'smoke + run' if smoke else 'run only   '}: {wall:6.1f} s ({outcome})",
                      flush=True)
    (dest / "train.py").write_text(sound)
    med = {k: statistics.median(v) for k, v in walls.items()}
    for name in cases:
        for smoke in (False, True):
            v = walls[(name, smoke)]
            print(f"{name:5s} {'smoke + run' if smoke else 'run only   '}: median {med[(name, smoke)]:.1f} s "
                  f"(min {min(v):.1f}, max {max(v):.1f})")
    cost = med[("sound", True)] - med[("sound", False)]
    saved = med[("late", False)] - med[("late", True)]
    even = cost / (cost + saved) if cost + saved > 0 else float("nan")
    print(f"early crash: {med[('early', True)] - med[('early', False)]:+.1f} s with the smoke run")
    seen = late_crash_rate(args.ledger, SMOKE_S) if args.ledger else None
    if seen:
        print(f"late crashes in the given ledgers: {seen[0]:.1%} of {seen[1]} proposals")
    print(f"smoke_break_even={even:.3f} cost_s={cost:.1f} saved_s={saved:.1f} time_budget_s={args.time_budget} "
          f"repeats={args.repeats} late_crash_rate={'none' if not seen else f'{seen[0]:.3f}'}")


if __name__ == "__main__":
    sys.exit(main())
