"""``--agent hybrid``: the optimiser proposes, a model contributes a share of the trials.

Of every 10 trials (files the sandbox ran, repeats left out), 3 (the 3rd, 6th and 9th) come from
the second agent, by default the embedded local model choosing one knob move from the current
best (:class:`harness.agents.local.LocalAgent`), the rest from the optimiser
(:class:`harness.agents.optimiser_agent.OptimiserAgent`, TPE). Both learn from the same ledger:
the model sees the optimiser's trials in its history, and every move the model makes is a trial
for the optimiser. The split (about 30% from the model) follows Ferreira et al.,
arXiv 2603.24647, whose hybrid let an LLM propose ~30% of the trials from the optimiser's state.
When the model fails to give a proposal, the optimiser proposes instead (recorded in the reason).
"""

from __future__ import annotations

from .base import AgentError, Context, Proposal

#: trial indices (mod 10) proposed by the model
MODEL_SLOTS = (2, 5, 8)
#: the optimiser's sampler in ``--agent hybrid``
SAMPLER = "tpe"


class HybridAgent:
    """Optimiser + model. ``optimiser`` and ``model`` are agents; ``name`` is the spec recorded."""

    def __init__(self, optimiser, model, name: str = "hybrid"):
        self.optimiser, self.model, self.name = optimiser, model, name

    def propose(self, context: Context) -> Proposal:
        """The model's proposal on its slots (the optimiser's when the model fails), else the
        optimiser's.

        Raises:
            AgentError: the optimiser could not propose.
        """
        ran = len({r.get("file_key") for r in context.history if r.get("run_s") is not None and not r.get("repeat_of")})
        if ran % 10 in MODEL_SLOTS:
            try:
                return self.model.propose(context)
            except AgentError as exc:
                proposal = self.optimiser.propose(context)
                knob = dict(proposal.knob or {})
                knob["reason"] = f"{knob.get('reason', '')}; the model failed ({exc}), the optimiser proposed"
                return Proposal(proposal.description, proposal.diff, proposal.format, knob,
                                usage=getattr(exc, "usage", proposal.usage))
        return self.optimiser.propose(context)
