"""The optimiser (harness/optimiser.py) and ``--agent optuna``: search space, trials from the
ledger, samplers ahead of random search on a known objective, and a killed harness that
continues the same search from the ledger."""

from __future__ import annotations

import json
import math
import signal
import statistics
import time
from pathlib import Path

import pytest

from harness.optimiser import Optimiser, Trial, knob_values, learnt, search_space, skeleton, trials
from tests.quick_sandbox import quick_sandbox, start  # noqa: F401  (fixture)

TEMPLATE = (Path(__file__).resolve().parent.parent / "harness" / "templates" / "sandbox" / "train.py").read_text()


def test_search_space_of_the_template():
    space = search_space(knob_values(TEMPLATE))
    assert not [n for n in space if any(w in n for w in ("SEED", "LOG", "EVAL", "COMPILE"))]
    assert len(space) == 15
    lr = space["LEARNING_RATE"]
    assert (lr.kind, lr.log) == ("float", True) and math.isclose(lr.low, 3e-4) and math.isclose(lr.high, 3e-2)
    width = space["N_EMBD"]
    assert (width.kind, width.low, width.high, width.log, width.step8) == ("int", 32, 512, True, True)
    assert width.clean(100) == 96 and width.clean(1000) == 512
    assert (space["WARMUP_FRAC"].low, space["WARMUP_FRAC"].high) == (0.0, 0.5)
    assert (space["BETA2"].low, space["BETA2"].high) == (0.8, 0.9999)
    assert space["LEARNING_RATE"].clean(0.0012345) == 0.00123
    # a value a past experiment used outside the bounds widens them
    wide = search_space(knob_values(TEMPLATE), ({"DEPTH": 40, "LEARNING_RATE": 1e-5},))
    assert wide["DEPTH"].high == 40 and wide["LEARNING_RATE"].low == 1e-5


def test_skeleton_ignores_knob_values_only():
    from tests.conftest import set_knobs

    assert skeleton(TEMPLATE) == skeleton(set_knobs(TEMPLATE, DEPTH="2", LEARNING_RATE="1e-2"))
    assert skeleton(TEMPLATE) != skeleton(TEMPLATE.replace("F.relu(", "F.gelu(", 1) if "F.relu(" in TEMPLATE
                                          else TEMPLATE + "\nx = 1\n")


def bowl(params: dict, space) -> float:
    """A known objective: distance of the unit-cube point from (0.3, 0.7, 0.3, ...)."""
    return sum((space[n].to_unit(v) - (0.3 if i % 2 == 0 else 0.7)) ** 2 for i, (n, v) in enumerate(sorted(params.items())))


def search(sampler: str, seed: int, n: int) -> float:
    space = search_space(knob_values(TEMPLATE))
    opt = Optimiser(sampler, seed)
    past = [Trial(knob_values(TEMPLATE), bowl({k: knob_values(TEMPLATE)[k] for k in space}, space), 1, "ok", 1)]
    for i in range(n):
        point = opt.suggest(space, past)
        past.append(Trial(point.params, bowl(point.params, space), i + 2, "ok", 1))
    return min(t.value for t in past)


def test_samplers_beat_random_search_on_a_known_objective():
    seeds = range(4)
    best = {s: statistics.fmean(search(s, seed, 60) for seed in seeds) for s in ("random", "tpe", "cmaes")}
    print(best)
    assert best["tpe"] < best["random"] and best["cmaes"] < best["random"]


def test_suggestions_are_a_function_of_the_trials():
    space = search_space(knob_values(TEMPLATE))
    past = [Trial(knob_values(TEMPLATE), 2.5, 1, "ok", 3)]
    for sampler in ("tpe", "cmaes", "random"):
        a, b = Optimiser(sampler, 3).suggest(space, past), Optimiser(sampler, 3).suggest(space, past)
        assert a.params == b.params and a.trials == 1
        assert Optimiser(sampler, 3).suggest(space, past, attempt=1).params != a.params
        assert set(a.params) == set(space)
        for name, value in a.params.items():
            assert space[name].low <= value <= space[name].high


def test_tpe_starts_with_one_knob_neighbours_of_the_best_trial():
    """Before TPE models (fewer trials than ``startup``), each suggestion is the best trial with at
    most one knob changed; from ``startup`` trials on, TPE proper moves several."""
    space = search_space(knob_values(TEMPLATE))
    base = {n: knob_values(TEMPLATE)[n] for n in space}
    better = {**base, "LEARNING_RATE": 0.006}
    past = [Trial(base, 2.5, 1, "ok", 3), Trial(better, 2.4, 2, "ok", 1),
            Trial({**base, "DEPTH": 16}, 9.9, 3, "crash", 1, penalised=True)]
    moved = []
    for seed in range(12):
        point = Optimiser("tpe", seed, startup=10).suggest(space, past)
        changed = {n for n in space if point.params[n] != better[n]}
        assert len(changed) <= 1, changed
        moved += changed
    assert len(set(moved)) >= 4  # the free knob is drawn at random
    later = past + [Trial(dict(better, N_EMBD=64 + 8 * i), 2.4 + i / 100, 4 + i, "ok", 1) for i in range(8)]
    point = Optimiser("tpe", 0, startup=10).suggest(space, later)
    assert sum(point.params[n] != better[n] for n in space) > 1


def test_trials_from_records_group_runs_and_penalise_failures():
    files = {"c1": TEMPLATE, "c2": TEMPLATE.replace("DEPTH = 4", "DEPTH = 2"),
             "c3": TEMPLATE.replace("DEPTH = 4", "DEPTH = 16"), "c4": TEMPLATE + "\ndef extra():\n    pass\n"}
    records = [
        {"experiment": 1, "commit": "c1", "file_key": "k1", "run_s": 60, "outcome": "improved", "val_bpb": 2.5},
        {"experiment": 2, "commit": "c1", "file_key": "k1", "run_s": 60, "outcome": "confirmation", "val_bpb": 2.4,
         "repeat_of": 1},
        {"experiment": 3, "commit": "c2", "file_key": "k2", "run_s": 60, "outcome": "not_improved", "val_bpb": 2.6},
        {"experiment": 4, "commit": "c3", "file_key": "k3", "run_s": 5, "outcome": "oom", "val_bpb": None},
        {"experiment": 5, "commit": "c4", "file_key": "k4", "run_s": 60, "outcome": "not_improved", "val_bpb": 2.0},
        {"experiment": 6, "commit": None, "file_key": "k5", "run_s": None, "outcome": "rail_blocked"},
    ]
    past, baseline = trials(records, files.__getitem__, TEMPLATE)
    assert baseline["DEPTH"] == 4
    assert [(t.experiment, round(t.value, 6), t.runs, t.penalised) for t in past] == [
        (1, 2.45, 2, False), (3, 2.6, 1, False), (4, round(2.6 + 0.6, 6), 0, True)]  # c4's other code: not a trial
    info = learnt(search_space(baseline), past)
    assert info["best"]["experiment"] == 1 and info["trials"] == 3 and info["penalised"] == 1


def rows(sandbox: Path) -> list[dict]:
    path = sandbox / "trajectory.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_optuna_agent_continues_the_search_after_a_kill(quick_sandbox):
    sandbox = quick_sandbox(sleep_s=0.3)
    proc = start(sandbox, "--agent", "optuna", "--max-experiments", "30")
    deadline = time.time() + 120
    while len([r for r in rows(sandbox) if r.get("proposal_format") == "trial"]) < 4 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [r for r in rows(sandbox) if r.get("proposal_format") == "trial"]
    assert len(before) >= 4
    proc = start(sandbox, "--agent", "optuna", "--max-experiments", "4")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    after = [r for r in rows(sandbox) if r.get("proposal_format") == "trial"][len(before):]
    assert after, out
    scored_before = len({r["file_key"] for r in rows(sandbox)[:len(rows(sandbox)) - len(after)]
                         if r.get("run_s") is not None})
    first = int(after[0]["description"].split("trial ")[1].split(":")[0])
    # the trial count of the restarted search includes every file the killed session ran
    assert first >= scored_before, (first, scored_before)
    assert all(r["agent"] == "optuna" for r in after)
    assert len({r["file_key"] for r in rows(sandbox) if r.get("run_s") is not None and not r.get("repeat_of")}) == \
        len([r for r in rows(sandbox) if r.get("run_s") is not None and not r.get("repeat_of")])
    # coverage: the start-up trials move one knob each, chosen at random among the 15 searchable
    import subprocess
    import sys

    status = subprocess.run([sys.executable, "-m", "harness", "status", str(sandbox)], capture_output=True, text=True)
    line = next(x for x in status.stdout.splitlines() if x.startswith("knobs explored:"))
    assert int(line.split()[2]) >= 4 and line.split()[4] == "15", line


def test_hybrid_gives_the_model_3_trials_in_10_and_falls_back_to_the_optimiser(tmp_path):
    from harness.agents.base import Context
    from harness.agents.hybrid import HybridAgent
    from harness.agents.local import LocalAgent
    from harness.agents.optimiser_agent import OptimiserAgent
    from tests.test_agent_local import Replay

    def ctx(ran: int) -> Context:
        history = [{"experiment": i + 1, "outcome": "not_improved", "val_bpb": 2.5, "run_s": 1.0, "file_key": f"k{i}",
                    "description": "x"} for i in range(ran)]
        return Context(experiment=ran + 1, program="", files={"train.py": TEMPLATE}, history=history,
                       best_val_bpb=2.5, sandbox=tmp_path)

    answer = json.dumps({"knob": "DEPTH", "action": "+1", "reason": "deeper"})
    hybrid = HybridAgent(OptimiserAgent("tpe"), LocalAgent(Replay(answer)))
    assert hybrid.propose(ctx(2)).format == "knob"  # slot 2 of 10: the model
    assert hybrid.propose(ctx(3)).format == "trial"  # the optimiser
    junk = HybridAgent(OptimiserAgent("tpe"), LocalAgent(Replay("no", "json", "here")))
    fallback = junk.propose(ctx(5))
    assert fallback.format == "trial" and "the model failed" in fallback.knob["reason"]
    assert fallback.usage.llm_calls == 3  # the model's failed calls are still accounted


def test_yield_benchmark_search_mode_prints_true_gain_per_strategy():
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "yield.py"), "--search", "--runs", "12", "--seeds",
                          "1", "--strategies", "random,tpe,hybrid-menu"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("search: random=") and " tpe=" in last and " hybrid-menu=" in last
    assert all(math.isfinite(float(x.split("=")[1])) for x in last.split()[1:])


def test_after_a_kept_code_change_the_search_starts_from_the_new_code(tmp_path):
    """A kept change that removed a knob: the old files are not trials, the knob is not searched."""
    from harness.agents.base import Context
    from harness.agents.optimiser_agent import OptimiserAgent
    from tests.conftest import set_knobs

    new_code = TEMPLATE.replace("DROPOUT = 0.0", "DROPOUT_OFF = True")
    assert "DROPOUT =" not in new_code
    files = {"c1": TEMPLATE, "c2": new_code, "c3": set_knobs(new_code, DEPTH="2")}
    history = [{"experiment": i + 1, "commit": c, "file_key": c, "run_s": 10, "outcome": o, "val_bpb": v}
               for i, (c, o, v) in enumerate([("c1", "improved", 2.5), ("c2", "improved", 2.4), ("c3", "not_improved", 2.45)])]
    past, baseline = trials(history, files.__getitem__, new_code)
    assert [t.experiment for t in past] == [2, 3] and "DROPOUT" not in baseline
    agent = OptimiserAgent("tpe")
    agent._read = type("Read", (), {"sandbox": tmp_path, "__call__": lambda self, c: files[c]})()
    proposal = agent.propose(Context(experiment=4, program="", files={"train.py": new_code}, history=history,
                                     best_val_bpb=2.4, sandbox=tmp_path))
    moved = {part.split()[0] for part in proposal.description.split(": ", 1)[1].split(", ")}
    assert proposal.format == "trial" and moved <= set(knob_values(new_code)) and "DROPOUT" not in moved
