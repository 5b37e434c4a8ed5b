"""Scaling of several runners: ``scaling_efficiency`` (see shared BENCHMARKS.md), locally.

Runs real sessions of the loop (:class:`harness.loop.Session`: the real experiment core, git,
work trees, markers and ledger) whose runs are simulated: each sleeps ``--length`` seconds (a
fixed, stated experiment length) and scores the file with a synthetic val_bpb, so only the
harness's own work around the runs and its scheduling can cost throughput. The agent answers at
once with a new file each time (an unused constant added), under the greedy policy with one
baseline run; every proposal scores worse than the baseline (nothing is kept after it), so each
session runs the same number of experiments whatever the order they end in.

For N runners (``--runners``, default 1, 4 and 16; N simulated places, no device), a session runs
the baseline and then N x ``--rounds`` experiments. Its rate is the experiments after the baseline
÷ the time from the end of the baseline to the end of the last run (monotonic clock, measured
around each simulated run). scaling_efficiency(N) = rate(N) ÷ (N x rate(1)).

Prints one line per session, then ``scaling_efficiency_<N>=<value>`` for each N > 1; the last line
is ``scaling_efficiency=<min over N> runners=<list> length_s=<l> rounds=<r>``.

Usage: python benchmarks/scaling.py [--runners 1,4,16] [--length 10] [--rounds 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Constants:
    """Adds one new unused constant per proposal: every file is new, none can fail the rails."""

    name = "scripted-constants"

    def __init__(self):
        self.k = 0

    def propose(self, context):
        from harness.agents.base import Proposal
        from harness.patch import make_unified_diff

        self.k += 1
        source = context.files["train.py"]
        new = source.replace("\nimport math\n", f"\nimport math\nUNUSED_{self.k} = {self.k}\n", 1)
        return Proposal(f"add UNUSED_{self.k}", make_unified_diff(source, new, "train.py"))


class Sleeper:
    """``measure(run_dir, on_tick, place)``: sleeps ``length_s`` (ticking); the baseline scores
    1.0, every changed file 1.1 and a bit (by its hash); notes each run's (start, end) on the
    monotonic clock."""

    def __init__(self, length_s: float):
        self.length_s = length_s
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def __call__(self, run_dir: Path, on_tick, place=None):
        import hashlib

        from harness.runner import RunResult

        t0 = time.monotonic()
        run_dir.mkdir(parents=True, exist_ok=True)
        log = run_dir / "run.log"
        log.write_text("simulated\n")
        text = (place.path / "train.py").read_text()
        while time.monotonic() - t0 < self.length_s:
            if on_tick:
                on_tick(time.monotonic() - t0)
            time.sleep(min(0.25, max(0.0, self.length_s - (time.monotonic() - t0))))
        val = 1.0 if "UNUSED_" not in text else 1.1 + int(hashlib.sha256(text.encode()).hexdigest(), 16) % 1000 / 1e6
        with self._lock:
            self.spans.append((t0, time.monotonic()))
        return RunResult("ok", val, 0, self.length_s, self.length_s, 0.1, log, "", steps=100, tokens=100,
                         tokens_per_s=100 / self.length_s)


def session(workdir: Path, runners: int, length_s: float, rounds: int) -> dict:
    """One session with ``runners`` simulated runners; its rate in experiments per hour."""
    from harness.config import HarnessConfig, PolicySettings, load, render
    from harness.core import Events
    from harness.ledger import Ledger
    from harness.loop import Limits, Session
    from harness.reconcile import verify
    from harness.runners import Place
    from harness.sandbox import Sandbox

    root = workdir / f"n{runners}"
    root.mkdir(parents=True)
    (root / "train.py").write_text((ROOT / "harness" / "templates" / "sandbox" / "train.py").read_text())
    cfg = HarnessConfig(tag="scaling", policy=PolicySettings(keep="greedy", baseline_runs=1, remeasure_every=0))
    (root / "harness.toml").write_text(render(cfg))
    (root / ".gitignore").write_text("results.tsv\ntrajectory.jsonl\nruns/\n.harness/\n")
    sb = Sandbox.create(root, cfg.branch, "template")
    places = [Place(root, index=i, label=f"sim {i}") for i in range(runners)] if runners > 1 else [Place(root)]
    sim = Sleeper(length_s)
    total = 1 + runners * rounds
    Session(root, load(root), Constants(), Events(), Limits(max_experiments=total), places=places,
            measure=sim).run()
    problems = verify(sb, Ledger(root))
    if problems:
        raise SystemExit(f"the record of {root} is inconsistent: {problems}")
    spans = sorted(sim.spans)
    baseline_end, last_end = spans[0][1], max(end for _, end in spans)
    rate = (len(spans) - 1) / (last_end - baseline_end) * 3600
    return {"runners": runners, "experiments": len(spans) - 1, "seconds": last_end - baseline_end, "per_hour": rate}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runners", default="1,4,16", help="comma-separated runner counts; 1 is always added")
    ap.add_argument("--length", type=float, default=10.0, help="seconds each simulated experiment runs")
    ap.add_argument("--rounds", type=int, default=4, help="experiments per runner after the baseline")
    args = ap.parse_args(argv)
    counts = sorted({1, *(int(n) for n in args.runners.split(","))})
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        results = {}
        for n in counts:
            r = session(Path(tmp), n, args.length, args.rounds)
            results[n] = r
            print(f"runners={n} experiments={r['experiments']} seconds={r['seconds']:.1f} "
                  f"per_hour={r['per_hour']:.0f}", flush=True)
    one = results[1]["per_hour"]
    eff = {n: results[n]["per_hour"] / (n * one) for n in counts if n > 1}
    for n, e in eff.items():
        print(f"scaling_efficiency_{n}={e:.3f}")
    print(f"scaling_efficiency={min(eff.values()):.3f} runners={','.join(map(str, counts))} "
          f"length_s={args.length:g} rounds={args.rounds}")


if __name__ == "__main__":
    main()
