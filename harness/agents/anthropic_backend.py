"""Anthropic Messages API backend (the ``anthropic`` SDK): tools as ``tool_use``/``tool_result``
blocks, prompt caching with ``cache_control`` on the system prompt (tools + rules + program.md +
best train.py) and on the newest user message, so each turn of a tool loop re-reads the
conversation from the cache. Any Anthropic-compatible endpoint works through ``base_url``.
"""

from __future__ import annotations

from typing import Optional

from .chat import ToolCall, Turn, sdk_errors

CACHE = {"type": "ephemeral"}


class AnthropicBackend:
    """Conversations with one Anthropic(-compatible) model.

    Args:
        model: the model name, e.g. ``claude-sonnet-4-5``.
        api_key: the API key (the SDK sends it in a header); or ``auth_token``, sent as
            ``Authorization: Bearer`` (Anthropic-compatible endpoints such as Z.ai's).
        base_url: the endpoint (None: the SDK's default, api.anthropic.com).
        timeout_s: seconds per request; max_retries: the SDK's retries with backoff (429, 5xx,
            timeouts, connection errors); max_tokens: completion limit per turn.
    """

    def __init__(self, model: str, api_key: Optional[str] = None, auth_token: Optional[str] = None,
                 base_url: Optional[str] = None, timeout_s: float = 300.0, max_retries: int = 4,
                 max_tokens: int = 8192):
        import anthropic

        self.model, self.max_tokens = model, max_tokens
        self.client = anthropic.Anthropic(api_key=api_key, auth_token=auth_token, base_url=base_url,
                                          timeout=timeout_s, max_retries=max_retries)

    def start(self, system: list[str], user: str, tools: list[dict]) -> "AnthropicConversation":
        """A new conversation (see :class:`harness.agents.chat.Backend`)."""
        return AnthropicConversation(self, system, user, tools)


class AnthropicConversation:
    """One conversation in the Messages wire format; content is always a list of blocks."""

    def __init__(self, backend: AnthropicBackend, system: list[str], user: str, tools: list[dict]):
        self.backend = backend
        self.system = [{"type": "text", "text": s} for s in system]
        if self.system:
            self.system[-1]["cache_control"] = CACHE
        self.tools = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                      for t in tools]
        self.messages: list[dict] = [{"role": "user", "content": [{"type": "text", "text": user}]}]

    def ask(self, tool_choice: str = "auto") -> Turn:
        """Send the conversation and return the model's turn (see :class:`Conversation`)."""
        import anthropic

        kwargs = {}
        if tool_choice == "required":
            kwargs["tool_choice"] = {"type": "any"}
        elif tool_choice != "auto":
            kwargs["tool_choice"] = {"type": "tool", "name": tool_choice}
        with sdk_errors(anthropic, "anthropic"):
            resp = self.backend.client.messages.create(
                model=self.backend.model, max_tokens=self.backend.max_tokens, system=self.system,
                tools=self.tools, messages=self._with_cache_mark(), **kwargs)
        turn, blocks = Turn(), []
        for block in resp.content or []:
            if block.type == "text":
                turn.text += block.text
                blocks.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                args = block.input if isinstance(block.input, dict) else None
                error = None if args is not None else f"the input of {block.name} is not a JSON object"
                turn.calls.append(ToolCall(block.id, block.name, args, error))
                blocks.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        self.messages.append({"role": "assistant", "content": blocks or [{"type": "text", "text": "(empty)"}]})
        usage = resp.usage
        if usage is not None:
            turn.prompt_tokens = (usage.input_tokens or 0) + (usage.cache_creation_input_tokens or 0) + (
                usage.cache_read_input_tokens or 0)
            turn.completion_tokens = usage.output_tokens or 0
        return turn

    def reply(self, results: list, note: str = "") -> None:
        """Answer every tool call of the last turn with a ``tool_result`` block, plus ``note``."""
        content = [{"type": "tool_result", "tool_use_id": call.id, "content": result.text,
                    "is_error": result.is_error} for call, result in results]
        if note:
            content.append({"type": "text", "text": note})
        self.messages.append({"role": "user", "content": content or [{"type": "text", "text": "continue"}]})

    def _with_cache_mark(self) -> list[dict]:
        """The messages with a cache breakpoint on the last block of the newest user message."""
        out = list(self.messages)
        last = dict(out[-1])
        last["content"] = [*last["content"][:-1], {**last["content"][-1], "cache_control": CACHE}]
        out[-1] = last
        return out
