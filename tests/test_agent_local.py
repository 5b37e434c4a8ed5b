"""The local knob-menu agent: the prompt, the schema, bad model output, and the real SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.agents.base import AgentError, Context
from harness.agents.local import LocalAgent, history_lines, program_goal
from harness.decisions import file_key
from harness.knobs import find_knobs
from harness.patch import apply_unified_diff

TEMPLATE = (Path(__file__).resolve().parent.parent / "harness" / "templates" / "sandbox" / "train.py").read_text()
PROGRAM = (Path(__file__).resolve().parent.parent / "harness" / "templates" / "program.md").read_text()


def context(history=(), source=TEMPLATE):
    return Context(experiment=len(history) + 1, program=PROGRAM, files={"train.py": source},
                   history=list(history), best_val_bpb=2.5)


def ran(n, prop, **fields):
    """The trajectory object of experiment ``n`` that ran proposal ``prop`` on the template."""
    new = apply_unified_diff(prop.diff, {"train.py": TEMPLATE}, ["train.py"])["train.py"]
    return {"experiment": n, "outcome": "not_improved", "val_bpb": 2.6, "description": prop.description,
            "knob": prop.knob, "file_key": file_key({"train.py": new}), "run_s": 1.0, **fields}


class Replay:
    """A stand-in for the model runtime that answers with canned texts and records the requests."""

    def __init__(self, *answers):
        self.answers, self.requests = list(answers), []

    def __call__(self, messages, schema, temperature):
        self.requests.append(([dict(m) for m in messages], schema, temperature))
        return self.answers.pop(0), {"prompt_tokens": 100, "completion_tokens": 10}


def test_a_valid_choice_becomes_a_knob_diff_that_applies():
    model = Replay(json.dumps({"knob": "LEARNING_RATE", "action": "x1.4", "reason": "faster"}))
    prop = LocalAgent(model).propose(context())
    assert prop.format == "knob" and prop.knob["knob"] == "LEARNING_RATE" and prop.knob["action"] == "x1.4"
    new = apply_unified_diff(prop.diff, {"train.py": TEMPLATE}, ["train.py"])["train.py"]
    assert {k.name: k.value for k in find_knobs(new)}["LEARNING_RATE"] == pytest.approx(3e-3 * 1.4, rel=0.02)
    assert prop.usage.llm_calls == 1 and prop.usage.prompt_tokens == 100
    messages, schema, _ = model.requests[0]
    branches = {b["properties"]["knob"]["const"]: b for b in schema["anyOf"]}
    assert "x1.4" in branches["LEARNING_RATE"]["properties"]["action"]["enum"]
    assert "+1" in branches["DEPTH"]["properties"]["action"]["enum"]
    # knobs that do not change what the model learns are not offered
    assert not {"SEED", "LOG_EVERY", "EVAL_BATCH_SIZE", "COMPILE"} & set(branches)
    assert all(b["required"] == ["knob", "action", "reason"] for b in branches.values())
    assert "val_bpb" in messages[1]["content"] and "LEARNING_RATE = 0.003" in messages[1]["content"]


def test_junk_output_is_retried_with_the_reason_then_fails_as_agent_error():
    model = Replay("}{not json", "I like turtles", '{"knob": 3}')
    with pytest.raises(AgentError, match="no usable answer in 3 tries") as err:
        LocalAgent(model).propose(context())
    assert err.value.usage.llm_calls == 3 and err.value.usage.retries == 3
    assert "not JSON" in model.requests[1][0][-1]["content"]


def test_tried_moves_are_left_out_of_the_schema():
    first = LocalAgent(Replay(json.dumps({"knob": "DEPTH", "action": "+1", "reason": "deeper"}))).propose(context())
    history = [ran(2, first)]
    model = Replay(json.dumps({"knob": "DEPTH", "action": "x0.7", "reason": "shallower"}))
    LocalAgent(model).propose(context(history))
    depth = [b for b in model.requests[0][1]["anyOf"] if b["properties"]["knob"]["const"] == "DEPTH"][0]
    # DEPTH 4 -> 3 by x0.7 or -1 is one file, offered once (the first action of the menu's order)
    assert "+1" not in depth["properties"]["action"]["enum"] and "x0.7" in depth["properties"]["action"]["enum"]
    assert "-1" not in depth["properties"]["action"]["enum"]


def test_a_repeated_change_is_refused_and_finally_replaced_by_an_untried_one():
    first = LocalAgent(Replay(json.dumps({"knob": "DEPTH", "action": "+1", "reason": "deeper"}))).propose(context())
    history = [ran(2, first)]
    again = json.dumps({"knob": "DEPTH", "action": "+1", "reason": "deeper"})
    prop = LocalAgent(Replay(again, again, again), seed=0).propose(context(history))
    assert ran(3, prop)["file_key"] != history[0]["file_key"]
    assert "harness picked an untried one" in prop.knob["reason"]


def test_moves_that_reach_the_same_file_are_offered_once_and_never_after_it_ran():
    one = TEMPLATE.replace("DEPTH = 4 ", "DEPTH = 1 ")
    model = Replay(json.dumps({"knob": "DEPTH", "action": "x1.4", "reason": "deeper"}))
    prop = LocalAgent(model).propose(context(source=one))
    depth = [b for b in model.requests[0][1]["anyOf"] if b["properties"]["knob"]["const"] == "DEPTH"][0]
    # DEPTH 1 -> 2 by x1.4, double or +1 is one file: one of those moves is offered
    assert sum(a in depth["properties"]["action"]["enum"] for a in ("x1.4", "double", "+1")) == 1
    two = apply_unified_diff(prop.diff, {"train.py": one}, ["train.py"])["train.py"]
    history = [{"experiment": 2, "outcome": "not_improved", "val_bpb": 2.6, "run_s": 1.0,
                "file_key": file_key({"train.py": two.replace("# transformer blocks", "")})}]
    model = Replay(json.dumps({"knob": "N_EMBD", "action": "double", "reason": "wider"}))
    LocalAgent(model).propose(context(history, source=one))
    menu = {b["properties"]["knob"]["const"] for b in model.requests[0][1]["anyOf"]}
    assert "DEPTH" not in menu and "N_EMBD" in menu, "DEPTH 2, the one move of DEPTH 1, ran already"


def test_history_is_compacted_to_keep_the_prompt_flat():
    history = [{"experiment": i, "outcome": "not_improved", "val_bpb": 2.0, "description": "x",
                "knob": {"knob": "DEPTH", "action": "+1"}} for i in range(1, 201)]
    lines = history_lines(history)
    assert len(lines) == 31 and lines[0].startswith("earlier: DEPTH tried 170x")


def test_program_goal_is_the_goal_section():
    assert program_goal(PROGRAM).startswith("Get the lowest val_bpb")


@pytest.mark.slow
def test_the_real_smollm2_picks_knob_changes_that_apply():
    agent = LocalAgent.load(seed=1)
    history = []
    for n in (2, 3):
        prop = agent.propose(context(history))
        new = apply_unified_diff(prop.diff, {"train.py": TEMPLATE}, ["train.py"])["train.py"]
        assert new != TEMPLATE and prop.format == "knob"
        assert "harness picked" not in prop.knob["reason"]  # the schema makes the model's own pick valid
        assert prop.usage.llm_calls >= 1 and prop.usage.prompt_tokens > 200
        history.append(ran(n, prop))
    assert history[0]["file_key"] != history[1]["file_key"]
