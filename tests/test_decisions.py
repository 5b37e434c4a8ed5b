"""The decision rules of harness.decisions: file keys, the pooled noise, the noise-aware and greedy
verdicts, the schedule of baseline repeats and re-measures, drift."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from harness.decisions import (Noise, PolicySettings, best_estimate, conditional_power, drift, due_repeat, file_key,
                               judge, noise, ran_before, seeded)
from harness.knobs import find_knobs

TEMPLATE = (Path(__file__).resolve().parent.parent / "harness" / "templates" / "sandbox" / "train.py").read_text()
NOISE = PolicySettings()
GREEDY = PolicySettings(keep="greedy")


def row(n, outcome, val, key="base", status=None, **fields):
    status = status or {"improved": "keep", "crash": "crash"}.get(outcome, "discard")
    return {"experiment": n, "outcome": outcome, "val_bpb": val, "file_key": key, "status": status,
            "commit": f"{n:040d}", "run_s": 1.0, **fields}


def baseline_rows(*vals):
    first = row(1, "improved", vals[0], proposal_format="baseline")
    return [first] + [row(i, "remeasure", v, repeat_of=1) for i, v in enumerate(vals[1:], 2)]


def test_file_key_ignores_comments_and_formatting_but_not_code():
    a = {"train.py": "X = 1  # one\ny = X * 2\n"}
    assert file_key(a) == file_key({"train.py": "# header\nX = 1\ny = X*2\n"})
    assert file_key(a) != file_key({"train.py": "X = 2\ny = X * 2\n"})
    assert file_key({"train.py": "def (:"}) != file_key({"train.py": "def  (:"}), "unparsable files compare as text"


def test_noise_is_the_pooled_sd_within_files():
    recs = baseline_rows(2.0, 2.2) + [row(3, "not_improved", 1.0, key="b"), row(4, "confirmation", 1.4, key="b")]
    nz = noise(recs)
    # two groups, each (x - mean)^2 sums 0.02 and 0.08 over 1 df each: sqrt(0.10 / 2)
    assert nz.sd == pytest.approx(math.sqrt(0.05)) and nz.df == 2 and nz.groups == 2 and nz.runs == 4
    assert noise(recs[:1]).sd is None and "not measured" in noise(recs[:1]).text()


def test_the_best_is_the_last_kept_file_and_its_figure_the_mean_of_its_runs_since_a_drift():
    recs = baseline_rows(2.30, 2.32, 2.34)
    est = best_estimate(recs)
    assert est.val_bpb == pytest.approx(2.32) and est.runs == 3 and est.experiment == 1
    recs.append(row(4, "remeasure", 2.50, repeat_of=1, drift={"from": 2.32, "to": 2.5, "z": 9}))
    assert best_estimate(recs).val_bpb == pytest.approx(2.50) and best_estimate(recs).runs == 1
    recs.append(row(5, "improved", 2.40, key="c", decision={}))
    assert best_estimate(recs).experiment == 5


def test_a_clearly_worse_run_is_discarded_at_once_and_a_promising_one_confirmed():
    best = {"val_bpb": 2.30, "runs": 3}
    worse = judge(NOISE, [2.31], None, best, 0.01)
    assert worse.action == "discard" and "below" in worse.evidence["reason"]
    promising = judge(NOISE, [2.28], None, best, 0.01)
    assert promising.action == "confirm" and promising.evidence["z"] == pytest.approx(1.73, abs=0.01)


def test_keep_needs_the_confirmed_mean_to_clear_the_one_sided_one_percent_level():
    best = {"val_bpb": 2.30, "runs": 3}
    # t = (2.30 - mean) / (0.01 * sqrt(1/3 + 1/3)) = delta / 0.00816; up to 4 looks at 0.01 / 4 each
    kept = judge(NOISE, [2.27, 2.28, 2.28], None, best, 0.01)
    assert kept.action == "keep" and kept.evidence["z"] >= 2.807 and kept.evidence["runs"] == 3
    assert "p < 0.01" in kept.evidence["reason"] and kept.evidence["mean_val_bpb"] == pytest.approx(2.276667, abs=1e-6)
    # the same runs against a noise measured from 2 degrees of freedom only: Student's t_0.9975 = 14.09
    # (and three more runs, 5 df at the last look, t_0.9975 = 4.77, would not get there at this mean: futile)
    few = judge(NOISE, [2.27, 2.28, 2.28], None, best, 0.01, df=2)
    assert few.action == "discard" and few.evidence["threshold"] == pytest.approx(14.089, abs=1e-3)
    assert "futile" in few.evidence["reason"]
    close = judge(NOISE, [2.27, 2.28, 2.285], None, best, 0.01)  # t 2.65: not yet, but likely by 6 runs
    assert close.action == "confirm" and 1.0 <= close.evidence["z"] < 2.807 and close.evidence["power"] > 0.5
    lucky = judge(NOISE, [2.27, 2.30, 2.30], None, best, 0.01)  # one lucky run, then the seeds say: less
    assert lucky.action == "discard" and 1.0 <= lucky.evidence["z"] < 2.807 and "futile" in lucky.evidence["reason"]
    faded = judge(NOISE, [2.27, 2.30, 2.30, 2.30], None, best, 0.01)
    assert faded.action == "discard" and "no longer promising" in faded.evidence["reason"]
    small = judge(NOISE, [2.285] * 6, None, best, 0.01)  # 1.5 sd better, never significant: stop at the most runs
    assert small.action == "discard" and "after the most runs (6)" in small.evidence["reason"]
    assert judge(NOISE, [2.20], "crash", best, 0.01).action == "discard"


def test_confirmation_stops_when_the_chance_to_be_kept_is_small():
    """Conditional power under the current trend (Lan, Simon & Halperin 1982), by hand: the last
    look (6 runs) keeps a mean <= 2.30 - 2.807 * 0.01 * sqrt(1/3 + 1/6) = 2.28015; five runs to come
    move a mean of 2.285 by N(0, 0.01 * sqrt(5) / 6)."""
    from scipy.stats import norm

    best = {"val_bpb": 2.30, "runs": 3}
    expected = norm.cdf((2.30 - 2.807034 * 0.01 * (1 / 3 + 1 / 6) ** 0.5 - 2.285) / (0.01 * 5 ** 0.5 / 6))
    assert conditional_power(NOISE, [2.285], 2.30, 3, 0.01, 0) == pytest.approx(expected, abs=1e-4)
    assert 0.05 < expected < 0.2
    small = judge(NOISE, [2.285], None, best, 0.01)  # 1.3 noise units: promising, but hardly ever kept
    assert small.action == "discard" and "not worth confirming" in small.evidence["reason"]
    assert judge(replace(NOISE, futility_power=0.0), [2.285], None, best, 0.01).action == "confirm"
    assert conditional_power(NOISE, [2.28] * 6, 2.30, 3, 0.01, 0) == 0.0  # no run left


def test_a_candidate_cut_short_is_not_kept_and_greedy_keeps_any_strict_improvement():
    best = {"val_bpb": 2.30, "runs": 3}
    assert judge(NOISE, [2.20, 2.20], None, best, 0.01).action == "confirm"  # strong, but one confirmation left
    assert judge(GREEDY, [2.2999], None, best, 0.01).action == "keep"
    assert judge(GREEDY, [2.30], None, best, 0.01).action == "discard"
    assert judge(NOISE, [2.5], None, None, None).action == "keep"  # nothing kept yet: the baseline


def test_baseline_repeats_come_first_then_re_measures_every_k_experiments():
    recs = baseline_rows(2.30)
    assert due_repeat(recs, NOISE)[1:] == (recs[0], 1)
    recs = baseline_rows(2.30, 2.31)
    assert due_repeat(recs, NOISE)[2] == 2
    recs = baseline_rows(2.30, 2.31, 2.32)
    assert due_repeat(recs, NOISE) is None
    recs += [row(n, "not_improved", 2.4, key=f"k{n}") for n in range(4, 4 + NOISE.remeasure_every)]
    reason, of, index = due_repeat(recs, NOISE)
    assert "experiments since its last run" in reason and of["experiment"] == 1 and index == 0
    assert due_repeat(recs, GREEDY) is None


def test_a_throughput_move_on_a_repeated_file_triggers_a_re_measure():
    recs = baseline_rows(2.30, 2.31, 2.32)
    for r in recs:
        r["tokens_per_s"] = 1000.0
    recs += [row(4, "not_improved", 2.28, key="c", tokens_per_s=500.0),
             row(5, "confirmation", 2.29, key="c", tokens_per_s=520.0, repeat_of=4)]
    assert due_repeat(recs, NOISE) is None  # 520 vs 500 on the same file: +4%, within 10%
    recs[-1]["tokens_per_s"] = 400.0
    reason, _, _ = due_repeat(recs, NOISE)
    assert "throughput moved -20%" in reason
    recs.append(row(6, "remeasure", 2.31, repeat_of=1, tokens_per_s=800.0))
    assert due_repeat(recs, NOISE) is None, "a re-measure answers the move; it does not trigger another"


def test_drift_is_a_re_measure_beyond_the_noise():
    est = best_estimate(baseline_rows(2.30, 2.31, 2.32))
    nz = Noise(0.01, 30, 40, 5)
    assert drift(2.315, est, nz, NOISE) is None
    moved = drift(2.40, est, nz, NOISE)
    assert moved["from"] == pytest.approx(2.31) and moved["to"] == 2.40 and moved["z"] > 2.75


def test_duplicates_are_found_by_file_and_repeats_change_only_the_seed():
    recs = baseline_rows(2.30, 2.31) + [row(3, "patch_failed", None, key="x", run_s=None)]
    assert ran_before(recs, "base")["experiment"] == 1 and ran_before(recs, "x") is None
    text, seed = seeded(TEMPLATE, 2)
    assert seed == 42 + 2000 and {k.name: k.value for k in find_knobs(text)}["SEED"] == 2042
    assert text.replace("SEED = 2042", "SEED = 42") == TEMPLATE
    assert seeded(TEMPLATE, 0) == (TEMPLATE, None) and seeded("X = 1\n", 1) == ("X = 1\n", None)
