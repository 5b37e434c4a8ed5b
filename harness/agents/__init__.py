"""Agents by spec string: ``local`` (embedded SmolLM2, the default), ``local:PATH.gguf``,
``scripted:FILE``. API models (``anthropic:MODEL``, ``openai:MODEL``) come in a later release."""

from __future__ import annotations

from .base import Agent, AgentError, AgentExhausted, Context, Proposal, Usage

__all__ = ["Agent", "AgentError", "AgentExhausted", "Context", "Proposal", "Usage", "make_agent", "AgentSpecError"]


class AgentSpecError(ValueError):
    """An ``--agent`` spec names no known agent or cannot be set up; the message lists the choices."""


def make_agent(spec: str, seed: int | None = None) -> Agent:
    """Build the agent named by ``spec``.

    Args:
        spec: ``local`` | ``local:PATH.gguf`` | ``scripted:FILE``.
        seed: sampling seed for the local model (None: random).

    Raises:
        AgentSpecError: unknown spec, or a spec whose model/file cannot be loaded.
    """
    kind, _, arg = spec.partition(":")
    if kind == "local":
        from .local import LocalAgent, LocalModelError

        try:
            return LocalAgent.load(model_path=arg or None, seed=seed)
        except LocalModelError as exc:
            raise AgentSpecError(str(exc)) from None
    if kind == "scripted":
        from .scripted import ScriptedAgent

        if not arg:
            raise AgentSpecError("scripted needs a file: --agent scripted:proposals.jsonl")
        try:
            return ScriptedAgent.from_file(arg)
        except AgentError as exc:
            raise AgentSpecError(str(exc)) from None
    if kind in ("anthropic", "openai"):
        raise AgentSpecError(
            f"agent {spec!r}: API models are not available in this version yet; "
            "use --agent local (the embedded model) or --agent scripted:FILE."
        )
    raise AgentSpecError(f"unknown agent {spec!r}; choose local, local:PATH.gguf or scripted:FILE.")
