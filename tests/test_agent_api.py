"""The API agent with the real anthropic and openai SDKs against loopback servers (no training):
tool schemas on the wire, prompt caching, repairs, malformed calls, retries, limits, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.agents import AgentSpecError, make_agent
from harness.agents.api import ApiSettings, make_api_agent
from harness.agents.base import AgentError, Context
from harness.patch import apply_unified_diff, make_unified_diff

from .fake_llm import (FakeLLMServer, anthropic_error, anthropic_turn, openai_error, openai_turn, text_block,
                       tool_use)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = (ROOT / "harness" / "templates" / "sandbox" / "train.py").read_text()
PROGRAM = (ROOT / "harness" / "templates" / "program.md").read_text()
CANARY = "sk-canary-7f3e9a1b2c4d-never-in-a-body"
OLD_MLP = "        return x + self.drop(self.fc_out(F.relu(self.fc(rms_norm(x))).square()))  # ReLU^2 (So et al. 2021)\n"
NEW_MLP = "        return x + self.drop(self.fc_out(F.gelu(self.fc(rms_norm(x)))))  # GELU MLP\n"
GELU = make_unified_diff(TEMPLATE, TEMPLATE.replace(OLD_MLP, NEW_MLP))
STALE = GELU.replace("self.attn(rms_norm(x)", "self.attention(rms_norm(x)")  # a context line the file lacks


def context(history=()):
    return Context(experiment=len(history) + 2, program=PROGRAM, files={"train.py": TEMPLATE},
                   history=list(history), best_val_bpb=2.3, notes="ReLU^2 vs GELU not tried yet.")


def anthropic_agent(server, **settings):
    return make_api_agent("anthropic", "claude-test", base_url=server.url, env={"ANTHROPIC_API_KEY": CANARY},
                          settings=ApiSettings(**settings), max_retries=2)


def openai_agent(server, **settings):
    return make_api_agent("openai", "test-model", base_url=f"{server.url}/v1", env={"OPENAI_API_KEY": CANARY},
                          settings=ApiSettings(**settings), max_retries=2)


def assert_no_secret_in_bodies(server):
    assert server.requests
    for req in server.requests:
        assert CANARY.encode() not in req.body


def test_anthropic_good_diff_is_accepted_with_tools_and_cache_control_on_the_wire():
    with FakeLLMServer([anthropic_turn(text_block("Try GELU."),
                                       tool_use("propose_edit", {"description": "GELU instead of ReLU^2", "diff": GELU}))]) as srv:
        prop = anthropic_agent(srv).propose(context())
    assert prop.format == "udiff" and prop.description == "GELU instead of ReLU^2"
    new = apply_unified_diff(prop.diff, {"train.py": TEMPLATE}, ["train.py"])["train.py"]
    assert "F.gelu" in new and "square()" not in new.split("class GPT")[0].split("class Block")[1]
    assert prop.usage.llm_calls == 1 and prop.usage.prompt_tokens == 1000 and prop.usage.completion_tokens == 50
    req = srv.requests[0]
    assert req.path == "/v1/messages"
    assert CANARY in req.headers.get("x-api-key", "") + req.headers.get("authorization", "")  # a header, only
    body = req.json
    assert {t["name"] for t in body["tools"]} == {"read_file", "list_experiments", "show_experiment",
                                                  "training_curve", "ask_optimiser", "propose_edit", "write_notes"}
    assert all("input_schema" in t for t in body["tools"])
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "Current best train.py" in body["system"][-1]["text"] and OLD_MLP in body["system"][-1]["text"]
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "ReLU^2 vs GELU not tried yet." in body["messages"][0]["content"][0]["text"]
    assert_no_secret_in_bodies(srv)


def test_openai_refused_diff_comes_back_with_reasons_and_the_repair_is_accepted():
    with FakeLLMServer([
        openai_turn([("propose_edit", json.dumps({"description": "GELU", "diff": STALE}))]),
        openai_turn([("propose_edit", json.dumps({"description": "GELU MLP", "diff": GELU}))]),
    ]) as srv:
        prop = openai_agent(srv).propose(context())
    assert prop.description == "GELU MLP" and prop.usage.llm_calls == 2 and prop.usage.retries == 1
    second = srv.requests[1].json
    assert srv.requests[0].path == "/v1/chat/completions"
    assert srv.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    assert second["tools"][0]["type"] == "function" and "parameters" in second["tools"][0]["function"]
    tool_msg = next(m for m in second["messages"] if m["role"] == "tool")
    assert tool_msg["tool_call_id"] == "call_0"
    assert "refused (patch_failed)" in tool_msg["content"] and "self.attention(rms_norm(x)" in tool_msg["content"]
    assert "closest region of train.py" in tool_msg["content"]
    assert_no_secret_in_bodies(srv)


def test_openai_malformed_tool_call_is_answered_with_the_error_then_succeeds():
    with FakeLLMServer([
        openai_turn([("propose_edit", '{"description": "GELU", "diff": "--- a/train.py\n')]),
        openai_turn([("no_such_tool", "{}")]),
        openai_turn([("propose_edit", json.dumps({"description": "GELU", "diff": GELU}))]),
    ]) as srv:
        prop = openai_agent(srv).propose(context())
    assert prop.usage.llm_calls == 3
    msgs = srv.requests[1].json["messages"]
    assert "not valid JSON" in msgs[-2]["content"] and msgs[-2]["content"].startswith("ERROR")
    assert "there is no tool 'no_such_tool'" in srv.requests[2].json["messages"][-2]["content"]


def test_tool_arguments_sent_as_an_object_instead_of_a_string_are_accepted():
    turn = openai_turn([("propose_edit", "{}")])
    turn.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = {"description": "g", "diff": GELU}
    with FakeLLMServer([turn]) as srv:
        prop = openai_agent(srv).propose(context())
    assert "F.gelu" in prop.diff


def test_rate_limit_is_retried_by_the_sdk_then_succeeds():
    with FakeLLMServer([anthropic_error(429), anthropic_turn(tool_use("propose_edit", {"description": "g", "diff": GELU}))]) as srv:
        prop = anthropic_agent(srv).propose(context())
    assert len(srv.requests) == 2 and prop.usage.llm_calls == 1


def test_a_server_error_storm_becomes_an_agent_error_after_the_sdk_retries():
    with FakeLLMServer([], default=openai_error(500)) as srv:
        with pytest.raises(AgentError, match="API error 500"):
            openai_agent(srv).propose(context())
    assert len(srv.requests) == 3  # first try + max_retries=2


def test_three_refusals_end_the_round_as_an_agent_error_naming_the_last_reason():
    bad = openai_turn([("propose_edit", json.dumps({"description": "x", "diff": STALE}))])
    with FakeLLMServer([bad, bad, bad, bad]) as srv:
        with pytest.raises(AgentError, match="3 proposals refused") as err:
            openai_agent(srv).propose(context())
    assert err.value.usage.llm_calls == 3 and err.value.usage.retries == 3 and len(srv.requests) == 3


def test_tool_call_limit_bounds_a_model_that_only_reads():
    reads = [anthropic_turn(tool_use("read_file", {"path": "program.md"}, f"t{i}")) for i in range(10)]
    with FakeLLMServer(reads) as srv:
        with pytest.raises(AgentError, match="no accepted proposal after 4 tool calls"):
            anthropic_agent(srv, max_tool_calls=4).propose(context())
    assert len(srv.requests) == 4
    result = srv.requests[1].json["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and result["content"].startswith("# Research program")


def test_a_plain_text_reply_with_a_fenced_diff_is_proposed():
    reply = f"Switch the MLP to GELU.\n\n```diff\n{GELU}```\n"
    with FakeLLMServer([openai_turn(content=reply)]) as srv:
        prop = openai_agent(srv).propose(context())
    assert prop.description == "Switch the MLP to GELU." and "F.gelu" in prop.diff


def test_forced_tool_choice_is_sent_in_each_wire_format():
    with FakeLLMServer([openai_turn([("propose_edit", json.dumps({"description": "g", "diff": GELU}))])]) as srv:
        openai_agent(srv, tool_choice="propose_edit").propose(context())
    assert srv.requests[0].json["tool_choice"] == {"type": "function", "function": {"name": "propose_edit"}}
    with FakeLLMServer([anthropic_turn(tool_use("propose_edit", {"description": "g", "diff": GELU}))]) as srv:
        anthropic_agent(srv, tool_choice="propose_edit").propose(context())
    assert srv.requests[0].json["tool_choice"] == {"type": "tool", "name": "propose_edit"}


def test_missing_keys_fail_at_start_naming_the_variable(monkeypatch):
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(AgentSpecError, match="set ANTHROPIC_API_KEY"):
        make_agent("anthropic:claude-sonnet-4-5")
    with pytest.raises(AgentSpecError, match="set OPENAI_API_KEY"):
        make_agent("openai:gpt-5")
    assert make_agent("openai:qwen", base_url="http://127.0.0.1:9/v1").name == "openai:qwen"  # local: no key needed
    with pytest.raises(AgentSpecError, match="name the model"):
        make_agent("openai:", base_url="http://127.0.0.1:9/v1")


def test_an_unreachable_endpoint_is_an_agent_error_not_a_crash():
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = make_api_agent("openai", "m", base_url=f"http://127.0.0.1:{port}/v1", env={},
                           settings=ApiSettings(), max_retries=0)
    with pytest.raises(AgentError, match="unreachable"):
        agent.propose(context())


def test_a_low_apply_rate_switches_the_agent_to_search_replace_blocks():
    from harness.agents.edit_format import choose_format

    failing = [{"experiment": i, "agent": "openai:test-model", "outcome": "llm_error", "proposal_format": None,
                "retries": 3} for i in range(2, 7)]
    assert choose_format(failing[:4], "openai:test-model") == ("udiff", "")
    fmt, why = choose_format(failing, "openai:test-model")
    assert fmt == "search_replace" and "applied in 0 of 15 tries" in why
    assert choose_format(failing, "anthropic:other")[0] == "udiff"  # per agent
    block = "<<<<<<< SEARCH\n" + OLD_MLP + "=======\n" + NEW_MLP + ">>>>>>> REPLACE"
    with FakeLLMServer([openai_turn([("propose_edit", json.dumps({"description": "GELU", "search_replace": block}))])]) as srv:
        prop = openai_agent(srv).propose(context(failing))
    assert prop.format == "search_replace" and "F.gelu" in prop.diff
    assert "SEARCH/REPLACE blocks in `search_replace`" in srv.requests[0].json["messages"][1]["content"]


def test_max_llm_usd_ends_the_session_once_the_priced_spend_is_reached():
    from harness.agents.base import AgentExhausted

    turn = anthropic_turn(tool_use("propose_edit", {"description": "g", "diff": GELU}), input_tokens=400_000,
                          output_tokens=10_000)  # claude-sonnet-4 prices: $1.20 + $0.15
    with FakeLLMServer([turn, turn]) as srv:
        agent = make_api_agent("anthropic", "claude-sonnet-4-test", base_url=srv.url, env={"ANTHROPIC_API_KEY": CANARY},
                               max_llm_usd=1.0)
        agent.propose(context())
        assert agent.spent_usd == pytest.approx(1.35)
        with pytest.raises(AgentExhausted, match="LLM budget spent"):
            agent.propose(context())
    assert len(srv.requests) == 1
