"""``--agent optuna`` (TPE), ``optuna:cmaes``, ``optuna:random``: the optimiser as an agent, no LLM.

Each proposal sets the searched knobs of the current best train.py to the optimiser's next point
(:mod:`harness.optimiser`), learnt from every trial in the ledger, so a restarted harness goes on
with the same search. A point whose file already ran is asked again (up to 20 times).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .base import AgentError, Context, Proposal

MAX_ASKS = 20


class OptimiserAgent:
    """Proposals from :class:`harness.optimiser.Optimiser`.

    Args:
        sampler: ``tpe``, ``cmaes`` or ``random``.
        seed: the optimiser's base seed (None: 0; the search is deterministic given the ledger).
        settings: other :class:`harness.optimiser.Optimiser` arguments (``startup``, ``population``).
    """

    def __init__(self, sampler: str = "tpe", seed: Optional[int] = None, **settings):
        from ..optimiser import Optimiser

        self.optimiser = Optimiser(sampler, seed or 0, **settings)
        self.name = "optuna" if sampler == "tpe" else f"optuna:{sampler}"
        self._read = None

    def propose(self, context: Context) -> Proposal:
        """The optimiser's next untried point as a ``trial`` proposal against the current best.

        Raises:
            AgentError: no sandbox to read the ledger's files from, train.py does not parse or has
                no searchable knob, or 20 asks gave only files that already ran.
        """
        return self.advise(context)[0]

    def advise(self, context: Context, explain: bool = False) -> tuple[Proposal, dict]:
        """:meth:`propose`, and with ``explain`` what the optimiser learnt
        (:func:`harness.optimiser.learnt`, plus ``space``: the searched dimensions as text)."""
        from ..decisions import file_key
        from ..knobs import KnobError, set_knobs
        from ..optimiser import GitFiles, OptimiserError, knob_values, learnt, search_space, trials
        from ..patch import make_unified_diff

        if context.sandbox is None:
            raise AgentError("the optimiser reads past trials from the sandbox's git; no sandbox was given")
        if self._read is None or self._read.sandbox != Path(context.sandbox):
            self._read = GitFiles(context.sandbox)
        source = context.files["train.py"]
        try:
            past, baseline = trials(context.history, self._read, source)
        except SyntaxError as exc:
            raise AgentError(f"train.py does not parse: {exc}") from None
        current = knob_values(source)  # a knob the code no longer has is not searched
        space = {n: d for n, d in search_space(baseline, tuple(t.params for t in past)).items() if n in current}
        ran = context.taken()
        for attempt in range(MAX_ASKS):
            try:
                point = self.optimiser.suggest(space, past, attempt)
                new, changed = set_knobs(source, point.params)
            except (OptimiserError, KnobError) as exc:
                raise AgentError(str(exc)) from None
            if changed and file_key({**context.files, "train.py": new}) not in ran:
                best = min((t.value for t in past if not t.penalised), default=None)
                reason = (f"{point.sampler} after {point.trials} trials"
                          + (f" (best trial {best:.4f})" if best is not None else "")
                          + (f"; {point.note}" if point.note else ""))
                head = f"{self.name} trial {point.trials + 1}: "
                proposal = Proposal(head + ", ".join(changed), make_unified_diff(source, new), format="trial",
                                    knob={"knob": f"{len(changed)} knobs", "action": point.sampler, "reason": reason,
                                          "params": point.params})
                info = {**learnt(space, past), "space": [d.text() for d in space.values()]} if explain else {}
                return proposal, info
        raise AgentError(f"the optimiser suggested only files that already ran in {MAX_ASKS} asks; "
                         "widen the search (edit train.py's knobs) or use an LLM agent")
