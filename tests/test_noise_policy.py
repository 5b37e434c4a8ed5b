"""The noise-aware keep policy end to end: real training with changes that cannot affect it and one
real improvement, duplicates that train nothing, and the evidence an MCP agent is told."""

from __future__ import annotations

import json

import git
import pytest

from harness.agents.scripted import ScriptedAgent
from harness.config import load
from harness.core import Events
from harness.ledger import Ledger
from harness.loop import Limits, Session
from harness.patch import make_unified_diff
from harness.reconcile import verify
from harness.sandbox import Sandbox, parse_trailers

from .conftest import set_knobs
from .quick_sandbox import quick_sandbox  # noqa: F401 (fixture)


def null_change(name: str) -> dict:
    """A scripted diff that adds a constant nothing reads (train.py's line 9 is ``import math``)."""
    return {"description": f"add unused {name}",
            "diff": f"--- a/train.py\n+++ b/train.py\n@@ -9,1 +9,2 @@\n import math\n+{name} = 1\n"}


@pytest.mark.slow
def test_a_real_session_keeps_the_real_improvement_and_no_null_change_and_trains_no_duplicate(make_sandbox):
    # a learning rate 100x too low: restoring it is a real improvement; unused constants are not
    sandbox = make_sandbox(time_budget_s=4, policy={}, LEARNING_RATE="3e-5")
    cfg = load(sandbox)
    assert cfg.policy.keep == "noise" and cfg.policy.baseline_runs == 3
    train = Sandbox(sandbox, cfg.branch).read("train.py")
    fixed = set_knobs(train, LEARNING_RATE="3e-3")
    entries = [null_change("UNUSED_A"), null_change("UNUSED_B"),
               {"description": "learning rate 3e-5 -> 3e-3", "diff": make_unified_diff(train, fixed, "train.py")},
               null_change("UNUSED_C"), null_change("UNUSED_D"),
               {"description": "UNUSED_C again, reformatted",
                "diff": "--- a/train.py\n+++ b/train.py\n@@ -9,1 +9,2 @@\n import math\n+UNUSED_C=(1)  # same\n"}]
    Session(sandbox, cfg, ScriptedAgent(entries), Events(), Limits(max_experiments=40)).run()

    records = Ledger(sandbox).records()
    print("\n".join(f"{r['experiment']} {r['outcome']} {r.get('val_bpb')} steps={r.get('steps')} {r['description']} "
                    f"{(r.get('decision') or {}).get('reason', '')}" for r in records))
    by_desc = {r["description"]: r for r in records if not r.get("repeat_of")}
    assert [r["outcome"] for r in records[:3]] == ["improved", "remeasure", "remeasure"]
    assert len({r["seed"] for r in records[:3]}) == 3, "baseline repeats run with other seeds"
    real = by_desc["learning rate 3e-5 -> 3e-3"]
    assert real["outcome"] == "improved" and real["decision"]["runs"] == 3
    # the best's re-measures (a throughput drift can call one) are repeats of it too
    confirmations = [r for r in records if r.get("repeat_of") == real["experiment"] and r["outcome"] != "remeasure"]
    assert [r["outcome"] for r in confirmations] == ["confirmation"] * 2 and all(r["seed"] for r in confirmations)
    for name in ("UNUSED_A", "UNUSED_B", "UNUSED_C", "UNUSED_D"):
        assert by_desc[f"add unused {name}"]["status"] == "discard", by_desc[f"add unused {name}"]
    dup = next(r for r in records if r["outcome"] == "duplicate")
    assert dup["commit"] is None and dup["run_s"] is None and "UNUSED_C" not in dup["detail"]
    assert f"experiment {by_desc['add unused UNUSED_C']['experiment']} ran" in dup["detail"]
    assert not (sandbox / "runs" / str(dup["experiment"]) / "run.log").exists(), "a duplicate trains nothing"
    assert all(r.get("steps") and r.get("tokens_per_s") for r in records if r.get("run_s"))
    assert verify(Sandbox(sandbox, cfg.branch), Ledger(sandbox)) == []
    head = git.Repo(sandbox).head.commit
    trailers = parse_trailers(head.message)
    assert trailers["Experiment"] == str(real["experiment"]) and trailers["Runs"] == "3"
    assert "p < 0.01" in trailers["Decision"] and float(trailers["Noise-Sd"]) > 0


def test_the_mcp_answer_gives_the_evidence_and_a_duplicate_is_refused_without_training(quick_sandbox):
    from harness.mcp_service import ResearchService

    sandbox = quick_sandbox(sleep_s=0.05, policy={"z_promising": "-100", "futility_power": "0"})  # every run is confirmed
    service = ResearchService(sandbox)
    first = service.call("run_experiment", null_change("UNUSED_A"))
    text = first.text
    assert "first, the baseline ran as experiment 1" in text and "re-measure of #1: baseline repeat 2 of 2" in text
    assert "confirmation 1 of #4" in text and "decision: " in text and "noise sd" in text
    again = service.call("run_experiment", {"description": "the same file", "diff": (
        "--- a/train.py\n+++ b/train.py\n@@ -9,1 +9,2 @@\n import math\n+UNUSED_A = 1  # again\n")})
    assert again.is_error and "duplicate" in again.text and "experiment 4 ran" in again.text
    records = Ledger(sandbox).records()
    assert [r["outcome"] for r in records][-1] == "duplicate" and records[-1]["run_s"] is None
    assert records[4].get("repeat_of") == 4 and records[3]["decision"]["runs"] == len(records) - 4
    assert verify(Sandbox(sandbox, "autoresearch/test"), Ledger(sandbox)) == []
    assert json.loads((sandbox / "trajectory.jsonl").read_text().splitlines()[3])["decision"]["reason"]
