"""harness.patch: agents' unified diffs are applied leniently but never by guessing."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from harness.patch import PatchError, apply_unified_diff, make_unified_diff

TRAIN = """\
import torch

from prepare import MAX_SEQ_LEN, TIME_BUDGET

# ----------------------------------------------------------------------------
# Hyperparameters

DEPTH = 4  # transformer blocks
N_EMBD = 128  # model width
LEARNING_RATE = 3e-3  # peak AdamW learning rate
WEIGHT_DECAY = 0.1  # AdamW weight decay
WARMUP_FRAC = 0.05  # share of the budget spent warming up


def lr_at(progress):
    \"\"\"Learning-rate multiplier at progress in [0, 1].\"\"\"
    if progress < WARMUP_FRAC:
        return progress / WARMUP_FRAC
    return 1.0


def main():
    model = torch.nn.Linear(N_EMBD, N_EMBD)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    for step in range(10):
        opt.step()
    print("---")
    print("val_bpb: 1.0")


if __name__ == "__main__":
    main()
"""

LR_DIFF = """\
--- a/train.py
+++ b/train.py
@@ -8,5 +8,5 @@
 DEPTH = 4  # transformer blocks
 N_EMBD = 128  # model width
-LEARNING_RATE = 3e-3  # peak AdamW learning rate
+LEARNING_RATE = 2e-3  # peak AdamW learning rate
 WEIGHT_DECAY = 0.1  # AdamW weight decay
 WARMUP_FRAC = 0.05  # share of the budget spent warming up
"""
LR_NEW = TRAIN.replace("LEARNING_RATE = 3e-3", "LEARNING_RATE = 2e-3")


def apply(diff: str, text: str = TRAIN) -> str:
    return apply_unified_diff(diff, {"train.py": text, "prepare.py": "X = 1\n"}, ["train.py"])["train.py"]


def refusal(diff: str, text: str = TRAIN) -> PatchError:
    with pytest.raises(PatchError) as info:
        apply_unified_diff(diff, {"train.py": text, "prepare.py": "X = 1\n"}, ["train.py"])
    return info.value


def test_good_diff_applies_and_returns_only_the_touched_file():
    result = apply_unified_diff(LR_DIFF, {"train.py": TRAIN, "prepare.py": "X = 1\n"}, ["train.py"])
    assert result == {"train.py": LR_NEW}


def test_diff_wrapped_in_a_markdown_fence_with_prose_applies():
    assert apply(f"Here is my change:\n\n```diff\n{LR_DIFF}```\nThis lowers the LR.") == LR_NEW


def test_diff_without_prefixes_or_final_newline_applies():
    bare = LR_DIFF.replace("a/train.py", "train.py").replace("b/train.py", "train.py").rstrip("\n")
    assert apply(bare) == LR_NEW


def test_hunk_with_shifted_line_numbers_applies():
    assert apply(LR_DIFF.replace("@@ -8,5 +8,5 @@", "@@ -12,5 +12,5 @@")) == LR_NEW
    assert apply(LR_DIFF.replace("@@ -8,5 +8,5 @@", "@@ -200,5 +200,5 @@")) == LR_NEW


def test_hunk_with_wrong_line_counts_is_recounted():
    assert apply(LR_DIFF.replace("@@ -8,5 +8,5 @@", "@@ -8,9 +8,2 @@")) == LR_NEW


def test_hunk_headers_without_file_headers_apply_to_the_single_editable_file():
    assert apply(LR_DIFF.split("\n", 2)[2]) == LR_NEW


def test_trailing_whitespace_drift_in_context_is_tolerated_and_the_file_keeps_its_own():
    drifted = TRAIN.replace("N_EMBD = 128  # model width\n", "N_EMBD = 128  # model width   \n")
    result = apply(LR_DIFF, drifted)
    assert "LEARNING_RATE = 2e-3" in result
    assert "N_EMBD = 128  # model width   \n" in result


def test_blank_context_lines_without_their_leading_space_are_tolerated():
    diff = """\
--- a/train.py
+++ b/train.py
@@ -12,4 +12,4 @@
 WARMUP_FRAC = 0.05  # share of the budget spent warming up


-def lr_at(progress):
+def lr_at(progress):  # linear warmup
"""
    assert "def lr_at(progress):  # linear warmup\n" in apply(diff)


def test_ambiguous_match_far_from_the_header_is_refused():
    block = "".join(f"x{i} = {i}\n" for i in range(3))
    text = block + "".join(f"y{i} = {i}\n" for i in range(60)) + block + "".join(f"z{i} = 0\n" for i in range(60)) + block
    diff = "--- a/train.py\n+++ b/train.py\n@@ -30,3 +30,3 @@\n x0 = 0\n-x1 = 1\n+x1 = 10\n x2 = 2\n"
    error = refusal(diff, text)
    assert error.reason == "does_not_apply"
    assert "3 places" in error.message and "lines 1, 64, 127" in error.message


def test_unique_match_near_the_header_wins_over_a_far_duplicate():
    block = "".join(f"x{i} = {i}\n" for i in range(3))
    text = block + "".join(f"y{i} = {i}\n" for i in range(60)) + block
    diff = "--- a/train.py\n+++ b/train.py\n@@ -60,3 +60,3 @@\n x0 = 0\n-x1 = 1\n+x1 = 10\n x2 = 2\n"
    result = apply(diff, text)
    assert result.startswith(block) and result.endswith("x0 = 0\nx1 = 10\nx2 = 2\n")


def test_later_hunks_search_after_the_previous_hunk():
    block = "a = 1\nb = 2\nc = 3\n"
    text = block + "pad = 0\n" * 10 + block
    hunk = "@@ -1,3 +1,3 @@\n a = 1\n-b = 2\n+b = {}\n c = 3\n"
    diff = "--- a/train.py\n+++ b/train.py\n" + hunk.format(20) + hunk.format(30)
    assert apply(diff, text) == "a = 1\nb = 20\nc = 3\n" + "pad = 0\n" * 10 + "a = 1\nb = 30\nc = 3\n"


def test_hunk_that_matches_nowhere_is_refused_with_the_closest_region():
    diff = LR_DIFF.replace(" N_EMBD = 128  # model width", " N_EMBD = 256  # model width")
    error = refusal(diff)
    assert error.reason == "does_not_apply"
    assert "@@ -8,5 +8,5 @@" in error.message
    assert "'N_EMBD = 256  # model width'" in error.message
    assert "    9 | N_EMBD = 128  # model width" in error.message
    assert "copy the context" in error.hint


def test_diff_for_another_file_is_refused_with_the_editable_list():
    error = refusal(LR_DIFF.replace("train.py", "prepare.py"))
    assert error.reason == "wrong_file"
    assert "prepare.py" in error.message and "editable files: train.py" in error.message


def test_junk_text_is_refused_as_malformed():
    assert refusal("I think we should lower the learning rate.").reason == "malformed"
    assert refusal("--- a/train.py\n@@ -1,2 +1,2 @@\n-x\n+y\n").reason == "malformed"


def test_hunk_header_without_line_numbers_is_malformed():
    error = refusal("--- a/train.py\n+++ b/train.py\n@@ ... @@\n-DEPTH = 4\n+DEPTH = 6\n")
    assert error.reason == "malformed" and "-START,COUNT" in error.hint


@pytest.mark.parametrize("diff", ["", "  \n\n", "```diff\n```\n"])
def test_empty_diff_is_refused(diff):
    assert refusal(diff).reason == "empty"


def test_diff_that_changes_nothing_is_refused_as_empty():
    diff = "--- a/train.py\n+++ b/train.py\n@@ -8,1 +8,1 @@\n-DEPTH = 4  # transformer blocks\n+DEPTH = 4  # transformer blocks\n"
    assert refusal(diff).reason == "empty"


def test_creating_a_new_file_is_refused():
    plain = "--- /dev/null\n+++ b/helper.py\n@@ -0,0 +1,1 @@\n+X = 1\n"
    git = "diff --git a/train.py b/train.py\nnew file mode 100644\n--- /dev/null\n+++ b/train.py\n@@ -0,0 +1 @@\n+X = 1\n"
    assert refusal(plain).reason == "create_or_delete"
    assert refusal(git).reason == "create_or_delete"


def test_deleting_or_renaming_a_file_is_refused():
    delete = "--- a/train.py\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-import torch\n"
    rename = LR_DIFF.replace("+++ b/train.py", "+++ b/train2.py")
    assert refusal(delete).reason == "create_or_delete"
    assert "renames" in refusal(rename).message


def test_binary_diff_is_refused():
    diff = "diff --git a/train.py b/train.py\nindex 1111111..2222222 100644\nBinary files a/train.py and b/train.py differ\n"
    assert refusal(diff).reason == "malformed"


def test_patch_error_str_names_the_reason_and_the_hint():
    text = str(refusal("nonsense"))
    assert text.startswith("malformed: ") and "\nhint: " in text


def test_file_without_final_newline_keeps_that_state():
    assert apply(LR_DIFF, TRAIN.rstrip("\n")) == LR_NEW.rstrip("\n")


ROUND_TRIPS = [
    (TRAIN, LR_NEW),
    (TRAIN, TRAIN.replace("import torch\n", "import math\nimport torch\n").replace("    main()\n", "    main()\n    print('done')\n")),
    ("a\nb", "a\nb\nc\n"),
    ("a\nb\n", "a\nc"),
    ("", "x = 1\n"),
    ("x = 1\n", ""),
]


@pytest.mark.parametrize("old,new", ROUND_TRIPS)
def test_make_unified_diff_round_trips_through_apply(old, new):
    diff = make_unified_diff(old, new)
    assert diff.startswith("--- a/train.py\n+++ b/train.py\n@@ ")
    assert apply(diff, old) == new


def test_make_unified_diff_of_equal_texts_is_empty():
    assert make_unified_diff(TRAIN, TRAIN) == ""


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
@pytest.mark.parametrize("old,new", ROUND_TRIPS[:4])
def test_make_unified_diff_passes_git_apply_check(tmp_path, old, new):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "train.py").write_text(old)
    (tmp_path / "change.diff").write_text(make_unified_diff(old, new))
    subprocess.run(["git", "apply", "--check", "change.diff"], cwd=tmp_path, check=True)
    subprocess.run(["git", "apply", "change.diff"], cwd=tmp_path, check=True)
    assert (tmp_path / "train.py").read_text() == new


def test_merge_files_merges_two_edits_three_ways_and_refuses_a_conflict():
    from harness.patch import merge_files

    base = {"train.py": "A = 1\nB = 2\nC = 3\nD = 4\n"}
    kept = {"train.py": "A = 1\nB = 5\nC = 3\nD = 4\n"}
    # apart: git merges; next to the kept edit (git calls it a conflict): the replaced line is
    # still there once, so it is replaced; the same line, or an insertion beside it: refused
    assert merge_files(base, kept, {"train.py": "A = 1\nB = 2\nC = 3\nD = 9\n"}) == \
        {"train.py": "A = 1\nB = 5\nC = 3\nD = 9\n"}
    assert merge_files(base, kept, {"train.py": "A = 1\nB = 2\nC = 7\nD = 4\n"}) == \
        {"train.py": "A = 1\nB = 5\nC = 7\nD = 4\n"}
    assert merge_files(base, kept, {"train.py": "A = 1\nB = 6\nC = 3\nD = 4\n"}) is None
    assert merge_files(base, kept, {"train.py": "A = 1\nB = 2\nX = 0\nC = 3\nD = 4\n"}) is None
    assert merge_files(base, kept, base) == kept
