"""Real search comparison on the CPU template: improvement over the baseline per strategy.

For each strategy (an ``--agent`` spec) and seed, a fresh sandbox (``harness init``, the
shakespeare corpus, ``--budget`` seconds of training) runs ``harness start --agent SPEC --seed S
--max-experiments N`` for real (real training, the default noise-aware decisions: baseline
repeats and confirmation runs count toward N). Sessions run ``--parallel`` at a time, each with
``OMP_NUM_THREADS=--threads``, strategies of the same seed side by side, so that every strategy
meets the same machine state. Per session it prints the baseline's figure (mean of its runs),
the final best's figure (:func:`harness.decisions.best_estimate`), the improvement (baseline minus
best, bits per byte), kept changes and knobs explored; then per strategy the mean improvement
over seeds with its spread. Last line: ``real: <strategy>=<mean improvement> ...``.

Usage: python benchmarks/search_cpu.py [--strategies optuna:random,hybrid] [--seeds 2] [--experiments 30]
                                       [--budget 10] [--parallel 2] [--threads 1] [--workdir DIR]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def session_result(sandbox: Path) -> dict:
    """The figures of a finished session's ledger."""
    from harness.decisions import best_estimate, is_baseline
    from harness.ledger import Ledger
    from harness.optimiser import GitFiles, changed_knobs

    records = Ledger(sandbox).records()
    base_runs = [r["val_bpb"] for r in records
                 if r.get("val_bpb") is not None and (is_baseline(r) or r.get("repeat_of") == 1)
                 and r.get("file_key") == records[0].get("file_key")]
    est = best_estimate(records)
    base = statistics.fmean(base_runs) if base_runs else float("nan")
    best = est.val_bpb if est else float("nan")
    return {"baseline": base, "best": best, "improvement": base - best, "rows": len(records),
            "kept": sum(r["status"] == "keep" for r in records) - 1,
            "knobs": len(changed_knobs(records, GitFiles(sandbox))), "best_experiment": est.experiment if est else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strategies", default="optuna:random,hybrid")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--experiments", type=int, default=30, help="ledger rows per session (--max-experiments)")
    ap.add_argument("--budget", type=int, default=10, help="training seconds per run")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each session")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="search-cpu-"))
    harness = [sys.executable, "-m", "harness"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    jobs = [(seed, s) for seed in range(args.seeds) for s in args.strategies.split(",")]
    results: dict[str, list[dict]] = {s: [] for s in args.strategies.split(",")}
    t0 = time.perf_counter()
    running: list[tuple[subprocess.Popen, int, str, Path]] = []

    def reap(block: bool) -> None:
        for item in list(running):
            proc, seed, strategy, sandbox = item
            if block and item is running[0]:
                proc.wait()
            if proc.poll() is not None:
                running.remove(item)
                res = session_result(sandbox)
                results[strategy].append(res)
                print(f"seed {seed} {strategy:14s}: baseline {res['baseline']:.4f} best {res['best']:.4f} "
                      f"improvement {res['improvement']:+.4f} (best #{res['best_experiment']}), kept {res['kept']}, "
                      f"knobs explored {res['knobs']}, {res['rows']} rows, exit {proc.returncode} ({sandbox})",
                      flush=True)

    for seed, strategy in jobs:
        while len(running) >= args.parallel:
            reap(block=True)
        sandbox = workdir / f"{strategy.replace(':', '-')}-{seed}"
        subprocess.run([*harness, "init", str(sandbox), "--time-budget", str(args.budget), "--tag", "bench"],
                       check=True, capture_output=True, env=env)
        log = open(workdir / f"{sandbox.name}.log", "w")
        proc = subprocess.Popen([*harness, "start", str(sandbox), "--agent", strategy, "--seed", str(seed),
                                 "--max-experiments", str(args.experiments)], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
        running.append((proc, seed, strategy, sandbox))
    while running:
        reap(block=True)
    line = []
    for strategy, rows in results.items():
        imp = [r["improvement"] for r in rows]
        sd = statistics.stdev(imp) if len(imp) > 1 else 0.0
        print(f"{strategy:14s}: improvement mean {statistics.fmean(imp):+.4f} sd {sd:.4f} over {len(imp)} seeds "
              f"(min {min(imp):+.4f}, max {max(imp):+.4f}); knobs explored {[r['knobs'] for r in rows]}")
        line.append(f"{strategy}={statistics.fmean(imp):.4f}")
    print(f"{time.perf_counter() - t0:.0f} s; budget {args.budget} s; {args.experiments} rows a session; "
          f"{args.parallel} sessions at a time, OMP_NUM_THREADS={args.threads}; seeds 0-{args.seeds - 1}")
    print("real: " + " ".join(line))


if __name__ == "__main__":
    main()
