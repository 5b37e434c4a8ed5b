"""The pooled evidence of harness.surrogate (a Gaussian process over the knobs) and how judge()
uses it: a small real improvement along a smooth knob is seen from its neighbours' runs, a change
of a knob that does nothing is not, and a candidate with other code gets no model."""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest

from harness.decisions import PolicySettings, judge
from harness.surrogate import MIN_FILES, ModelEvidence, model_evidence

TEMPLATE = (Path(__file__).resolve().parent.parent / "harness" / "templates" / "sandbox" / "train.py").read_text()
SD = 0.004


def variant(**knobs) -> str:
    text = TEMPLATE
    for name, value in knobs.items():
        text, n = re.subn(rf"^{name} = [^#\n]*", f"{name} = {value!r} ", text, count=1, flags=re.M)
        assert n == 1, name
    return text


def truth(lr: float) -> float:
    """A bowl in log2(learning rate) with its optimum at 6e-3 (the template has 3e-3); ROPE_BASE does nothing."""
    return 2.30 + 0.02 * math.log2(lr / 6e-3) ** 2


def ledger(files: list[tuple[str, list[float]]]):
    """Rows and a ``read`` for files given as (train.py, val_bpb of each run); the first is the baseline, kept."""
    texts, records, n = {}, [], 0
    for i, (text, vals) in enumerate(files):
        commit = f"{i:040x}"
        texts[commit] = text
        for j, v in enumerate(vals):
            n += 1
            records.append({"experiment": n, "outcome": "improved" if n == 1 else "remeasure" if i == 0 else
                            "not_improved" if j == 0 else "confirmation", "val_bpb": v, "file_key": f"f{i}",
                            "commit": commit, "run_s": 60.0, "status": "keep" if n == 1 else "discard"})
    return records, texts.__getitem__


def sweep(rng: random.Random, rope: bool = False):
    """The baseline (3 runs) and learning rates around it (and ROPE_BASE values, when ``rope``), one run each."""
    files = [(TEMPLATE, [truth(3e-3) + rng.gauss(0, SD) for _ in range(3)])]
    for lr in (1e-3, 1.5e-3, 2e-3, 2.5e-3, 4e-3, 5e-3, 8e-3, 1.2e-2):
        files.append((variant(LEARNING_RATE=lr), [truth(lr) + rng.gauss(0, SD)]))
    if rope:
        for base in (2000.0, 5000.0, 20000.0, 50000.0, 100000.0):
            files.append((variant(ROPE_BASE=base), [truth(3e-3) + rng.gauss(0, SD)]))
    return files


def test_a_small_improvement_along_a_smooth_knob_is_seen_from_the_neighbouring_runs():
    rng = random.Random(3)
    records, read = ledger(sweep(rng))
    cand_lr = 3.5e-3  # truly better than 3e-3 by 0.0079 (2.0 noise sd)
    delta = truth(3e-3) - truth(cand_lr)
    vals = [truth(cand_lr) + 0.3 * SD]  # one run, a little unlucky
    ev = model_evidence(records, read, f"{0:040x}", variant(LEARNING_RATE=cand_lr), vals, SD)
    assert ev is not None and ev.files == 10 and ev.runs == 12
    assert 1.9 < delta / SD < 2.1 and ev.delta == pytest.approx(delta, abs=2 * ev.sd) and ev.z > 4, ev
    # the t-test alone on one run: not kept yet (confirmation runs would follow); the model keeps it now
    best = {"val_bpb": sum(v for v in (r["val_bpb"] for r in records[:3])) / 3, "runs": 3}
    assert judge(PolicySettings(), vals, None, best, SD, 10).action in ("confirm", "discard")
    kept = judge(PolicySettings(), vals, None, best, SD, 10, ev)
    assert kept.action == "keep" and "the model of 10 knob variants" in kept.evidence["reason"]
    assert kept.evidence["model_z"] == pytest.approx(ev.z, abs=0.01)


def test_a_change_of_a_knob_that_does_nothing_gets_no_keep_from_the_model():
    for seed in range(3):
        rng = random.Random(seed)
        records, read = ledger(sweep(rng, rope=True))
        vals = [truth(3e-3) - 2.0 * SD]  # a lucky run 2 sd below the baseline's true value
        ev = model_evidence(records, read, f"{0:040x}", variant(ROPE_BASE=30000.0), vals, SD)
        assert ev is not None and ev.z < 2.326, (seed, ev)
        best = {"val_bpb": sum(r["val_bpb"] for r in records[:3]) / 3, "runs": 3}
        assert judge(PolicySettings(), vals, None, best, SD, 12, ev).action != "keep"


def test_no_model_for_other_code_or_too_few_files_and_none_asked_by_greedy():
    rng = random.Random(1)
    records, read = ledger(sweep(rng))
    other_code = variant(LEARNING_RATE=3.5e-3) + "\nEXTRA = 1\n"
    assert model_evidence(records, read, f"{0:040x}", other_code, [2.3], SD) is None
    few = [r for r in records if r["file_key"] in {f"f{i}" for i in range(MIN_FILES - 2)}]
    assert model_evidence(few, read, f"{0:040x}", variant(LEARNING_RATE=3.5e-3), [2.3], SD) is None
    strong = ModelEvidence(delta=0.05, sd=0.001, files=20, runs=30)
    best = {"val_bpb": 2.30, "runs": 3}
    assert judge(PolicySettings(keep="greedy"), [2.31], None, best, SD, 10, strong).action == "discard"
    # the model never keeps a candidate whose own runs are not below the best, nor one whose run failed
    assert judge(PolicySettings(), [2.30], None, best, SD, 10, strong).action == "discard"
    assert judge(PolicySettings(), [2.29, 2.29], "crash", best, SD, 10, strong).action == "discard"
    weak = replace(strong, delta=0.002)
    verdict = judge(PolicySettings(), [2.299], None, best, SD, 10, weak)
    # not kept at z 2.0 < 2.33; promising on the model (z >= 1), so confirmation runs follow
    assert verdict.evidence["model_z"] == 2.0 and verdict.action == "confirm"


def test_the_model_gives_confirmation_runs_and_its_later_looks_are_split_like_the_t_tests():
    best, ev = {"val_bpb": 2.30, "runs": 3}, ModelEvidence(delta=0.004, sd=0.004, files=20, runs=30)
    # one run 0.25 sd better: the t-test alone would not confirm it; the model (z 1.0) asks for more runs
    assert judge(PolicySettings(surrogate=False), [2.299], None, best, SD, 10).action == "discard"
    verdict = judge(PolicySettings(), [2.299], None, best, SD, 10, ev)
    assert verdict.action == "confirm" and "promising on the pooled evidence" in verdict.evidence["reason"]
    assert judge(PolicySettings(), [2.299], None, best, SD, 10, replace(ev, delta=0.0039)).action == "discard"
    # after the first run the model's threshold is z_(1 - 0.01/4) = 2.81, as the t-test splits its level
    assert judge(PolicySettings(), [2.299, 2.2995], None, best, SD, 10, replace(ev, delta=0.0108)).action == "confirm"
    kept = judge(PolicySettings(), [2.299, 2.2995], None, best, SD, 10, replace(ev, delta=0.0116))
    assert kept.action == "keep" and ">= 2.81 (P(no better) < 0.0025)" in kept.evidence["reason"]
    assert judge(PolicySettings(), [2.299], None, best, SD, 10, replace(ev, delta=0.0096)).action == "keep"
    # no run left: discarded whatever the model says below its threshold
    six = [2.299] * 6
    assert judge(PolicySettings(), six, None, best, SD, 10, replace(ev, delta=0.0108)).action == "discard"


def test_the_setting_is_in_harness_toml_and_must_be_a_boolean(tmp_path):
    from harness.config import ConfigError, load
    from tests.conftest import set_policy
    from tests.test_rails_config import sandbox

    box = sandbox(tmp_path)
    toml = (box / "harness.toml").read_text()
    assert "\nsurrogate = true " in toml and load(box).policy.surrogate is True
    (box / "harness.toml").write_text(set_policy(toml, {"surrogate": "false"}))
    assert load(box).policy.surrogate is False
    (box / "harness.toml").write_text(set_policy(toml, {"surrogate": "1"}))
    with pytest.raises(ConfigError, match="surrogate must be bool"):
        load(box)
    (box / "harness.toml").write_text(set_policy(toml, {"alpha": "true"}))
    with pytest.raises(ConfigError, match="alpha must be float"):
        load(box)


def _session(tmp_path, settings: dict, runs: int = 30, seed: int = 3):
    """A session of the real core with benchmarks/yield.py's simulated runner and random knob moves."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("yield_bench", Path(__file__).resolve().parent.parent /
                                                  "benchmarks" / "yield.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    box = bench.make_sandbox(tmp_path / "s", "noise", settings)
    sim = bench.SimulatedRunner(box, 0.0068, random.Random(seed))
    return box, bench.simulate(box, sim, bench.make_strategy("menu", seed), runs)


def test_a_session_keeps_on_the_model_after_one_run_and_the_trailers_say_so(tmp_path):
    import subprocess

    box, records = _session(tmp_path / "on", {})
    by_model = [r for r in records if r["status"] == "keep" and "the model of" in r["decision"].get("reason", "")]
    assert by_model, [r.get("decision") for r in records if r["status"] == "keep"]
    rec = by_model[0]
    assert rec["decision"]["runs"] == 1 and rec["decision"]["model_z"] >= 2.326
    message = subprocess.run(["git", "log", "-1", "--format=%B", rec["commit"]], cwd=box, capture_output=True,
                             text=True, check=True).stdout
    assert f"Model-Z: {rec['decision']['model_z']}" in message and "the model of" in message
    # the same session with the t-test alone keeps nothing on one run
    _, alone = _session(tmp_path / "off", {"surrogate": False})
    assert all(r["decision"].get("runs", 3) >= 3 for r in alone if r["status"] == "keep" and r.get("decision")
               and "first figure" not in r["decision"]["reason"])
    assert not any("model_z" in (r.get("decision") or {}) for r in alone)


def test_runs_before_a_drift_are_left_out():
    rng = random.Random(2)
    records, read = ledger(sweep(rng))
    n = len(records)
    records.append({"experiment": n + 1, "outcome": "remeasure", "val_bpb": 2.5, "file_key": "f0",
                    "commit": f"{0:040x}", "run_s": 60.0, "status": "discard", "repeat_of": 1,
                    "drift": {"from": 2.33, "to": 2.5, "z": 9.0}})
    # after the drift only the best's fresh run is left: too few files for a model
    assert model_evidence(records, read, f"{0:040x}", variant(LEARNING_RATE=3.5e-3), [2.3], SD) is None
    assert model_evidence(records[:n], read, f"{0:040x}", variant(LEARNING_RATE=3.5e-3), [2.3], SD) is not None
