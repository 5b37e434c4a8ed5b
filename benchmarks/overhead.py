"""Harness overhead per experiment: ``overhead_ratio`` (see shared BENCHMARKS.md).

Measures, on one sandbox made from the real template (default model, real corpus), the wall time
for the harness to run one experiment of commit C, from accepted proposal to ledger row written
(commit, run with the time box, decide, amend the trailers, keep or reset, append the ledger),
divided by the wall time of a bare ``python train.py`` at the same commit C in the same sandbox.
The two are run side by side, alternating (harness, bare, harness, bare ...), ``--pairs`` times
(default 5). The harness side replays the unmodified train.py (an empty commit, as the baseline
is run), so both sides train exactly the same code.

Prints each pair, then the median ratio and its spread; the last line is
``overhead_ratio=<median> harness_s=<median> bare_s=<median> pairs=<n> time_budget_s=<b>``.

Usage: python benchmarks/overhead.py [--pairs 5] [--time-budget 10] [--corpus shakespeare|pystdlib|PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--time-budget", type=int, default=10)
    ap.add_argument("--corpus", default="shakespeare")
    args = ap.parse_args()

    from harness.config import load
    from harness.experiment import ExperimentRunner
    from harness.init import create_sandbox
    from harness.ledger import Ledger
    from harness.runner import RESULT_ENV, resolve_command, scrubbed_env
    from harness.sandbox import Sandbox

    root = Path(tempfile.mkdtemp(prefix="overhead-"))
    sandbox_dir = root / "sandbox"
    create_sandbox(sandbox_dir, args.corpus, args.time_budget, "bench")
    cfg = load(sandbox_dir)
    sandbox, ledger = Sandbox(sandbox_dir, cfg.branch), Ledger(sandbox_dir)
    runner = ExperimentRunner(sandbox, ledger, cfg, "benchmark")
    commit_c = sandbox.head()
    bare_env = scrubbed_env({RESULT_ENV: str(root / "bare-metrics.json")})

    def harness_once(n: int) -> float:
        t0 = time.perf_counter()
        rec = runner.run(n, None, {}, time.time())[0]
        elapsed = time.perf_counter() - t0
        assert rec.outcome in ("improved", "not_improved"), rec
        sandbox.reset_hard(commit_c)  # every harness run starts from commit C
        return elapsed

    def bare_once() -> float:
        t0 = time.perf_counter()
        subprocess.run(resolve_command(cfg.command), cwd=sandbox_dir, env=bare_env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    print(f"sandbox {sandbox_dir}, commit {commit_c[:7]}, time budget {args.time_budget} s, {os.cpu_count()} cores")
    harness_s, bare_s, ratios = [], [], []
    for i in range(args.pairs):
        h = harness_once(i + 1)
        b = bare_once()
        harness_s.append(h)
        bare_s.append(b)
        ratios.append(h / b)
        print(f"pair {i + 1}: harness {h:.2f} s, bare {b:.2f} s, ratio {h / b:.3f}", flush=True)
    med = statistics.median(ratios)
    print(f"ratio median {med:.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}")
    print(f"overhead_ratio={med:.3f} harness_s={statistics.median(harness_s):.2f} "
          f"bare_s={statistics.median(bare_s):.2f} pairs={args.pairs} time_budget_s={args.time_budget}")


if __name__ == "__main__":
    sys.exit(main())
