"""Pipelining (harness/pipeline.py): the agent is asked for experiment n+1 while n trains; a
proposal made against a best that has changed since is applied to the new best or recorded stale.

Real harness, git and runner; the run is ``fake_train.py`` (tests/quick_sandbox.py), which sleeps
and then scores train.py's text by its hash, so which edit "improves" is known in advance."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import datetime
from pathlib import Path

import git
import pytest

from harness.agents.base import AgentExhausted, Context, Proposal
from harness.config import load
from harness.core import Events
from harness.decisions import file_key
from harness.loop import Limits, Session
from harness.patch import make_unified_diff
from harness.pipeline import pipelining

from .conftest import set_knobs
from .quick_sandbox import quick_sandbox  # noqa: F401  (fixture)

GREEDY = {"keep": '"greedy"', "baseline_runs": "1"}


def fake_score(text: str) -> float:
    """What fake_train.py scores a train.py text at."""
    return 1.0 + (int(hashlib.sha256(text.encode()).hexdigest(), 16) % 100000) / 1e6


class Recorder:
    """An agent that hands out fixed proposals after ``latency_s``, noting what it was shown and
    whether an experiment was in flight (the in-flight marker) when it answered."""

    name = "recorder"

    def __init__(self, sandbox: Path, proposals: list[Proposal], latency_s: float = 0.5):
        self.sandbox, self.proposals, self.latency_s = sandbox, list(proposals), latency_s
        self.asked: list[dict] = []

    def propose(self, context: Context) -> Proposal:
        asked = {"at": time.time(), "thread": threading.current_thread().name,
                 "pending": [p["description"] for p in context.pending], "files": dict(context.files)}
        time.sleep(self.latency_s)  # thinking; then look whether an experiment is in flight
        marker = self.sandbox / ".harness" / "inflight.json"
        asked["running"] = json.loads(marker.read_text())["description"] if marker.exists() else None
        self.asked.append(asked)
        if not self.proposals:
            raise AgentExhausted("no more proposals")
        return self.proposals.pop(0)


def knob_edit(source: str, name: str, values, better_than: float | None = None) -> tuple[str, str]:
    """The first ``NAME = value`` rewrite of ``source`` whose fake score beats ``better_than``
    (any that does not crash when None): (new text, value)."""
    for value in values:
        new = set_knobs(source, **{name: value})
        if better_than is None or fake_score(new) < better_than:
            return new, value
    raise AssertionError(f"no value of {name} scores below {better_than}")


def session(sandbox: Path, agent, pipelined: bool = True) -> Session:
    cfg = load(sandbox)
    return Session(sandbox, cfg, agent, Events(), Limits(max_experiments=10), pipelined=pipelined)


def records(sandbox: Path) -> list[dict]:
    return [json.loads(line) for line in (sandbox / "trajectory.jsonl").read_text().splitlines()]


def started(rec: dict) -> float:
    return datetime.fromisoformat(rec["started_at"]).timestamp()


@pytest.fixture
def improving(quick_sandbox):  # noqa: F811
    """A sandbox (each run takes 1.5 s), its baseline train.py and an edit of WEIGHT_DECAY that
    beats the baseline's score."""
    sandbox = quick_sandbox(mode="slow", sleep_s=1.5, policy=GREEDY)
    base = git.Repo(sandbox).git.show("HEAD:train.py", strip_newline_in_stdout=False)
    better, value = knob_edit(base, "WEIGHT_DECAY", [f"0.{i:02d}" for i in range(1, 100)], fake_score(base))
    return sandbox, base, better, value


def test_next_proposal_is_asked_while_the_run_trains_and_applied_to_the_new_best(improving):
    sandbox, base, better, value = improving
    second = set_knobs(base, DROPOUT="0.05")  # another line: still applies once WEIGHT_DECAY is kept
    agent = Recorder(sandbox, [Proposal(f"WEIGHT_DECAY -> {value}", make_unified_diff(base, better)),
                               Proposal("DROPOUT -> 0.05", make_unified_diff(base, second))])

    session(sandbox, agent).run()

    rows = records(sandbox)
    assert [r["outcome"] for r in rows] == ["improved", "improved", rows[2]["outcome"]]
    first, dropout = rows[1], rows[2]
    # the DROPOUT proposal was asked in the background while the WEIGHT_DECAY experiment trained,
    # and the agent was told what was running
    ahead = agent.asked[1]
    assert ahead["thread"] == "proposal-ahead" and ahead["running"] == first["description"]
    assert ahead["pending"] == [first["description"]] and ahead["files"]["train.py"] == base
    assert started(dropout) < started(first) + first["wall_s"]
    # ... and ran on the new best: its commit's parent is the kept WEIGHT_DECAY commit, with both edits
    assert dropout["outcome"] in ("improved", "not_improved") and dropout["parent"] == first["commit"]
    text = git.Repo(sandbox).git.show(f"{dropout['commit']}:train.py", strip_newline_in_stdout=False)
    assert text == set_knobs(better, DROPOUT="0.05")


def test_a_proposal_that_no_longer_fits_the_new_best_is_recorded_stale(improving):
    sandbox, base, better, value = improving
    clash = set_knobs(base, WEIGHT_DECAY="0.5")  # the same line the kept experiment changed
    agent = Recorder(sandbox, [Proposal(f"WEIGHT_DECAY -> {value}", make_unified_diff(base, better)),
                               Proposal("WEIGHT_DECAY -> 0.5", make_unified_diff(base, clash))])

    session(sandbox, agent).run()

    rows = records(sandbox)
    assert [r["outcome"] for r in rows] == ["improved", "improved", "stale"]
    stale = rows[2]
    assert stale["commit"] is None and stale["run_s"] is None
    assert (sandbox / "runs" / "3" / "proposal.diff").read_text() == make_unified_diff(base, clash)
    assert "the best has changed since" in stale["detail"] and "patch_failed" in stale["detail"]
    assert git.Repo(sandbox).head.commit.hexsha == rows[1]["commit"]  # nothing of the stale proposal landed
    tsv = (sandbox / "results.tsv").read_text().splitlines()
    assert tsv[-1].split("\t")[3] == "discard" and "[stale:" in tsv[-1]
    # after the stale row the agent was asked again, in the foreground, against the new best
    assert agent.asked[-1]["thread"] != "proposal-ahead" and agent.asked[-1]["files"]["train.py"] == better


def test_without_pipelining_the_agent_is_asked_only_between_runs(improving):
    sandbox, base, better, value = improving
    agent = Recorder(sandbox, [Proposal(f"WEIGHT_DECAY -> {value}", make_unified_diff(base, better))])

    session(sandbox, agent, pipelined=False).run()

    assert [a["running"] for a in agent.asked] == [None, None]
    assert all(a["pending"] == [] for a in agent.asked)


def test_pending_experiments_are_not_proposed_again():
    files = {"train.py": "A = 1\n"}
    running = {"train.py": "A = 2\n"}
    ctx = Context(experiment=3, program="", files=files, history=[{"file_key": "x", "run_s": 1.0}],
                  best_val_bpb=None, pending=({"description": "A -> 2", "file_key": file_key(running)},))
    assert ctx.taken() == {"x", file_key(files), file_key(running)}


@pytest.mark.parametrize("setting,agent,gpu,expected", [
    ("on", "hybrid", False, True), ("off", "anthropic:claude", True, False),
    ("auto", "anthropic:claude-sonnet-4-5", False, True), ("auto", "openai:glm-4.6", False, True),
    ("auto", "hybrid", False, False), ("auto", "local", False, False), ("auto", "hybrid", True, True),
])
def test_when_to_pipeline(setting, agent, gpu, expected):
    assert pipelining(setting, agent, gpu) is expected


def test_a_proposal_next_to_the_kept_edit_is_merged_onto_the_new_best(improving):
    sandbox, base, better, value = improving
    # WARMUP_FRAC is within 3 lines of WEIGHT_DECAY: the diff's context no longer matches, the merge does
    neighbour = set_knobs(base, WARMUP_FRAC="0.07")
    agent = Recorder(sandbox, [Proposal(f"WEIGHT_DECAY -> {value}", make_unified_diff(base, better)),
                               Proposal("WARMUP_FRAC -> 0.07", make_unified_diff(base, neighbour))])

    session(sandbox, agent).run()

    rows = records(sandbox)
    assert [r["outcome"] for r in rows][:2] == ["improved", "improved"] and rows[2]["outcome"] != "stale"
    text = git.Repo(sandbox).git.show(f"{rows[2]['commit']}:train.py", strip_newline_in_stdout=False)
    assert text == set_knobs(better, WARMUP_FRAC="0.07") and rows[2]["parent"] == rows[1]["commit"]
