"""Duty cycle of one runner: ``duty_cycle`` (see shared BENCHMARKS.md), pipelined and not.

Runs real ``harness start`` sessions (the real experiment core, git and runner; real training of
the template's train.py on Shakespeare) with an agent whose every proposal takes a fixed, stated
latency (``--latency``, seconds, spent sleeping: an API model thinking elsewhere) before it hands
out a one-knob change of a training setting (learning rate, weight decay, schedule, clipping: the
model's size and so each run's cost stay the same), valid against the best it was shown. Each session runs ``--experiments``
rows under the greedy policy with one baseline run, so that every row after the baseline needs
a proposal. Sessions alternate: not pipelined, pipelined, not pipelined, ... ``--pairs`` times.

Per session: duty cycle = sum of the experiment processes' wall time (``run_s`` of every row) ÷
the session's wall time (from ``Session.run()`` to its return). Also counted: rows recorded
``stale`` (a proposal asked ahead that no longer fitted a new best).

Prints each session, then the medians with min and max; the last line is
``duty_cycle=<pipelined median> sequential=<median> ratio=<pipelined / sequential> latency_s=<l>
time_budget_s=<b> experiments=<n> pairs=<p>``. ``--pipelined-only`` runs only the pipelined
sessions (long budgets; sequential and ratio print as ``-``).

Usage: python benchmarks/duty_cycle.py [--pairs 2] [--experiments 8] [--latency 4] [--time-budget 10]
       [--pipelined-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path


#: knobs the agent moves: none changes the model's size, so every run costs about the same
TRAINING_KNOBS = ("LEARNING_RATE", "WEIGHT_DECAY", "WARMUP_FRAC", "WARMDOWN_FRAC", "GRAD_CLIP", "FINAL_LR_FRAC")


class SlowAgent:
    """Thinks for ``latency_s`` seconds, then proposes the next untried move of the training
    knobs (:data:`TRAINING_KNOBS`, round robin) from the best it was shown: a scripted agent
    whose proposals are valid against the files it sees, as an API model's would be."""

    def __init__(self, latency_s: float):
        self.latency_s, self.asked = latency_s, 0
        self.name = "anthropic:scripted-latency"  # an API-like agent: pipelining's auto setting would be on

    def propose(self, context):
        from harness.agents.base import Proposal
        from harness.decisions import file_key
        from harness.knobs import all_moves
        from harness.patch import make_unified_diff

        time.sleep(self.latency_s)
        source, taken = context.files["train.py"], context.taken()
        moves = [m for m in all_moves(source) if m[0] in TRAINING_KNOBS
                 and file_key({**context.files, "train.py": m[2]}) not in taken]
        by_knob = sorted(moves, key=lambda m: (TRAINING_KNOBS.index(m[0]) - self.asked) % len(TRAINING_KNOBS))
        self.asked += 1
        knob, _, new, what = by_knob[0]
        return Proposal(what, make_unified_diff(source, new), format="knob")


def one_session(root: Path, i: int, pipelined: bool, args) -> dict:
    from harness.config import load
    from harness.core import Events
    from harness.init import create_sandbox
    from harness.loop import Limits, Session

    dest = root / f"s{i}-{'pipelined' if pipelined else 'sequential'}"
    create_sandbox(dest, args.corpus, args.time_budget, "bench")
    toml = (dest / "harness.toml").read_text()
    toml = re.sub(r'^keep = "\w+"', 'keep = "greedy"', toml, flags=re.M)
    (dest / "harness.toml").write_text(re.sub(r"^baseline_runs = \d+", "baseline_runs = 1", toml, flags=re.M))
    import git

    git.Repo(dest).git.commit("-am", "greedy, one baseline run (benchmark)")
    cfg = load(dest)
    session = Session(dest, cfg, SlowAgent(args.latency), Events(), Limits(max_experiments=args.experiments),
                      pipelined=pipelined)
    t0 = time.monotonic()
    session.run()
    wall = time.monotonic() - t0
    rows = [json.loads(line) for line in (dest / "trajectory.jsonl").read_text().splitlines()]
    run_s = sum(r["run_s"] or 0 for r in rows)
    return {"duty": run_s / wall, "wall": wall, "run_s": run_s, "rows": len(rows),
            "stale": sum(r["outcome"] == "stale" for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--experiments", type=int, default=8)
    ap.add_argument("--latency", type=float, default=4.0, help="seconds each proposal takes")
    ap.add_argument("--time-budget", type=int, default=10)
    ap.add_argument("--corpus", default="shakespeare")
    ap.add_argument("--pipelined-only", action="store_true", help="skip the sequential sessions")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="duty-"))
    print(f"{os.cpu_count()} cores, time budget {args.time_budget} s, proposal latency {args.latency} s, "
          f"{args.experiments} rows per session, sandboxes under {root}", flush=True)
    got = {False: [], True: []}
    for p in range(args.pairs):
        for pipelined in ((True,) if args.pipelined_only else (False, True)):
            r = one_session(root, p, pipelined, args)
            got[pipelined].append(r)
            print(f"pair {p + 1} {'pipelined ' if pipelined else 'sequential'}: duty cycle {r['duty']:.3f} "
                  f"(runs {r['run_s']:.1f} s of {r['wall']:.1f} s, {r['rows']} rows, {r['stale']} stale)", flush=True)
    seq = [r["duty"] for r in got[False]]
    pipe = [r["duty"] for r in got[True]]
    for name, vals in (("sequential", seq), ("pipelined", pipe)):
        if vals:
            print(f"{name}: median {statistics.median(vals):.3f}, min {min(vals):.3f}, max {max(vals):.3f}")
    seq_m = f"{statistics.median(seq):.3f}" if seq else "-"
    ratio = f"{statistics.median(pipe) / statistics.median(seq):.3f}" if seq else "-"
    print(f"duty_cycle={statistics.median(pipe):.3f} sequential={seq_m} ratio={ratio} latency_s={args.latency:g} "
          f"time_budget_s={args.time_budget} experiments={args.experiments} pairs={args.pairs}")


if __name__ == "__main__":
    sys.exit(main())
