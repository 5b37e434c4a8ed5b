"""OpenAI-compatible Chat Completions backend (the ``openai`` SDK): tools as ``tool_calls`` and
``role: tool`` messages. Works with OpenAI and with servers that speak the same wire format
through ``base_url``: GLM (Z.ai), vLLM, Ollama, llama.cpp's server, NIM, OpenRouter.

Tool-call arguments arrive as a JSON string; one that does not decode is answered to the model
as a tool error (the model gets another try), never raised.
"""

from __future__ import annotations

import json
from typing import Optional

from .chat import BackendError, ToolCall, Turn, sdk_errors


class OpenAIBackend:
    """Conversations with one OpenAI-compatible model.

    Args:
        model: the model name the server knows (``gpt-5``, ``glm-4.6``, ``qwen2.5-coder`` ...).
        api_key: sent as ``Authorization: Bearer``; local servers accept any value.
        base_url: the endpoint including ``/v1`` (None: the SDK's default, api.openai.com).
        timeout_s: seconds per request; max_retries: the SDK's retries with backoff (429, 5xx,
            timeouts, connection errors); max_tokens: completion limit per turn.
    """

    def __init__(self, model: str, api_key: str, base_url: Optional[str] = None, timeout_s: float = 300.0,
                 max_retries: int = 4, max_tokens: int = 4096):
        import openai

        self.model, self.max_tokens = model, max_tokens
        # OpenAI's own API wants max_completion_tokens (its reasoning models refuse max_tokens);
        # compatible servers (vLLM, Ollama, llama.cpp, GLM) know max_tokens
        self.token_param = "max_completion_tokens" if not base_url or "api.openai.com" in base_url else "max_tokens"
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries)

    def start(self, system: list[str], user: str, tools: list[dict]) -> "OpenAIConversation":
        """A new conversation (see :class:`harness.agents.chat.Backend`)."""
        return OpenAIConversation(self, system, user, tools)


class OpenAIConversation:
    """One conversation in the Chat Completions wire format."""

    def __init__(self, backend: OpenAIBackend, system: list[str], user: str, tools: list[dict]):
        self.backend = backend
        self.tools = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                                        "parameters": t["parameters"]}} for t in tools]
        self.messages: list[dict] = [{"role": "system", "content": "\n\n".join(system)},
                                     {"role": "user", "content": user}]

    def ask(self, tool_choice: str = "auto") -> Turn:
        """Send the conversation and return the model's turn (see :class:`Conversation`)."""
        import openai

        kwargs = {}
        if tool_choice == "required":
            kwargs["tool_choice"] = "required"
        elif tool_choice != "auto":
            kwargs["tool_choice"] = {"type": "function", "function": {"name": tool_choice}}
        with sdk_errors(openai, "openai-compatible"):
            resp = self.backend.client.chat.completions.create(
                model=self.backend.model, messages=self.messages, tools=self.tools,
                **{self.backend.token_param: self.backend.max_tokens}, **kwargs)
        if not resp.choices:
            raise BackendError("the server answered with no choices")
        msg = resp.choices[0].message
        turn = Turn(text=msg.content or "")
        wire_calls = []
        for i, tc in enumerate(msg.tool_calls or []):
            fn = getattr(tc, "function", None)
            if fn is None:
                continue
            call_id = getattr(tc, "id", None) or f"call_{len(self.messages)}_{i}"
            raw = fn.arguments or "{}"
            if isinstance(raw, dict):  # some servers send an object instead of a JSON string
                raw = json.dumps(raw)
            try:
                args, error = json.loads(raw), None
                if not isinstance(args, dict):
                    args, error = None, f"the arguments of {fn.name} must be a JSON object, got {raw[:200]!r}"
            except ValueError as exc:
                args, error = None, f"the arguments of {fn.name} are not valid JSON ({exc}): {raw[:200]!r}"
            turn.calls.append(ToolCall(call_id, fn.name, args, error))
            wire_calls.append({"id": call_id, "type": "function", "function": {"name": fn.name, "arguments": raw}})
        message = {"role": "assistant", "content": turn.text}
        if wire_calls:
            message["tool_calls"] = wire_calls
        self.messages.append(message)
        if resp.usage is not None:
            turn.prompt_tokens = resp.usage.prompt_tokens or 0
            turn.completion_tokens = resp.usage.completion_tokens or 0
        return turn

    def reply(self, results: list, note: str = "") -> None:
        """Answer every tool call of the last turn with a ``role: tool`` message, plus ``note``."""
        for call, result in results:
            text = f"ERROR: {result.text}" if result.is_error else result.text
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        if note or not results:
            self.messages.append({"role": "user", "content": note or "continue"})
