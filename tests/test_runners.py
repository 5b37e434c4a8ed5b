"""Several runners on one machine (harness/runners.py): ``harness start --workers N`` / ``--gpus``
run experiments at once, each in its own git work tree, decided and recorded in one place.

Real harness, git and runner processes; the runs are ``fake_train.py`` (tests/quick_sandbox.py),
which sleeps and scores train.py's text by its hash, except the last test, which trains the real
template on 2 workers."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import git
import pytest

from harness.agents.base import AgentExhausted, Proposal
from harness.config import load
from harness.core import Events
from harness.ledger import ExperimentRecord, Ledger
from harness.loop import Limits, Session
from harness.patch import make_unified_diff
from harness.reconcile import verify
from harness.runners import places_for
from harness.sandbox import Sandbox

from .conftest import set_knobs
from .quick_sandbox import quick_sandbox, start  # noqa: F401  (fixture)
from .test_fault_injection import POINTS, proposals
from .test_pipeline import GREEDY, fake_score, knob_edit


def rows(sandbox: Path) -> list[dict]:
    return Ledger(sandbox).records()


def span(rec: dict) -> tuple[float, float]:
    t0 = datetime.fromisoformat(rec["started_at"]).timestamp()
    return t0, t0 + rec["wall_s"]


def assert_consistent(sandbox: Path) -> list[dict]:
    """git, the ledger, ``harness log`` and the report agree; nothing of the runners is left."""
    sb = Sandbox(sandbox, "autoresearch/test")
    assert verify(sb, Ledger(sandbox)) == []
    assert git.Repo(sandbox).git.status("--porcelain") == ""
    assert sb.running_refs() == {} and not list((sandbox / ".harness" / "worktrees").glob("*"))
    assert "worktrees" not in git.Repo(sandbox).git.worktree("list", "--porcelain").replace(str(sandbox), "")
    records = rows(sandbox)
    log = subprocess.run([sys.executable, "-m", "harness", "log", str(sandbox)], capture_output=True, text=True,
                         env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"}, check=True).stdout
    for r in records:
        assert re.search(rf"^│\s*{r['experiment']} │", log, re.M), f"harness log lacks experiment {r['experiment']}"
    report = subprocess.run([sys.executable, "-m", "harness", "report", str(sandbox)], capture_output=True,
                            text=True, check=True)
    page = (sandbox / "report.html").read_text()
    kept = [r for r in records if r["status"] == "keep"]
    on_branch = set(git.Repo(sandbox).git.rev_list("HEAD").split())
    for r in kept:
        assert f'id="kept-{r["experiment"]}"' in page and r["commit"][:10] in page, report.stdout
        assert r["commit"] in on_branch
    return records


def test_places_split_the_cores_and_pin_one_gpu_each(tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    cpu = places_for(tmp_path, workers=2)
    assert [p.cpus for p in cpu] == [(0, 1, 2), (3, 4)] and [p.index for p in cpu] == [0, 1]
    assert cpu[0].env["OMP_NUM_THREADS"] == "3" and cpu[1].env["CUDA_VISIBLE_DEVICES"] == ""
    gpus = places_for(tmp_path, gpus="0,2")
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in gpus] == ["0", "2"] and [p.label for p in gpus] == ["gpu 0", "gpu 2"]
    assert places_for(tmp_path, gpus="1")[0].index is None  # one GPU: a plain session on it
    assert places_for(tmp_path)[0].index is None and places_for(tmp_path, workers=1)[0].index is None
    for bad in (dict(workers=6), dict(workers=0), dict(gpus="0,0"), dict(gpus="0,"), dict(gpus="0", workers=2)):
        with pytest.raises(ValueError):
            places_for(tmp_path, **bad)


def test_two_workers_run_experiments_at_once_and_the_record_agrees(quick_sandbox, tmp_path):
    sandbox = quick_sandbox(mode="slow", sleep_s=2.0, policy={"remeasure_every": "5"})  # the noise policy
    agent = f"scripted:{proposals(tmp_path / 'p.jsonl', random.Random(11))}"
    proc = start(sandbox, "--max-experiments", 14, "--agent", agent, "--workers", 2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err + out
    assert "2 runners" in out
    records = assert_consistent(sandbox)
    assert len(records) >= 14
    ran = [r for r in records if r.get("run_s") and r["proposal_format"] not in ("baseline", "repeat")]
    overlaps = sum(1 for a, b in zip(ran, ran[1:]) if span(b)[0] < span(a)[1] and span(a)[0] < span(b)[1])
    assert overlaps >= 3, "the runners did not train at the same time"
    # the baseline's repeats and re-measures of the best ran alone (started_at has whole seconds)
    for r in records:
        if r["proposal_format"] == "repeat":
            assert not any(span(o)[0] < span(r)[1] - 1.0 and span(r)[0] + 1.0 < span(o)[1]
                           for o in ran if o.get("run_s")), f"re-measure {r['experiment']} overlapped an experiment"


class Scripted:
    """Hands out fixed proposals, then says it has nothing more."""

    name = "scripted-test"

    def __init__(self, proposals: list[Proposal]):
        self.proposals = list(proposals)

    def propose(self, context) -> Proposal:
        if not self.proposals:
            raise AgentExhausted("no more proposals")
        return self.proposals.pop(0)


def test_a_winner_whose_best_moved_while_it_ran_runs_again_on_the_new_best(quick_sandbox):
    sandbox = quick_sandbox(mode="slow", sleep_s=1.5, policy=GREEDY)
    base = git.Repo(sandbox).git.show("HEAD:train.py", strip_newline_in_stdout=False)
    first, v1 = knob_edit(base, "WEIGHT_DECAY", [f"0.{i:02d}" for i in range(1, 100)], fake_score(base))
    # a second edit on another line that beats the baseline too, and still does on top of the first
    for i in range(1, 100):
        second = set_knobs(base, DROPOUT=f"0.{i:02d}")
        both = set_knobs(first, DROPOUT=f"0.{i:02d}")
        if fake_score(second) < fake_score(base) and fake_score(second) < fake_score(first) \
                and fake_score(both) < fake_score(first):
            break
    else:
        pytest.skip("no such pair of edits under this hash")
    agent = Scripted([Proposal(f"WEIGHT_DECAY -> {v1}", make_unified_diff(base, first)),
                      Proposal(f"DROPOUT -> 0.{i:02d}", make_unified_diff(base, second))])
    places = places_for(sandbox, workers=2)
    Session(sandbox, load(sandbox), agent, Events(), Limits(max_experiments=10), places=places).run()

    records = assert_consistent(sandbox)
    by = {r["description"]: r for r in records}
    kept, moved = by[f"WEIGHT_DECAY -> {v1}"], by[f"DROPOUT -> 0.{i:02d}"]
    assert kept["outcome"] == "improved" and span(moved)[0] < span(kept)[1]  # they ran at the same time
    assert moved["outcome"] == "not_improved" and moved["decision"]["moved_to"] == kept["experiment"]
    assert "became the best while this one ran" in moved["decision"]["reason"]
    again = next(r for r in records if r["description"].startswith(f"DROPOUT -> 0.{i:02d} (again"))
    assert again["parent"] == kept["commit"] and again["outcome"] == "improved"
    text = git.Repo(sandbox).git.show(f"{again['commit']}:train.py", strip_newline_in_stdout=False)
    assert text == both and git.Repo(sandbox).head.commit.hexsha == again["commit"]


@pytest.mark.parametrize("where", POINTS)
def test_a_kill_with_two_runners_at_each_point_is_repaired_by_the_next_start(quick_sandbox, tmp_path, where):
    sandbox = quick_sandbox(mode="score", sleep_s=0.6, name=f"w-{where}")
    agent = f"scripted:{proposals(tmp_path / 'p.jsonl', random.Random(5))}"
    proc = start(sandbox, "--max-experiments", 14, "--agent", agent, "--workers", 2,
                 env={"HARNESS_KILL_AT": f"{where}:3"})
    proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL, f"{where} was never reached"
    before = rows(sandbox)
    killed = {json.loads(m.read_text())["experiment"] for m in (sandbox / ".harness" / "inflight").glob("*.json")}
    res = start(sandbox, "--max-experiments", 3, "--agent", agent, "--workers", 2)
    out, err = res.communicate(timeout=180)
    assert res.returncode == 0, err + out
    records = assert_consistent(sandbox)
    assert records[:len(before)] == before, "a recorded experiment changed or vanished"
    if where in ("after_commit", "after_run"):
        assert killed, "the kill left no experiment in flight"
        assert {r["experiment"] for r in records if r["outcome"] == "interrupted" and "killed" in r["detail"]} >= killed


def test_random_kills_with_two_runners_lose_nothing(quick_sandbox, tmp_path):
    seed = random.randrange(1_000_000)
    print(f"seed={seed}")
    rng = random.Random(seed)
    sandbox = quick_sandbox(mode="score", sleep_s=0.5, policy={"remeasure_every": "6"})
    seen: list[dict] = []
    for i in range(8):
        agent = f"scripted:{proposals(tmp_path / f'p{i}.jsonl', rng)}"
        proc = start(sandbox, "--max-experiments", 10, "--agent", agent, "--workers", 2)
        time.sleep(rng.uniform(1.0, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        res = start(sandbox, "--max-experiments", 0, "--agent", agent, "--workers", 2)
        out, err = res.communicate(timeout=120)
        assert res.returncode == 0, err + out
        records = assert_consistent(sandbox)
        assert records[:len(seen)] == seen, "a recorded experiment changed or vanished"
        seen = records
    assert len(seen) >= 12


def test_a_number_taken_but_never_written_is_recorded_so_the_numbers_stay_contiguous(quick_sandbox, tmp_path):
    """A runner killed between numbering its experiment and its first write, while the other
    runner recorded a later number, leaves a gap; the next start records it ``interrupted``."""
    sandbox = quick_sandbox(mode="score", sleep_s=0.2, name="gap")
    agent = f"scripted:{proposals(tmp_path / 'p.jsonl', random.Random(3))}"
    res = start(sandbox, "--max-experiments", 1, "--agent", agent)
    assert res.communicate(timeout=120) and res.returncode == 0
    ledger = Ledger(sandbox)
    n = len(ledger.records()) + 1
    ledger.append(ExperimentRecord(experiment=n + 1, outcome="patch_failed", description="a later refusal",
                                   agent="scripted", started_at="2026-12-03T00:00:00+00:00", wall_s=0.1))
    (sandbox / "runs" / str(n)).mkdir(parents=True, exist_ok=True)
    (sandbox / "runs" / str(n) / "proposal.diff").write_text("--- a/train.py\n")
    assert any("not contiguous" in p for p in verify(Sandbox(sandbox, "autoresearch/test"), ledger))
    res = start(sandbox, "--max-experiments", 0, "--agent", agent)
    out, err = res.communicate(timeout=120)
    assert res.returncode == 0, err + out
    assert f"experiment {n} was stopped after it was numbered" in out + err
    gap = next(r for r in assert_consistent(sandbox) if r["experiment"] == n)
    assert gap["outcome"] == "interrupted" and gap["commit"] is None
    assert f"runs/{n}/proposal.diff" in gap["detail"]
