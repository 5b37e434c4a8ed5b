"""The neutral shapes between the API agent's tool loop and a model backend (Anthropic, OpenAI).

A backend starts a :class:`Conversation`; each :meth:`Conversation.ask` sends the whole
conversation so far and returns one :class:`Turn`; :meth:`Conversation.reply` answers the turn's
tool calls (and/or adds a plain user message). Wire formats stay inside the backend modules.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional, Protocol

from .base import AgentError


class BackendError(Exception):
    """A model request failed after the SDK's own retries.

    Attributes:
        unreachable: True when the endpoint could not be reached at all (connection refused,
            DNS, timeout), as opposed to an HTTP error answer.
        status: the HTTP status of an error answer (None when there was none).
    """

    def __init__(self, message: str, unreachable: bool = False, status: Optional[int] = None):
        super().__init__(message)
        self.unreachable, self.status = unreachable, status

    @property
    def endpoint_down(self) -> bool:
        """True when waiting may help: unreachable, overloaded (5xx, 529), rate limited (429) or
        timed out (408), as opposed to a request the endpoint refuses (400, 401, 404 ...)."""
        return self.unreachable or self.status in (408, 409, 429) or (self.status or 0) >= 500


class EndpointDown(AgentError):
    """The model endpoint is unavailable (see :attr:`BackendError.endpoint_down`) even after the
    SDK's retries; the loop records an ``llm_error`` and waits with backoff before asking again."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call of a model turn: ``arguments`` is the decoded JSON object, or None with
    ``error`` saying why it could not be decoded (answered to the model as a tool error)."""

    id: str
    name: str
    arguments: Optional[dict]
    error: Optional[str] = None


@dataclass
class Turn:
    """One model answer: its text, its tool calls, and its token counts (0 when not reported)."""

    text: str = ""
    calls: list = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Conversation(Protocol):
    """A conversation with one model, in the backend's wire format."""

    def ask(self, tool_choice: str = "auto") -> Turn:
        """Send the conversation; ``tool_choice``: ``auto``, ``required`` or a tool name to force.

        Raises:
            BackendError: the request failed after retries.
        """

    def reply(self, results: list, note: str = "") -> None:
        """Answer the last turn: ``results`` is ``[(ToolCall, ToolResult), ...]`` for every call
        of that turn; ``note`` (optional) is extra user text."""


class Backend(Protocol):
    """Starts conversations with one model."""

    def start(self, system: list[str], user: str, tools: list[dict]) -> Conversation:
        """A new conversation: ``system`` blocks (the last one ends the cacheable prefix), the
        first user message, and tools as ``{name, description, parameters}`` (JSON schema)."""


@contextmanager
def sdk_errors(sdk, label: str):
    """Turn the errors of the ``anthropic`` or ``openai`` SDK (same class names in both) raised in
    the block into :class:`BackendError`; connection errors and timeouts are ``unreachable``.

    Args:
        sdk: the SDK module (``anthropic`` or ``openai``).
        label: how the endpoint is named in messages, e.g. ``"anthropic"``.
    """
    try:
        yield
    except sdk.APIConnectionError as exc:  # includes timeouts
        raise BackendError(f"{label} endpoint unreachable: {exc}", unreachable=True) from None
    except sdk.APIStatusError as exc:
        raise BackendError(f"{label} API error {exc.status_code}: {short(exc.message)}",
                           status=exc.status_code) from None
    except sdk.APIError as exc:
        raise BackendError(f"{label} API error: {short(str(exc))}") from None


def short(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters (for error messages)."""
    return " ".join(str(text).split())[:limit]
