"""``harness init --adopt``: autoresearch-shaped checkouts (our own fixtures in tests/adopt_fixtures,
shaped like karpathy/autoresearch and its macOS fork) become sandboxes whose runs are scored by the
trusted start-up (harness/evalguard.py, capture mode), under any HOME."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.adopt import IMPORTED_NAME, ORIGINAL_RESULTS, adopt, imported_rows, read_results
from harness.config import load
from harness.init import InitError
from harness.ledger import Ledger
from harness.patch import make_unified_diff
from harness.reconcile import verify
from harness.runner import run_experiment
from harness.sandbox import Sandbox

from .test_datacache import harness

FIXTURES = Path(__file__).parent / "adopt_fixtures"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def checkout(tmp_path: Path, shape: str, home: Path) -> tuple[Path, dict]:
    """A git checkout of the fixture ``shape`` after a short autoresearch night on branch
    autoresearch/mar5 (a kept commit, a discarded one reset away) with its results.tsv, and its
    data prepared under ``home``. Returns (path, {name: commit})."""
    src = tmp_path / f"{shape}-checkout"
    shutil.copytree(FIXTURES / shape, src)
    git(src, "init", "-q", "-b", "master")
    git(src, "-c", "user.name=u", "-c", "user.email=u@x", "add", "-A")
    git(src, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "initial")
    git(src, "checkout", "-qb", "autoresearch/mar5")
    commits = {"baseline": git(src, "rev-parse", "--short", "HEAD")}
    train = (src / "train.py").read_text()
    for name, (knob, value) in {"kept": ("LEARNING_RATE", "2e-3"), "discarded": ("WEIGHT_DECAY", "0.0")}.items():
        text = re.sub(rf"^{knob} = [^#\n]*", f"{knob} = {value} ", (src / "train.py").read_text(), count=1, flags=re.M)
        (src / "train.py").write_text(text)
        git(src, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qam", f"{knob} {value}")
        commits[name] = git(src, "rev-parse", "--short", "HEAD")
    git(src, "reset", "-q", "--hard", "HEAD~1")  # autoresearch's discard
    assert (src / "train.py").read_text() != train
    (src / "results.tsv").write_text(
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
        f"{commits['baseline']}\t4.100000\t0.0\tkeep\tbaseline\n"
        f"{commits['kept']}\t4.000000\t0.0\tkeep\tLR 2e-3\n"
        f"{commits['discarded']}\t4.200000\t0.0\tdiscard\tno weight decay\n"
        "0000000\t0.000000\t0.0\tcrash\tgone from git\n")
    prep = subprocess.run([sys.executable, "prepare.py"], cwd=src, capture_output=True, text=True,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert prep.returncode == 0, prep.stderr
    return src, commits


@pytest.fixture
def homes(tmp_path):
    a, b = tmp_path / "home-a", tmp_path / "home-b"
    a.mkdir(), b.mkdir()
    return a, b


@pytest.mark.parametrize("shape", ["karpathy", "macos"])
def test_adopted_checkout_runs_under_another_home_and_refuses_what_it_tried(tmp_path, homes, shape):
    home_a, home_b = homes
    src, commits = checkout(tmp_path, shape, home_a)
    dest = tmp_path / "sandbox"
    made = harness("init", "--adopt", src, dest, home=home_a)
    assert made.returncode == 0, made.stderr
    assert "imported 4 rows of results.tsv (3 with their train.py still in git)" in made.stdout
    cfg = load(dest)
    assert (cfg.tag, cfg.evaluation, cfg.time_budget_s) == ("mar5", "capture", 2)
    assert (cfg.data_home, cfg.data_cache) == (str(home_a.resolve()), str(home_a.resolve() / ".cache" / "autoresearch"))
    assert (dest / ORIGINAL_RESULTS).read_text() == (src / "results.tsv").read_text()
    rows = imported_rows(dest)
    assert [r["status"] for r in rows] == ["keep", "keep", "discard", "crash"]
    assert all("file_key" in r for r in rows[:3]) and "file_key" not in rows[3]
    checked = harness("rails", "check", dest / "train.py", home=home_a)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # the agent proposes the file the discarded commit held, then a new one
    base = (dest / "train.py").read_text()
    tried = re.sub(r"^WEIGHT_DECAY = [^#\n]*", "WEIGHT_DECAY = 0.0 ", base, count=1, flags=re.M)
    new = re.sub(r"^WARMUP_RATIO = [^#\n]*", "WARMUP_RATIO = 0.2 ", base, count=1, flags=re.M)
    script = tmp_path / "script.jsonl"
    script.write_text("".join(json.dumps({"description": d, "diff": make_unified_diff(base, t, "train.py")}) + "\n"
                              for d, t in (("no weight decay", tried), ("longer warmup", new))))
    ran = harness("start", dest, "--agent", f"scripted:{script}", "--max-experiments", 5, home=home_b, timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    records = Ledger(dest).records()
    assert [r["outcome"] for r in records][:4] == ["improved", "remeasure", "remeasure", "duplicate"]
    assert f"commit {commits['discarded']} in the adopted checkout's results.tsv" in records[3]["detail"]
    scored = [r for r in records if r.get("val_bpb") is not None]
    assert len(scored) >= 4 and all(1.0 < r["val_bpb"] < 9.0 for r in scored)
    metrics = json.loads((dest / "runs" / "1" / "metrics.json").read_text())
    assert metrics["guard"]["mode"] == "capture" and metrics["causal"] is True and metrics["tampered"] == []
    assert metrics["loss_matches_logits"] is True
    log = (dest / "runs" / "1" / "run.log").read_text()
    printed = re.search(r"^val_bpb:\s+([0-9.]+)", log, re.M)
    assert printed and abs(float(printed.group(1)) - records[0]["val_bpb"]) < 1e-6
    steps = re.search(r"^num_steps:\s+(\d+)", log, re.M)  # the guard counts the optimizer steps train.py took
    assert steps and records[0]["steps"] == int(steps.group(1)) >= 1
    assert verify(Sandbox(dest, cfg.branch), Ledger(dest)) == []
    assert not (home_b / ".cache" / "autoresearch").exists()  # the runs found the data under home-a


def _tiny_run(dest: Path, tmp_path: Path, name: str):
    cfg = load(dest)
    return run_experiment(cfg.command, dest, tmp_path / name, cfg.time_budget_s, cfg.hard_limit_s,
                          cfg.over_budget_tolerance_s, evaluation=cfg.evaluation)


TTT = """
class _Learner(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.opt = torch.optim.SGD(inner.parameters(), lr=1e-2)

    def forward(self, x, y=None, reduction="mean"):
        if y is not None:
            with torch.enable_grad():
                self.inner(x, y).backward()
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
        return self.inner(x, y, reduction=reduction) if y is not None else self.inner(x)


model = _Learner(model)
"""

HALVED_LOSS = """
_forward = model.forward
model.forward = lambda idx, targets=None, reduction="mean": (
    _forward(idx, targets, reduction) * (0.5 if reduction == "none" else 1.0) if targets is not None else _forward(idx))
"""


@pytest.mark.parametrize("cheat, expected", [(TTT, "optimizer steps during evaluate_bpb"),
                                             (HALVED_LOSS, "the model's loss is not the cross-entropy of its logits")])
def test_capture_mode_catches_test_time_training_and_a_forged_loss(tmp_path, homes, monkeypatch, cheat, expected):
    home_a, _ = homes
    src, _ = checkout(tmp_path, "karpathy", home_a)
    monkeypatch.setenv("HOME", str(home_a))
    adopt(src)
    text = (src / "train.py").read_text()
    anchor = "model.eval()\n"
    assert text.count(anchor) == 1
    (src / "train.py").write_text(text.replace(anchor, anchor + cheat))
    res = _tiny_run(src, tmp_path, "cheat")
    assert res.outcome == "integrity_violation" and expected in res.detail, (res.outcome, res.detail, res.log_tail)


def test_adoption_refuses_what_it_cannot_adopt(tmp_path, homes):
    home_a, _ = homes
    src, _ = checkout(tmp_path, "macos", home_a)
    (src / "train.py").write_text((src / "train.py").read_text() + "\n# local edit\n")
    with pytest.raises(InitError, match="uncommitted changes"):
        adopt(src, home=home_a)
    git(src, "checkout", "--", "train.py")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InitError, match="not empty"):
        adopt(src, tmp_path / "full", home=home_a)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text("print(1)\n")
    with pytest.raises(InitError, match="no prepare.py"):
        adopt(plain)
    done = adopt(src, home=home_a)
    assert (src / IMPORTED_NAME).exists() and done.cfg.branch == "autoresearch/mar5"
    with pytest.raises(InitError, match="already a sandbox"):
        adopt(src)


def test_read_results_takes_autoresearch_rows_and_skips_the_rest():
    text = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc\t0.99\t44.0\tkeep\tbase line\nbad row\n" \
           "def\tnan?\t1\tcrash\tOOM\ttabs\n"
    assert read_results(text) == [
        {"commit": "abc", "val_bpb": 0.99, "memory_gb": 44.0, "status": "keep", "description": "base line"},
        {"commit": "def", "val_bpb": None, "memory_gb": 1.0, "status": "crash", "description": "OOM\ttabs"}]
    assert read_results("no header\n") == []


def test_the_agent_sees_what_the_checkout_tried_and_may_not_recreate_it():
    from harness.agents.base import Context
    from harness.agents.prompt import task_message

    tried = tuple({"commit": f"c{i}", "val_bpb": 1.0 + i / 100, "status": "keep" if i == 3 else "discard",
                   "description": f"idea {i}", **({"file_key": f"k{i}"} if i < 25 else {})} for i in range(30))
    ctx = Context(experiment=4, program="p", files={"train.py": "x = 1\n"}, history=[], best_val_bpb=None,
                  tried=tried)
    text = task_message(ctx)
    assert "Tried in this checkout before the harness adopted it (30 rows" in text
    lines = text.split("Tried in this checkout")[1].splitlines()
    assert lines[1] == "- keep 1.030000 idea 3" and lines[2] == "- discard 1.290000 idea 29"
    assert "(10 more in results.autoresearch.tsv)" in text
    assert {"k0", "k24"} <= ctx.taken() and "k25" not in ctx.taken()


#: research edits an agent makes on autoresearch-shaped files: (fixture, old text, new text)
REALISTIC_EDITS = [
    ("karpathy", "F.relu(self.c_fc(x)).square()", "F.gelu(self.c_fc(x))"),
    ("macos", "F.relu(self.c_fc(x)).square()", "F.silu(self.c_fc(x)) * self.c_fc(x)"),
    ("macos", "optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=ADAM_BETAS,\n"
              "                              weight_decay=WEIGHT_DECAY)",
     "decay = [p for p in model.parameters() if p.dim() >= 2]\n"
     "no_decay = [p for p in model.parameters() if p.dim() < 2]\n"
     "optimizer = torch.optim.AdamW([{\"params\": decay, \"weight_decay\": WEIGHT_DECAY},\n"
     "                               {\"params\": no_decay, \"weight_decay\": 0.0}],\n"
     "                              lr=LEARNING_RATE, betas=ADAM_BETAS)"),
    ("macos", "model = GPT(config).to(device)\n",
     "os.environ[\"PYTORCH_ENABLE_MPS_FALLBACK\"] = \"1\"\nprint(f\"device: {device}\", flush=True)\n"
     "model = GPT(config).to(device)\n"),
    ("karpathy", "model = GPT(config).to(device)\n",
     "model = GPT(config).to(device)\nif device.type == \"cuda\":\n    model = torch.compile(model)\n"),
]


@pytest.mark.parametrize("shape, old, new", REALISTIC_EDITS)
def test_realistic_edits_of_adopted_checkouts_pass_the_rails(tmp_path, homes, monkeypatch, shape, old, new):
    from rails import RailConfig, check_source

    home_a, _ = homes
    src = tmp_path / shape
    shutil.copytree(FIXTURES / shape, src)
    monkeypatch.setenv("HOME", str(home_a))
    done = adopt(src)
    text = (src / "train.py").read_text()
    assert text.count(old) == 1, old
    violations = check_source(text, text.replace(old, new), RailConfig(**done.cfg.rail_settings()))
    assert violations == [], [v.format() for v in violations]


def test_missing_data_is_named_with_the_command_before_any_row(tmp_path, homes):
    home_a, home_b = homes
    src, _ = checkout(tmp_path, "karpathy", home_a)
    made = harness("init", "--adopt", src, home=home_a)
    assert made.returncode == 0, made.stderr
    shutil.rmtree(home_a / ".cache" / "autoresearch")
    ran = harness("start", src, "--agent", "optuna", "--max-experiments", 1, home=home_b)
    out = ran.stdout + ran.stderr
    assert ran.returncode != 0 and "python prepare.py" in out and str(home_a.resolve()) in out, out[-2000:]
    assert Ledger(src).records() == []
