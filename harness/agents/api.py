"""The agent for API models (``anthropic:MODEL``, ``openai:MODEL``): a bounded tool loop.

Each experiment is a fresh conversation (:mod:`harness.agents.prompt`: rules, program.md, the best
train.py, a flat history summary, the last crash, notes). The model calls the tools of
:mod:`tools` until propose_edit answers "accepted", or a limit is hit (refused proposals, tool
calls), which raises :class:`AgentError` (the loop records ``llm_error`` and goes on). A model that
answers in plain text with a fenced diff or SEARCH/REPLACE blocks is taken at its word (the text
protocol for models without tool calling). Rate limits, 5xx and timeouts are retried by the SDK;
an endpoint still unavailable after that raises :class:`harness.agents.chat.EndpointDown`, which
the loop waits out with backoff.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Mapping, Optional

from .base import AgentError, AgentExhausted, Context, Proposal, Usage
from .chat import Backend, BackendError, EndpointDown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiSettings:
    """Limits and choices of the tool loop.

    Attributes:
        max_tool_calls: tool calls (and plain-text turns) per experiment before giving up.
        max_refusals: refused propose_edit calls per experiment before giving up.
        tool_choice: ``auto`` | ``required`` | a tool name to force on every turn (``propose_edit``
            for small local models that only answer well when forced).
        edit_format: the edit format to start with: ``udiff`` | ``search_replace`` | ``whole``; the
            agent moves to the next one when its apply rate falls (:mod:`harness.agents.edit_format`).
        max_llm_usd: stop proposing (the session ends) once this session's LLM spend reaches this
            many dollars; models without a price in :mod:`harness.agents.pricing` are only counted
            in tokens.
    """

    max_tool_calls: int = 12
    max_refusals: int = 3
    tool_choice: str = "auto"
    edit_format: str = "udiff"
    max_llm_usd: Optional[float] = None


class ApiAgent:
    """An :class:`harness.agents.base.Agent` driven by a chat model with tools.

    Args:
        backend: starts conversations (:class:`harness.agents.anthropic_backend.AnthropicBackend`,
            :class:`harness.agents.openai_backend.OpenAIBackend`).
        name: the agent spec recorded in the ledger, e.g. ``anthropic:claude-sonnet-4-5``.
        settings: the loop's limits.
    """

    def __init__(self, backend: Backend, name: str, settings: ApiSettings = ApiSettings()):
        from .pricing import price

        self.backend, self.name, self.settings = backend, name, settings
        self.model = name.split(":", 1)[-1]
        self.spent_usd, self.tokens = 0.0, 0
        if settings.max_llm_usd is not None and price(self.model) is None:
            log.warning("no price known for %s: --max-llm-usd cannot be enforced; tokens are still recorded", self.model)

    def propose(self, context: Context) -> Proposal:
        """Run the tool loop for experiment ``context.experiment`` and return the accepted proposal.

        Raises:
            EndpointDown: the endpoint is unavailable (connection errors, 5xx, 429) after the
                SDK's retries; ``usage`` holds the calls and tokens spent.
            AgentError: the API refused the request, or no edit was accepted within the limits.
            AgentExhausted: ``max_llm_usd`` is spent.
        """
        s = self.settings
        if s.max_llm_usd is not None and self.spent_usd >= s.max_llm_usd:
            raise AgentExhausted(f"LLM budget spent: ${self.spent_usd:.2f} of --max-llm-usd {s.max_llm_usd:g} "
                                 f"({self.tokens} tokens)")
        usage = Usage()
        try:
            return self._propose(context, usage)
        finally:
            from .pricing import cost_usd

            self.tokens += usage.prompt_tokens + usage.completion_tokens
            self.spent_usd += cost_usd(self.model, usage.prompt_tokens, usage.completion_tokens) or 0.0

    def _propose(self, context: Context, usage: Usage) -> Proposal:
        from tools import ALL_TOOLS, ToolResult

        from .edit_format import choose_format
        from .prompt import stable_prefix, task_message

        s = self.settings
        fmt, why = choose_format(context.history, self.name, s.edit_format)
        if why:
            log.warning("%s: %s", self.name, why)
        box = _toolbox(context)
        conv = self.backend.start(stable_prefix(context), task_message(context, fmt, context.sandbox), list(ALL_TOOLS))
        calls, last_refusal = 0, ""
        while True:
            turn = self._ask(conv, s.tool_choice, usage)
            results, note = [], ""
            for call in turn.calls:
                calls += 1
                if box.proposal is not None:
                    result = ToolResult("not run: a proposal was already accepted in this turn", True)
                elif call.error:
                    result = ToolResult(f"{call.error}. Call {call.name} again with a valid JSON object.", True)
                else:
                    result = box.call(call.name, call.arguments)
                if call.name == "propose_edit" and result.is_error:
                    last_refusal = result.text
                results.append((call, result))
            if not turn.calls:
                calls += 1
                note = self._text_protocol(turn.text, box)
                if box.proposal is None and note.startswith("refused"):
                    last_refusal = note
            usage.retries, usage.tool_calls = box.refusals, calls
            if box.proposal is not None:
                p = box.proposal
                return Proposal(description=p.description, diff=p.diff, format=p.format, usage=usage)
            if box.refusals >= s.max_refusals:
                raise AgentError(f"{box.refusals} proposals refused; last: {last_refusal[:1500]}", usage)
            if calls >= s.max_tool_calls:
                raise AgentError(f"no accepted proposal after {calls} tool calls"
                                 + (f"; last refusal: {last_refusal[:1200]}" if last_refusal else ""), usage)
            left = f"(tool calls left: {s.max_tool_calls - calls}; refusals left: {s.max_refusals - box.refusals})"
            conv.reply(results, note=f"{note}\n{left}".strip() if note else left)

    def _ask(self, conv, tool_choice: str, usage: Usage):
        t0 = time.monotonic()
        try:
            turn = conv.ask(tool_choice)
        except BackendError as exc:
            usage.llm_s += time.monotonic() - t0
            raise (EndpointDown if exc.endpoint_down else AgentError)(str(exc), usage) from None
        usage.llm_calls += 1
        usage.llm_s += time.monotonic() - t0
        usage.prompt_tokens += turn.prompt_tokens
        usage.completion_tokens += turn.completion_tokens
        return turn

    @staticmethod
    def _text_protocol(text: str, box) -> str:
        """A plain-text reply: propose the fenced diff or SEARCH/REPLACE blocks in it, if any."""
        from ..edits import edit_from_text

        found = edit_from_text(text or "")
        if found is None:
            return ("No tool call and no edit found in your reply. Call propose_edit (or reply with one unified "
                    "diff of train.py in a ```diff fence, with a one-line description above it).")
        kind, edit = found
        before = text.split("```", 1)[0] if kind == "diff" else text.split("<<<<<<<", 1)[0]
        description = next((line.strip(" #*-") for line in before.splitlines() if line.strip(" #*-")),
                           "edit from a plain-text reply")
        return box.call("propose_edit", {"description": description, kind: edit}).text


def _toolbox(context: Context):
    from tools import Toolbox

    from ..config import ConfigError, HarnessConfig, load

    sandbox = context.sandbox
    cfg = HarnessConfig(tag="-", editable_files=tuple(context.files))
    if sandbox is not None:
        try:
            cfg = load(sandbox)
        except ConfigError:
            pass
    return Toolbox(sandbox, cfg, dict(context.files), list(context.history), program=context.program,
                   notes=None, experiment=context.experiment)


# --- construction from an --agent spec --------------------------------------------------------
class MissingKey(ValueError):
    """No API key in the environment; the message names the variable to set."""


def make_api_agent(provider: str, model: str, base_url: Optional[str] = None, tool_choice: str = "auto",
                   env: Mapping[str, str] = os.environ, settings: Optional[ApiSettings] = None,
                   max_retries: int = 4, timeout_s: float = 300.0, max_llm_usd: Optional[float] = None) -> ApiAgent:
    """Build the agent for ``anthropic:MODEL`` or ``openai:MODEL``.

    The base URL is ``base_url``, else ``ANTHROPIC_BASE_URL`` / ``OPENAI_BASE_URL``, else the SDK's
    default. The key comes from ``ANTHROPIC_API_KEY`` (or ``ANTHROPIC_AUTH_TOKEN``, sent as a
    bearer token) / ``OPENAI_API_KEY``; an OpenAI-compatible server given by URL may need no key.

    Raises:
        MissingKey: the key variable is not set (and is needed).
        ValueError: ``provider`` is neither ``anthropic`` nor ``openai``, or ``model`` is empty.
    """
    if not model:
        raise ValueError(f"name the model: --agent {provider}:MODEL")
    settings = settings or ApiSettings(tool_choice=tool_choice, max_llm_usd=max_llm_usd)
    name = f"{provider}:{model}"
    if provider == "anthropic":
        from .anthropic_backend import AnthropicBackend

        url = base_url or env.get("ANTHROPIC_BASE_URL") or None
        key, token = env.get("ANTHROPIC_API_KEY") or None, env.get("ANTHROPIC_AUTH_TOKEN") or None
        if not key and not token:
            raise MissingKey(f"--agent {name} needs an API key: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN for "
                             "endpoints that take a bearer token)")
        backend = AnthropicBackend(model, api_key=key, auth_token=None if key else token, base_url=url,
                                   timeout_s=timeout_s, max_retries=max_retries)
        return ApiAgent(backend, name, settings)
    if provider == "openai":
        from .openai_backend import OpenAIBackend

        url = base_url or env.get("OPENAI_BASE_URL") or None
        key = env.get("OPENAI_API_KEY") or None
        if not key and not url:
            raise MissingKey(f"--agent {name} needs an API key: set OPENAI_API_KEY (a local server given with "
                             "--base-url needs none)")
        backend = OpenAIBackend(model, api_key=key or "no-key-needed", base_url=url, timeout_s=timeout_s,
                                max_retries=max_retries)
        return ApiAgent(backend, name, settings)
    raise ValueError(f"unknown API provider {provider!r}: use anthropic:MODEL or openai:MODEL")
