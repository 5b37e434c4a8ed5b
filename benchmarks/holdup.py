"""Do kept improvements hold up? Re-runs every kept commit of a finished sandbox and checks each
keep against the kept commit before it.

For a sandbox a ``harness start`` session has written, each kept experiment's commit (the baseline
first) is checked out into a temporary git worktree and trained ``--repeats`` times (default 3)
with the sandbox's own command and time budget, through the harness's runner (same time box and
trusted evaluation), the commits interleaved (A, B, C, A, B, C ...) so that a change of machine
load hits all alike. A keep *holds up* when the mean val_bpb of its re-runs is lower than the mean
of the kept commit before it. Nothing in the sandbox changes (its ledger, branch and runs/ stay).

Prints one line per kept commit, then ``held_up=<k> kept=<m> repeats=<r>`` as the last line.

Usage: python benchmarks/holdup.py SANDBOX [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sandbox", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import git

    from harness.config import load
    from harness.ledger import Ledger
    from harness.runner import run_experiment

    sandbox = args.sandbox.resolve()
    cfg = load(sandbox)
    kept = [r for r in Ledger(sandbox).records() if r["status"] == "keep"]
    repo = git.Repo(sandbox)
    work = Path(tempfile.mkdtemp(prefix="holdup-"))
    trees = {}
    for r in kept:
        tree = work / f"exp{r['experiment']}"
        repo.git.worktree("add", "--detach", str(tree), r["commit"])
        trees[r["experiment"]] = tree
    vals: dict[int, list[float]] = {r["experiment"]: [] for r in kept}
    try:
        for i in range(args.repeats):
            for r in kept:
                n = r["experiment"]
                res = run_experiment(cfg.command, trees[n], work / f"runs-{n}-{i}", cfg.time_budget_s, cfg.hard_limit_s,
                                     cfg.over_budget_tolerance_s)
                if res.val_bpb is not None and res.outcome == "ok":
                    vals[n].append(res.val_bpb)
                print(f"repeat {i + 1}: experiment {n} {res.outcome} val_bpb {res.val_bpb} steps {res.steps}",
                      flush=True)
    finally:
        for tree in trees.values():
            repo.git.worktree("remove", "--force", str(tree))
    held = 0
    for prev, r in zip(kept, kept[1:]):
        a, b = vals[prev["experiment"]], vals[r["experiment"]]
        ok = bool(a and b) and statistics.fmean(b) < statistics.fmean(a)
        held += ok
        print(f"#{r['experiment']} {r['description'][:60]!r}: kept at {r['val_bpb']:.6f}; re-runs "
              f"{statistics.fmean(b) if b else float('nan'):.6f} vs #{prev['experiment']} "
              f"{statistics.fmean(a) if a else float('nan'):.6f}: {'holds up' if ok else 'does not hold up'}")
    print(f"held_up={held} kept={len(kept) - 1} repeats={args.repeats}")


if __name__ == "__main__":
    main()
