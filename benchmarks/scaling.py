"""Scaling of several runners: ``scaling_efficiency`` (see shared BENCHMARKS.md), locally and on
a local Ray cluster.

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

With ``--ray``, the same sessions run through ``--ray`` (:mod:`harness.cluster`) on a local Ray
cluster started here (ray's cluster utility: a head and one node declaring 16 fake GPUs): every
run is a real Ray task that ships the files, starts the real runner and its child, which sleeps
the stated length and writes a result; the rate's clock is the session's rows (the end of the
baseline's row to the end of the last row, from their start times and wall times).

Prints one line per session, then ``scaling_efficiency_<N>=<value>`` for each N > 1; the last line
is ``scaling_efficiency=<min over N> runners=<list> length_s=<l> rounds=<r> where=<local|ray>``.

Usage: python benchmarks/scaling.py [--runners 1,4,16] [--length 60] [--rounds 2] [--ray]
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


SLEEP_TRAIN = '''"""Stands in for train.py: sleeps the stated length, then writes a result."""
import json, os, pathlib, sys, time
if os.environ.get("AUTORESEARCH_SMOKE_S"):
    pathlib.Path(os.environ["AUTORESEARCH_RESULT_FILE"]).write_text(json.dumps({"val_bpb": 1.0, "eval_calls": 1}))
    sys.exit(0)
time.sleep(%r)
changed = "UNUSED_" in pathlib.Path("train.py").read_text()
pathlib.Path(os.environ["AUTORESEARCH_RESULT_FILE"]).write_text(
    json.dumps({"val_bpb": 1.1 if changed else 1.0, "train_s": %r, "eval_calls": 1}))
'''


def session(workdir: Path, runners: int, length_s: float, rounds: int, ray_address: str | None = None) -> dict:
    """One session with ``runners`` simulated runners (on the Ray cluster at ``ray_address``
    when given); its rate in experiments per hour."""
    from harness.config import HarnessConfig, PolicySettings, load, render
    from harness.core import Events
    from harness.ledger import Ledger
    from harness.loop import Limits, Session
    from harness.reconcile import verify
    from harness.runners import Place
    from harness.sandbox import Sandbox

    root = workdir / f"n{runners}"
    workdir.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True)
    (root / "train.py").write_text((ROOT / "harness" / "templates" / "sandbox" / "train.py").read_text())
    cfg = HarnessConfig(tag="scaling", policy=PolicySettings(keep="greedy", baseline_runs=1, remeasure_every=0))
    if ray_address:
        (root / "sleep_train.py").write_text(SLEEP_TRAIN % (length_s, length_s))
        cfg = HarnessConfig(tag="scaling", policy=cfg.policy, command=["python", "sleep_train.py"],
                            time_budget_s=max(1, int(length_s)))
    (root / "harness.toml").write_text(render(cfg))
    (root / ".gitignore").write_text("results.tsv\ntrajectory.jsonl\nruns/\n.harness/\n")
    sb = Sandbox.create(root, cfg.branch, "template")
    total = 1 + runners * rounds
    if ray_address:
        from harness.cluster import RayCluster

        places = RayCluster(ray_address, root).places(runners)
        Session(root, load(root), Constants(), Events(), Limits(max_experiments=total), places=places).run()
        spans = sorted(_span(r) for r in Ledger(root).records() if r.get("run_s"))
    else:
        places = [Place(root, index=i, label=f"sim {i}") for i in range(runners)] if runners > 1 else [Place(root)]
        sim = Sleeper(length_s)
        Session(root, load(root), Constants(), Events(), Limits(max_experiments=total), places=places,
                measure=sim).run()
        spans = sorted(sim.spans)
    problems = verify(sb, Ledger(root))
    if problems:
        raise SystemExit(f"the record of {root} is inconsistent: {problems}")
    baseline_end, last_end = spans[0][1], max(end for _, end in spans)
    rate = (len(spans) - 1) / (last_end - baseline_end) * 3600
    return {"runners": runners, "experiments": len(spans) - 1, "seconds": last_end - baseline_end, "per_hour": rate}


def _span(rec: dict) -> tuple[float, float]:
    from datetime import datetime

    t0 = datetime.fromisoformat(rec["started_at"]).timestamp()
    return t0, t0 + rec["wall_s"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runners", default="1,4,16", help="comma-separated runner counts; 1 is always added")
    ap.add_argument("--length", type=float, default=60.0, help="seconds each simulated experiment runs")
    ap.add_argument("--rounds", type=int, default=2, help="experiments per runner after the baseline")
    ap.add_argument("--ray", action="store_true", help="run the sessions on a local Ray cluster started here")
    args = ap.parse_args(argv)
    counts = sorted({1, *(int(n) for n in args.runners.split(","))})
    cluster = None
    if args.ray:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0,
                                                                "include_dashboard": False})
        cluster.add_node(num_cpus=max(counts), num_gpus=max(counts))
        cluster.wait_for_nodes()
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        results = {}
        for n in counts:
            r = session(Path(tmp) / ("ray" if args.ray else "local"), n, args.length, args.rounds,
                        cluster.address if cluster else None)
            results[n] = r
            print(f"runners={n} experiments={r['experiments']} seconds={r['seconds']:.1f} "
                  f"per_hour={r['per_hour']:.0f}", flush=True)
    one = results[1]["per_hour"]
    eff = {n: results[n]["per_hour"] / (n * one) for n in counts if n > 1}
    for n, e in eff.items():
        print(f"scaling_efficiency_{n}={e:.3f}")
    print(f"scaling_efficiency={min(eff.values()):.3f} runners={','.join(map(str, counts))} "
          f"length_s={args.length:g} rounds={args.rounds} where={'ray' if args.ray else 'local'}")
    if cluster is not None:
        import ray

        ray.shutdown()  # this process is the sessions' driver
        cluster.shutdown()


if __name__ == "__main__":
    main()
