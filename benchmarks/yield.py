"""Decision yield: ``false_keep_rate`` and ``true_gain`` of the keep policies (see shared BENCHMARKS.md).

Each policy (``greedy``, Karpathy's rule, and ``noise``, the default) runs through the real
experiment core (:class:`harness.core.ExperimentCore`: real git sandbox, real ledger, baseline
repeats, confirmation runs, re-measures, duplicates) with a simulated runner instead of training:
the run's val_bpb is a synthetic function of the template's knobs in the train.py that runs (with
interactions, knobs that do nothing, and a failure region: ``nan`` above a learning rate, ``oom``
above a model size) plus Gaussian noise of sd ``--noise`` drawn afresh for every run. The default
noise, 0.0068, is the sd of val_bpb measured for the unmodified CPU template (five runs, 60 s
budget, 2 cores; issue 10).

The agent is the same for both policies (``--agent``, any strategy of the search mode below). By
default it is ``hybrid-menu``, the structure of the harness's default agent (``--agent hybrid``)
without its model: the optimiser (TPE) proposes 7 trials in 10 and a seeded random knob-menu move
from the current best the other 3; ``--agent menu`` is the random knob-menu move alone (seed knobs
left out, files already run left out). Equal compute: each policy gets ``--runs`` training runs
(baseline repeats, confirmations and re-measures count; refusals do not train and do not count).
Repeated over ``--seeds`` seeds (same seeds for both policies).

- ``false_keep_rate``: kept changes (baseline excluded) whose true val_bpb is not lower than the
  true val_bpb of the best they replaced, over all kept changes of all seeds.
- ``true_gain``: true val_bpb of the baseline minus that of the final best (bits per byte), mean
  over seeds (the spread is printed).

Last line: ``false_keep_rate=<noise policy> true_gain=<noise policy> greedy_false_keep_rate=...
greedy_true_gain=... noise_sd=... runs=... seeds=...``.

**Search mode** (``--search``): the strategies that propose (the agents), each under the default
noise policy, on the same simulated objective, at equal training runs over the same seeds:
``random`` (uniform over the optimiser's space), ``menu`` (a random knob-menu move from the best:
what a model alone does when its choice carries no information), ``tpe`` and ``cmaes`` (the
optimiser, :mod:`harness.optimiser`), ``hybrid-menu`` (the hybrid's optimiser with 3 trials in
10 from ``menu``), and, slow because they run the real embedded model (a few seconds a proposal
on 2 cores), ``local`` (the model alone) and ``hybrid`` (the ``--agent hybrid`` of the harness:
the optimiser with 3 trials in 10 from the model). ``hybrid:tpe``, ``hybrid-menu:cmaes`` ... pick
the hybrid's sampler (default :data:`harness.agents.hybrid.SAMPLER`); ``tpe@N`` is TPE with N
start-up trials (default 10). Printed per strategy: ``true_gain`` (mean, sd, min, max over
seeds), kept changes and knobs explored. Last line: ``search: <strategy>=<true_gain> ...``.

Usage: python benchmarks/yield.py [--runs 120] [--seeds 6] [--first-seed 0] [--noise 0.0068] [--agent hybrid-menu]
       python benchmarks/yield.py --search [--strategies random,menu,tpe,cmaes,hybrid-menu] [--runs 60]
"""

from __future__ import annotations

import argparse
import ast
import atexit
import math
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.optimiser import knob_values  # noqa: E402  (ast: libcst's knob reader is ~100x slower)

#: the template's defaults are not at the optimum; true val_bpb at the optimum
BEST_POSSIBLE = 2.20


def true_val_bpb(knobs: dict) -> tuple[float, str]:
    """``(val_bpb, outcome)`` of a train.py with these knob values, without noise: a bowl in log
    space around an optimum per knob, the learning rate's optimum moving with the width, a few
    knobs that do nothing, ``nan`` for too high a learning rate, ``oom`` for too big a model."""
    lr, width, depth = knobs["LEARNING_RATE"], knobs["N_EMBD"], knobs["DEPTH"]
    if lr > 0.03:
        return math.nan, "nan"
    if width * width * depth > 1024 * 1024:
        return math.nan, "oom"
    lr_opt = 6e-3 * (128 / width) ** 0.5  # wider models want a lower learning rate
    val = BEST_POSSIBLE
    val += 0.060 * math.log2(lr / lr_opt) ** 2
    val += 0.060 * math.log2(width / 80) ** 2
    val += 0.040 * math.log2(depth / 3) ** 2
    val += 0.030 * math.log2(knobs["BATCH_SIZE"] / 5) ** 2
    val += 0.010 * math.log2(knobs["MLP_RATIO"] / 3) ** 2
    val += 0.100 * (knobs["WARMDOWN_FRAC"] - 0.5) ** 2 + 0.300 * knobs["WARMUP_FRAC"] ** 2
    val += 0.005 * math.log2(max(knobs["WEIGHT_DECAY"], 1e-4) / 0.05) ** 2
    val += 0.100 * knobs["DROPOUT"] + 0.050 * (1 - knobs["BETA2"]) + 0.020 * abs(knobs["BETA1"] - 0.85)
    val += 0.004 * abs(math.log2(max(knobs["GRAD_CLIP"], 0.05)))
    # no effect at all: N_HEAD (in this range), ROPE_BASE, FINAL_LR_FRAC, EVAL_BATCH_SIZE, LOG_EVERY, COMPILE
    return val, "ok"


class SimulatedRunner:
    """``measure(run_dir, on_tick, place) -> RunResult`` over the train.py of the run's work tree:
    the synthetic val_bpb plus N(0, sd) noise from ``rng``; writes nothing but its run dir."""

    def __init__(self, sandbox: Path, sd: float, rng: random.Random, budget_s: int = 60):
        self.sandbox, self.sd, self.rng, self.budget_s = sandbox, sd, rng, budget_s
        self.runs = 0

    def __call__(self, run_dir: Path, on_tick, place=None):
        from harness.runner import RunResult

        self.runs += 1
        run_dir.mkdir(parents=True, exist_ok=True)
        log = run_dir / "run.log"
        log.write_text("simulated\n")
        tree = self.sandbox if place is None else place.path
        val, outcome = true_val_bpb(knob_values((tree / "train.py").read_text()))
        if outcome != "ok":
            return RunResult(outcome, None, 1, 1.0, None, 0.0, log, "simulated failure", outcome)
        steps = 400
        return RunResult("ok", val + self.rng.gauss(0.0, self.sd), 0, 1.0, float(self.budget_s), 0.5, log, "",
                         steps=steps, tokens=steps * 8 * 256, tokens_per_s=steps * 8 * 256 / self.budget_s)


class RandomKnobAgent:
    """A seeded random pick of a knob move from the current best whose file has not run (seeds
    left out; once 400 tries find none, two or three moves at once): the knob menu's actions and
    value rules (:mod:`harness.knobs`), the literal replaced in the text (the menu's libcst
    rewrite gives the same file, slower)."""

    name = "random-knobs"

    def __init__(self, rng: random.Random):
        self.rng = rng

    def propose(self, context):
        from harness.agents.base import Proposal
        from harness.decisions import file_key
        from harness.knobs import Knob, _new_value, actions_for
        from harness.patch import make_unified_diff

        files, records = context.files, context.history
        ran = {r.get("file_key") for r in records if r.get("run_s") is not None}
        source = files["train.py"]
        for depth in (1, 2, 3):  # single moves first; once all ran, two or three moves at once
            for _ in range(400):
                new, whats, names = source, [], []
                for _ in range(depth):
                    knobs = [k for k in (Knob(n, v, type(v).__name__, 0, "") for n, v in knob_values(new).items()
                                         if "SEED" not in n and n not in names) if actions_for(k)]
                    k = self.rng.choice(knobs)
                    action = self.rng.choice(actions_for(k))
                    value = _new_value(k, action)[0]
                    new = re.sub(rf"^({k.name}\s*=\s*)[^#\n]*?(\s*(#.*)?)$",
                                 lambda m: f"{m.group(1)}{value!r}{m.group(2)}", new, count=1, flags=re.M)
                    whats.append(f"{k.name} {k.value!r} -> {value!r} ({action})")
                    names.append(k.name)
                if file_key({**files, "train.py": new}) not in ran:
                    return Proposal("; ".join(whats), make_unified_diff(source, new, "train.py"), "knob",
                                    {"knob": names[0], "action": "random", "reason": "random"})
        raise RuntimeError("no untried change found from the best")


def make_sandbox(root: Path, policy: str, settings: dict) -> Path:
    """A git sandbox with the template's train.py and a harness.toml for ``policy`` with
    ``settings`` (:class:`harness.decisions.PolicySettings` fields; no data: nothing trains)."""
    from harness.config import HarnessConfig, render
    from harness.decisions import PolicySettings
    from harness.sandbox import Sandbox

    root.mkdir(parents=True)
    (root / "train.py").write_text((ROOT / "harness" / "templates" / "sandbox" / "train.py").read_text())
    cfg = HarnessConfig(tag="bench", policy=PolicySettings(keep=policy, **settings))
    (root / "harness.toml").write_text(render(cfg))
    (root / ".gitignore").write_text("results.tsv\ntrajectory.jsonl\nruns/\n.harness/\n")
    Sandbox.create(root, cfg.branch, "template")
    return root


def simulate(sandbox: Path, sim: SimulatedRunner, agent, runs: int) -> list[dict]:
    """Run a session of the real experiment core on ``sandbox`` (:func:`make_sandbox`) until
    ``sim`` has made ``runs`` training runs, each proposal from ``agent``; the ledger's records."""
    from harness.agents.base import Context
    from harness.config import load
    from harness.core import ExperimentCore

    core = ExperimentCore(sandbox, load(sandbox), agent.name, measure=sim)
    with core.holding():
        while sim.runs < runs:
            if core.run_due():
                continue
            records = core.ledger.records()
            context = Context(experiment=records[-1]["experiment"] + 1, program="", files=core.files(),
                              history=records, best_val_bpb=core.ledger.best()[0], sandbox=sandbox)
            core.submit(agent.propose(context), time.time())
    return core.ledger.records()


def run_policy(policy: str, seed: int, runs: int, sd: float, workdir: Path, settings: dict,
               strategy: str = "menu") -> dict:
    """One session of ``runs`` training runs under ``policy`` with the agent of ``strategy``;
    the true figures of its record."""
    from harness.optimiser import GitFiles, changed_knobs

    sandbox = make_sandbox(workdir / f"{policy}-{strategy}-{seed}", policy, settings)
    sim = SimulatedRunner(sandbox, sd, random.Random(seed * 7919 + 1))
    records = simulate(sandbox, sim, make_strategy(strategy, seed), runs)
    truth = {}
    for r in records:
        if r.get("commit") and r["file_key"] not in truth:
            from harness.sandbox import Sandbox

            text = Sandbox(sandbox, "autoresearch/bench").read("train.py", r["commit"])
            truth[r["file_key"]] = true_val_bpb(knob_values(text))[0]
    kept = [r for r in records if r["status"] == "keep"]
    false_keeps = sum(1 for prev, r in zip(kept, kept[1:]) if not truth[r["file_key"]] < truth[prev["file_key"]])
    return {"kept": len(kept) - 1, "false_keeps": false_keeps,
            "true_gain": truth[kept[0]["file_key"]] - truth[kept[-1]["file_key"]], "runs": sim.runs,
            "rows": len(records), "knobs": len(changed_knobs(records, GitFiles(sandbox)))}


def make_strategy(strategy: str, seed: int):
    """The agent of a search strategy (see the module docstring)."""
    from harness.agents.hybrid import HybridAgent
    from harness.agents.optimiser_agent import OptimiserAgent

    from harness.agents.hybrid import SAMPLER

    kind, _, sampler = strategy.partition(":")
    sampler = sampler or SAMPLER
    if strategy == "menu":
        return RandomKnobAgent(random.Random(seed))
    if strategy in ("random", "tpe", "cmaes"):
        return OptimiserAgent(strategy, seed=seed)
    if strategy.startswith("tpe@"):  # TPE with another number of random start-up trials
        return OptimiserAgent("tpe", seed=seed, startup=int(strategy[4:]))
    if kind == "hybrid-menu":
        return HybridAgent(OptimiserAgent(sampler, seed=seed), RandomKnobAgent(random.Random(seed)), name=strategy)
    if kind in ("local", "hybrid"):
        from harness.agents.local import LocalAgent

        model = LocalAgent.load(seed=seed)
        return model if kind == "local" else HybridAgent(OptimiserAgent(sampler, seed=seed), model, name=strategy)
    raise SystemExit(f"unknown strategy {strategy!r}")


def search(args, settings: dict) -> None:
    """``--search``: every strategy under the noise policy, same seeds, equal runs."""
    strategies = args.strategies.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="search-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    results: dict[str, list[dict]] = {s: [] for s in strategies}
    t0 = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for strategy in strategies:
            res = run_policy("noise", seed, args.runs, args.noise, workdir, settings, strategy)
            results[strategy].append(res)
            print(f"seed {seed} {strategy:11s}: true_gain {res['true_gain']:.4f}, kept {res['kept']:2d} "
                  f"(false {res['false_keeps']}), knobs explored {res['knobs']:2d}, {res['runs']} runs", flush=True)
    line = []
    for strategy, rows in results.items():
        gains = [r["true_gain"] for r in rows]
        sd = statistics.stdev(gains) if len(gains) > 1 else 0.0
        print(f"{strategy:11s}: true_gain mean {statistics.mean(gains):.4f} sd {sd:.4f} (min {min(gains):.4f}, "
              f"max {max(gains):.4f}); kept {sum(r['kept'] for r in rows)}, false keeps "
              f"{sum(r['false_keeps'] for r in rows)}; knobs explored (median) {statistics.median(r['knobs'] for r in rows)}")
        line.append(f"{strategy}={statistics.mean(gains):.4f}")
    print(f"{time.perf_counter() - t0:.0f} s; {args.runs} runs a session; noise sd {args.noise}; seeds {seed_range(args)}")
    print("search: " + " ".join(line))


def seed_range(args) -> str:
    """``0-15`` for ``--first-seed 0 --seeds 16``."""
    return f"{args.first_seed}-{args.first_seed + args.seeds - 1}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=120, help="training runs per session (equal compute)")
    ap.add_argument("--seeds", type=int, default=6, help="how many seeds")
    ap.add_argument("--first-seed", type=int, default=0, help="the first seed (held-out seeds: --first-seed 16)")
    ap.add_argument("--noise", type=float, default=0.0068, help="sd of val_bpb of an unchanged file")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a [policy] setting for the noise policy instead of its default, e.g. confirm_runs=1")
    ap.add_argument("--policies", default="greedy,noise", help="which policies to run (tuning runs one)")
    ap.add_argument("--agent", default="hybrid-menu",
                    help="the proposing strategy for both policies (see --strategies); menu: random knob moves")
    ap.add_argument("--search", action="store_true", help="compare the proposing strategies instead of the policies")
    ap.add_argument("--strategies", default="random,menu,tpe,cmaes,hybrid-menu",
                    help="--search: which strategies (also local, hybrid: the real embedded model, slow)")
    args = ap.parse_args()
    from harness.decisions import PolicySettings

    defaults = PolicySettings()
    settings = {}
    for item in args.set:
        name, value = item.split("=", 1)
        kind = type(getattr(defaults, name))
        settings[name] = value.lower() in ("true", "1", "yes") if kind is bool else kind(value)
    if args.search:
        search(args, settings)
        return
    workdir = Path(tempfile.mkdtemp(prefix="yield-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    results: dict[str, list[dict]] = {"greedy": [], "noise": []}
    t0 = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for policy in args.policies.split(","):  # side by side, same seed
            res = run_policy(policy, seed, args.runs, args.noise, workdir,
                             settings if policy == "noise" else {"baseline_runs": settings.get("baseline_runs", 3)},
                             args.agent)
            results[policy].append(res)
            print(f"seed {seed} {policy:6s}: kept {res['kept']:2d}, false keeps {res['false_keeps']:2d}, "
                  f"true_gain {res['true_gain']:.4f}, {res['rows']} rows for {res['runs']} runs", flush=True)
    summary = {}
    for policy, rows in results.items():
        if not rows:
            summary[policy] = (float("nan"), float("nan"), 0.0, 0)
            continue
        kept = sum(r["kept"] for r in rows)
        gains = [r["true_gain"] for r in rows]
        summary[policy] = (sum(r["false_keeps"] for r in rows) / kept if kept else 0.0, statistics.mean(gains),
                           statistics.stdev(gains) if len(gains) > 1 else 0.0, kept)
        print(f"{policy:6s}: false_keep_rate {summary[policy][0]:.3f} ({kept} kept), true_gain mean "
              f"{summary[policy][1]:.4f} sd {summary[policy][2]:.4f} (min {min(gains):.4f}, max {max(gains):.4f})")
    print(f"{time.perf_counter() - t0:.0f} s for {2 * args.seeds} sessions of {args.runs} runs; agent {args.agent}; "
          f"noise sd {args.noise}; seeds {seed_range(args)}; noise policy {PolicySettings(**settings)}")
    n, g = summary["noise"], summary["greedy"]
    print(f"false_keep_rate={n[0]:.3f} true_gain={n[1]:.4f} greedy_false_keep_rate={g[0]:.3f} "
          f"greedy_true_gain={g[1]:.4f} noise_sd={args.noise} runs={args.runs} seeds={seed_range(args)} agent={args.agent}")


if __name__ == "__main__":
    main()
