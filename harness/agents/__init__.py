"""Agents by spec string: ``local`` (embedded SmolLM2, the default), ``local:PATH.gguf``,
``scripted:FILE``, ``anthropic:MODEL``, ``openai:MODEL`` (any OpenAI-compatible server) and
``optuna`` (TPE), ``optuna:cmaes``, ``optuna:random`` (the optimiser, no LLM) and ``hybrid`` (the
optimiser with the local model proposing 3 trials in 10)."""

from __future__ import annotations

from .base import Agent, AgentError, AgentExhausted, Context, Proposal, Usage

__all__ = ["Agent", "AgentError", "AgentExhausted", "Context", "Proposal", "Usage", "make_agent", "AgentSpecError"]


class AgentSpecError(ValueError):
    """An ``--agent`` spec names no known agent or cannot be set up; the message lists the choices."""


def make_agent(spec: str, seed: int | None = None, base_url: str | None = None,
               tool_choice: str = "auto", max_llm_usd: float | None = None) -> Agent:
    """Build the agent named by ``spec``.

    Args:
        spec: ``local`` | ``local:PATH.gguf`` | ``scripted:FILE`` | ``anthropic:MODEL`` | ``openai:MODEL``
            | ``optuna`` | ``optuna:tpe`` | ``optuna:cmaes`` | ``optuna:random`` | ``hybrid`` (TPE and the
            embedded model) | ``hybrid:PATH.gguf``.
        seed: sampling seed for the local model (None: random), base seed of the optimiser (None: 0).
        base_url: endpoint of an API model (default: ``ANTHROPIC_BASE_URL`` / ``OPENAI_BASE_URL``,
            else the provider's own).
        tool_choice: API models: ``auto``, ``required`` or a tool name to force (``propose_edit``).
        max_llm_usd: API models: end the session when its LLM spend reaches this (named models only).

    Raises:
        AgentSpecError: unknown spec, a spec whose model/file cannot be loaded, or an API model
            whose key variable is not set (the message names it).
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
        from .api import make_api_agent

        try:
            return make_api_agent(kind, arg, base_url=base_url, tool_choice=tool_choice, max_llm_usd=max_llm_usd)
        except ValueError as exc:  # MissingKey included
            raise AgentSpecError(str(exc)) from None
    if kind == "hybrid":
        from .hybrid import SAMPLER, HybridAgent
        from .local import LocalAgent, LocalModelError
        from .optimiser_agent import OptimiserAgent

        try:
            model = LocalAgent.load(model_path=arg or None, seed=seed)
        except LocalModelError as exc:
            raise AgentSpecError(str(exc)) from None
        return HybridAgent(OptimiserAgent(SAMPLER, seed=seed), model, name=spec)
    if kind == "optuna":
        from ..optimiser import SAMPLERS
        from .optimiser_agent import OptimiserAgent

        if (arg or "tpe") not in SAMPLERS:
            raise AgentSpecError(f"unknown optimiser {arg!r}; choose optuna (TPE), optuna:cmaes or optuna:random")
        return OptimiserAgent(arg or "tpe", seed=seed)
    raise AgentSpecError(f"unknown agent {spec!r}; choose local, local:PATH.gguf, scripted:FILE, "
                         "anthropic:MODEL, openai:MODEL, optuna, optuna:cmaes, optuna:random or hybrid.")
