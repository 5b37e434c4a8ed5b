"""harness.knobs: the knob menu finds ALL_CAPS literals and rewrites exactly one of them."""

from __future__ import annotations

import pytest

from harness.knobs import ACTIONS, Knob, KnobError, actions_for, apply_action, find_knobs

TRAIN = '''\
"""Train a small GPT for a fixed time budget."""
import math

import torch

from prepare import MAX_SEQ_LEN, TIME_BUDGET, evaluate_bpb

# ----------------------------------------------------------------------------
# Hyperparameters

DEPTH = 4               # transformer blocks
N_EMBD = 128            # model width
TOTAL_TOKENS = 524_288  # tokens per optimizer step
LEARNING_RATE = 0.003   # peak AdamW learning rate
EMBED_LR: float = 3e-4  # learning rate of the embeddings
BETA2 = 0.95            # AdamW second-moment decay
DROPOUT = 0.6           # dropout on residual branches
WARMUP_FRAC = 0.05      # share of the budget spent warming up
LOGIT_BIAS = -0.5
COMPILE = False         # torch.compile the model
RUN_NAME = "baseline"   # a string, not a knob
dtype = torch.bfloat16  # lowercase, not a knob
HEAD_DIM, N_HEAD = 32, 4
A = B = 3
SCALE = math.sqrt(2)

if torch.cuda.is_available():
    BATCH_SIZE = 64


def lr_at(progress):
    """Warmup then constant."""
    MIN_LR = 0.0
    return max(MIN_LR, LEARNING_RATE * min(1.0, progress / WARMUP_FRAC))
'''


def knob(name: str) -> Knob:
    return next(k for k in find_knobs(TRAIN) if k.name == name)


def test_find_knobs_lists_module_level_all_caps_literals_in_file_order():
    names = [k.name for k in find_knobs(TRAIN)]
    assert names == [
        "DEPTH", "N_EMBD", "TOTAL_TOKENS", "LEARNING_RATE", "EMBED_LR", "BETA2",
        "DROPOUT", "WARMUP_FRAC", "LOGIT_BIAS", "COMPILE",
    ]  # skips strings, lowercase, tuples, chained, expressions, if-blocks and function locals


def test_find_knobs_reports_value_kind_line_and_comment():
    assert knob("DEPTH") == Knob("DEPTH", 4, "int", 11, "transformer blocks")
    assert knob("TOTAL_TOKENS").value == 524288
    assert knob("EMBED_LR") == Knob("EMBED_LR", 3e-4, "float", 15, "learning rate of the embeddings")
    assert knob("LOGIT_BIAS") == Knob("LOGIT_BIAS", -0.5, "float", 19, "")
    assert knob("COMPILE").kind == "bool" and knob("COMPILE").value is False


def test_actions_depend_on_the_knob_kind():
    assert actions_for(knob("DEPTH")) == ["halve", "x0.7", "x1.4", "double", "-1", "+1"]
    assert actions_for(knob("LEARNING_RATE")) == ["halve", "x0.7", "x1.4", "double"]
    assert actions_for(knob("COMPILE")) == ["toggle"]
    assert set(ACTIONS) == {"halve", "x0.7", "x1.4", "double", "-1", "+1", "toggle"}


@pytest.mark.parametrize(
    "name,action,expected",
    [
        ("LEARNING_RATE", "halve", "LEARNING_RATE 0.003 -> 0.0015 (halve)"),
        ("LEARNING_RATE", "x0.7", "LEARNING_RATE 0.003 -> 0.0021 (x0.7)"),
        ("LEARNING_RATE", "x1.4", "LEARNING_RATE 0.003 -> 0.0042 (x1.4)"),
        ("LEARNING_RATE", "double", "LEARNING_RATE 0.003 -> 0.006 (double)"),
        ("EMBED_LR", "x0.7", "EMBED_LR 3e-4 -> 2.1e-4 (x0.7)"),
        ("LOGIT_BIAS", "double", "LOGIT_BIAS -0.5 -> -1.0 (double)"),
        ("DEPTH", "halve", "DEPTH 4 -> 2 (halve)"),
        ("DEPTH", "x1.4", "DEPTH 4 -> 6 (x1.4)"),
        ("DEPTH", "-1", "DEPTH 4 -> 3 (-1)"),
        ("DEPTH", "+1", "DEPTH 4 -> 5 (+1)"),
        ("N_EMBD", "x0.7", "N_EMBD 128 -> 88 (x0.7)"),
        ("N_EMBD", "x1.4", "N_EMBD 128 -> 176 (x1.4)"),
        ("TOTAL_TOKENS", "double", "TOTAL_TOKENS 524_288 -> 1_048_576 (double)"),
        ("COMPILE", "toggle", "COMPILE False -> True (toggle)"),
    ],
)
def test_each_action_rewrites_the_literal_and_describes_the_change(name, action, expected):
    new_source, description = apply_action(TRAIN, name, action)
    assert description == expected
    new_value = expected.split(" -> ")[1].split(" (")[0]
    assert [k.name for k in find_knobs(new_source)] == [k.name for k in find_knobs(TRAIN)]
    assert f"{name} = {new_value}" in new_source or f"{name}: float = {new_value}" in new_source


def test_only_the_chosen_line_changes_and_comments_stay_aligned():
    new_source, _ = apply_action(TRAIN, "LEARNING_RATE", "x0.7")
    old_lines, new_lines = TRAIN.splitlines(), new_source.splitlines()
    changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert len(old_lines) == len(new_lines)
    assert changed == [
        ("LEARNING_RATE = 0.003   # peak AdamW learning rate", "LEARNING_RATE = 0.0021  # peak AdamW learning rate")
    ]


def test_ints_stay_ints_and_positive_ints_never_reach_zero():
    one = "LAYERS = 1  # at least one\n"
    assert apply_action(one, "LAYERS", "+1")[0] == "LAYERS = 2  # at least one\n"
    for action in ("halve", "x0.7", "-1"):
        with pytest.raises(KnobError, match="leaves LAYERS at 1"):
            apply_action(one, "LAYERS", action)
    assert actions_for(find_knobs(one)[0]) == ["x1.4", "double", "+1"]
    assert apply_action(one, "LAYERS", "x1.4")[1] == "LAYERS 1 -> 2 (x1.4)"  # rounding never undoes a step
    assert find_knobs(apply_action(TRAIN, "DEPTH", "x0.7")[0])[0].value == 3


def test_fractions_and_betas_are_clamped_below_one():
    assert apply_action(TRAIN, "DROPOUT", "double")[1] == "DROPOUT 0.6 -> 0.99 (double, clamped to <= 0.99)"
    assert apply_action(TRAIN, "BETA2", "x1.4")[1] == "BETA2 0.95 -> 0.9999 (x1.4, clamped to <= 0.9999)"
    assert apply_action(TRAIN, "WARMUP_FRAC", "double")[1] == "WARMUP_FRAC 0.05 -> 0.1 (double)"
    at_cap = "ADAM_BETA1 = 0.9999\n"
    with pytest.raises(KnobError, match="choose another action"):
        apply_action(at_cap, "ADAM_BETA1", "double")
    assert actions_for(find_knobs(at_cap)[0]) == ["halve", "x0.7"]


def test_a_zero_float_has_no_multiplicative_actions():
    zero = "FINAL_LR_FRAC = 0.0\n"
    assert actions_for(find_knobs(zero)[0]) == []
    with pytest.raises(KnobError):
        apply_action(zero, "FINAL_LR_FRAC", "double")


def test_unknown_knob_is_refused_with_the_list_of_knobs():
    with pytest.raises(KnobError, match=r"unknown knob 'LR'; knobs in train.py: DEPTH, N_EMBD"):
        apply_action(TRAIN, "LR", "halve")


def test_function_locals_and_lowercase_names_are_not_knobs():
    for name in ("MIN_LR", "dtype", "BATCH_SIZE"):
        with pytest.raises(KnobError, match="unknown knob"):
            apply_action(TRAIN, name, "halve")


def test_action_not_valid_for_the_kind_is_refused():
    with pytest.raises(KnobError, match="does not apply to float knob LEARNING_RATE"):
        apply_action(TRAIN, "LEARNING_RATE", "+1")
    with pytest.raises(KnobError, match="does not apply to bool knob COMPILE; use: toggle"):
        apply_action(TRAIN, "COMPILE", "double")
    with pytest.raises(KnobError, match="unknown action 'triple'"):
        apply_action(TRAIN, "DEPTH", "triple")


def test_knob_assigned_twice_is_refused():
    with pytest.raises(KnobError, match="assigned 2 times"):
        apply_action("DEPTH = 4\nDEPTH = 6\n", "DEPTH", "+1")


def test_source_that_does_not_parse_is_a_knob_error():
    with pytest.raises(KnobError, match="does not parse"):
        find_knobs("DEPTH = (4\n")
    assert issubclass(KnobError, ValueError)


def test_knobs_module_does_not_import_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, harness.knobs; assert 'torch' not in sys.modules"
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_searchable_leaves_out_seeds_logging_evaluation_and_compilation_by_word():
    from harness.knobs import searchable

    assert [n for n in ("SEED", "DATA_SEED", "LOG_EVERY", "EVAL_BATCH_SIZE", "COMPILE") if searchable(n)] == []
    assert all(searchable(n) for n in ("LOGIT_SOFTCAP", "DEPTH", "MATRIX_LR", "EVALUATOR_FREE_KNOB"))
