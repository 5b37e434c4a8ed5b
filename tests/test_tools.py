"""The agent-facing tools: what can be read, the ledger as text, propose_edit in every format with
its refusals, notes, and the prompt's flat history."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.agents.prompt import RECENT, history_summary
from harness.config import HarnessConfig
from harness.edits import edit_from_text
from harness.patch import apply_unified_diff, make_unified_diff
from tools import Toolbox

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = (ROOT / "harness" / "templates" / "sandbox" / "train.py").read_text()
CFG = HarnessConfig(tag="t")
LR_BLOCK = ("<<<<<<< SEARCH\nLEARNING_RATE = 3e-3  # peak AdamW learning rate\n=======\n"
            "LEARNING_RATE = 2e-3  # peak AdamW learning rate\n>>>>>>> REPLACE\n")


def box(tmp_path: Path, history=()) -> Toolbox:
    (tmp_path / "prepare.py").write_text("TIME_BUDGET = 60\n")
    (tmp_path / "program.md").write_text("# program\n")
    (tmp_path / "secret.txt").write_text("do not read")
    return Toolbox(tmp_path, CFG, {"train.py": TEMPLATE}, list(history), experiment=5)


def test_read_file_serves_the_four_files_and_refuses_everything_else(tmp_path):
    b = box(tmp_path)
    assert b.call("read_file", {"path": "./train.py"}).text == TEMPLATE
    assert b.call("read_file", {"path": "prepare.py"}).text == "TIME_BUDGET = 60\n"
    assert "empty" in b.call("read_file", {"path": "notes.md"}).text
    for bad in ("secret.txt", "../etc/passwd", "/etc/passwd", "runs/1/run.log", "harness.toml"):
        res = b.call("read_file", {"path": bad})
        assert res.is_error and "only program.md, train.py, prepare.py, notes.md can be read" in res.text
    assert b.call("read_file", {}).is_error  # missing argument: an error for the model, not an exception


def test_propose_edit_accepts_each_format_as_a_unified_diff(tmp_path):
    new = TEMPLATE.replace("DEPTH = 4", "DEPTH = 3")
    for args, fmt in (({"diff": make_unified_diff(TEMPLATE, new)}, "udiff"),
                      ({"search_replace": LR_BLOCK}, "search_replace"),
                      ({"whole_file": f"```python\n{new}```"}, "whole")):
        b = box(tmp_path)
        res = b.call("propose_edit", {"description": "one change", **args})
        assert not res.is_error and res.text.startswith("accepted"), res.text
        assert b.proposal.format == fmt
        assert apply_unified_diff(b.proposal.diff, {"train.py": TEMPLATE}, ["train.py"])["train.py"] != TEMPLATE


def test_propose_edit_refusals_carry_every_reason_and_are_counted(tmp_path):
    b = box(tmp_path)
    res = b.call("propose_edit", {"description": "", "diff": "x", "whole_file": "y"})
    assert res.is_error and "description is empty" in res.text and "exactly one of" in res.text
    broken = TEMPLATE.replace("DEPTH = 4", "DEPTH = = 4")
    res = b.call("propose_edit", {"description": "typo", "diff": make_unified_diff(TEMPLATE, broken)})
    assert res.is_error and "refused (syntax_error)" in res.text and "[syntax]" in res.text and "hint:" in res.text
    res = b.call("propose_edit", {"description": "two matches", "search_replace":
                                  "<<<<<<< SEARCH\n        super().__init__()\n=======\n        pass\n>>>>>>> REPLACE"})
    assert res.is_error and "matches 3 places" in res.text
    res = b.call("propose_edit", {"description": "wrong file", "search_replace": LR_BLOCK, "path": "prepare.py"})
    assert res.is_error and "prepare.py is not editable" in res.text
    assert b.refusals == 4 and b.proposal is None


def test_write_notes_appends_under_the_experiment_heading(tmp_path):
    b = box(tmp_path)
    assert not b.call("write_notes", {"text": "GELU was worse"}).is_error
    b.call("write_notes", {"text": "try a wider MLP"})
    text = (tmp_path / "notes.md").read_text()
    assert text.count("## before experiment 5") == 2 and text.index("GELU") < text.index("wider")
    assert "GELU was worse" in b.call("read_file", {"path": "notes.md"}).text
    assert b.call("write_notes", {"text": "x" * 5000}).is_error


def test_list_and_show_experiments_read_the_ledger_and_the_run_folder(tmp_path):
    history = [{"experiment": 1, "outcome": "improved", "status": "keep", "val_bpb": 2.3, "description": "baseline"},
               {"experiment": 2, "outcome": "crash", "status": "crash", "val_bpb": None, "description": "boom",
                "detail": "exited with code 1", "proposal_format": "udiff"}]
    run = tmp_path / "runs" / "2"
    run.mkdir(parents=True)
    (run / "run.log").write_text("step 1\nTraceback (most recent call last):\nRuntimeError: boom\n")
    (run / "proposal.diff").write_text("--- a/train.py\n+++ b/train.py\n")
    b = box(tmp_path, history)
    listing = b.call("list_experiments", {"last_n": 5}).text
    assert "best val_bpb 2.300000 (experiment 1, mean of 1 run)" in listing and "#2 crash - boom" in listing
    shown = b.call("show_experiment", {"n": 2}).text
    assert "RuntimeError: boom" in shown and "--- a/train.py" in shown and "exited with code 1" in shown
    assert b.call("show_experiment", {"n": 9}).is_error


def test_history_summary_stays_bounded_as_experiments_accumulate():
    def hist(n):
        return [{"experiment": i, "outcome": "improved" if i % 7 == 0 else "not_improved",
                 "status": "keep" if i % 7 == 0 else "discard", "val_bpb": 2.0 + 1 / i,
                 "description": f"experiment {i}: change something about the model, described at length"} for i in range(1, n)]
    sizes = {n: len(history_summary(hist(n))) for n in (10, 100, 1000)}
    assert sizes[1000] < sizes[10] + 1400 and abs(sizes[1000] - sizes[100]) < 200
    text = history_summary(hist(100))
    assert text.count("\n#") >= RECENT and "more not shown" in text and "#98 " in text


@pytest.mark.parametrize("reply,kind", [
    ("Lower the LR.\n```diff\n--- a/train.py\n+++ b/train.py\n@@ -1,1 +1,1 @@\n-a\n+b\n```", "diff"),
    ("Lower the LR.\n" + LR_BLOCK, "search_replace"),
    ("I would lower the learning rate.", None),
])
def test_edits_are_found_in_plain_text_replies(reply, kind):
    found = edit_from_text(reply)
    assert (found[0] if found else None) == kind
