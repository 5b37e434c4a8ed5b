"""ask_optimiser: the model-based optimiser's advice for an LLM agent (API or MCP).

The answer gives the optimiser's next point (knob values and a ready unified diff against the
current best train.py, which the agent may pass to propose_edit / run_experiment as it is, change,
or ignore) and what it learnt from the sandbox's experiments: how many trials, the best trial,
the best region (value ranges over the best fifth of trials), which knobs matter (fANOVA
importance) and the searched space (:mod:`harness.optimiser`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .files import ToolError


def ask_optimiser(sandbox: Optional[Path], files: dict, history: list, sampler: str = "tpe") -> str:
    """The optimiser's suggestion and what it learnt, as text for a model.

    Raises:
        ToolError: no sandbox (the trials are read from its git), or the optimiser had nothing
            to suggest (no searchable knob, or only files that already ran).
    """
    from harness.agents.base import AgentError, Context
    from harness.agents.optimiser_agent import OptimiserAgent

    if sandbox is None:
        raise ToolError("the optimiser reads the experiments' files from the sandbox's git; no sandbox here")
    if sampler not in ("tpe", "cmaes", "random"):
        raise ToolError(f"unknown sampler {sampler!r}; use tpe, cmaes or random")
    context = Context(experiment=0, program="", files=files, history=history, best_val_bpb=None, sandbox=sandbox)
    try:
        proposal, info = OptimiserAgent(sampler).advise(context, explain=True)
    except AgentError as exc:
        raise ToolError(f"the optimiser has no suggestion: {exc}") from None
    lines = [f"optimiser ({sampler}) after {info['trials']} trials ({info['penalised']} failed runs penalised)."]
    if info["best"]:
        best = info["best"]
        lines.append(f"best trial: experiment {best['experiment']}, val_bpb {best['val_bpb']:.6f} (mean of its runs)")
    if info["importance"]:
        top = sorted(info["importance"].items(), key=lambda kv: -kv[1])
        lines.append("knobs that matter (share of val_bpb variance, fANOVA): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in top[:8]))
    else:
        lines.append("knob importance: not yet (needs 4 scored trials with this code)")
    if info["region"]:
        lines.append("best region (best fifth of trials): "
                     + ", ".join(f"{k} {lo:g}..{hi:g}" if lo != hi else f"{k} {lo:g}" for k, (lo, hi) in info["region"].items()))
    lines += [f"next suggestion: {proposal.description}",
              "as a unified diff against the current train.py (usable as it is):", proposal.diff.rstrip("\n"),
              "searched space: " + "; ".join(info["space"])]
    return "\n".join(lines)
