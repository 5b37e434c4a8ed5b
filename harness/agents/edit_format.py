"""Which edit format to ask an API model for, from its apply rate in the ledger.

Every agent starts with unified diffs. Replaying the ledger's records of this agent in order, the
apply rate over the last :data:`WINDOW` experiments since the last switch is accepted proposals
divided by propose attempts (an accepted one, plus the refused ones counted in ``retries``); when
it falls below :data:`MIN_APPLY_RATE` the agent moves to the next format (udiff -> search_replace
-> whole). The choice is derived from the ledger alone, so a restarted harness makes the same one.
"""

from __future__ import annotations

ORDER = ("udiff", "search_replace", "whole")
WINDOW = 5
MIN_APPLY_RATE = 0.5


def choose_format(history: list[dict], agent: str, start: str = "udiff") -> tuple[str, str]:
    """``(format, why)``: the format to ask for now, and a sentence when the last experiment's
    record caused a switch (``""`` otherwise)."""
    level, window, why = ORDER.index(start) if start in ORDER else 0, [], ""
    for rec in history:
        if rec.get("agent") != agent:
            continue
        accepted = int(rec.get("proposal_format") in ORDER)
        attempts = accepted + int(rec.get("retries") or 0)
        if attempts == 0:  # an API failure before any proposal says nothing about the format
            why = ""
            continue
        window = (window + [(accepted, attempts)])[-WINDOW:]
        why = ""
        rate = sum(a for a, _ in window) / sum(t for _, t in window)
        if len(window) == WINDOW and rate < MIN_APPLY_RATE and level + 1 < len(ORDER):
            why = (f"{ORDER[level]} edits applied in {sum(a for a, _ in window)} of {sum(t for _, t in window)} "
                   f"tries over the last {WINDOW} experiments; switching to {ORDER[level + 1]}")
            level, window = level + 1, []
    return ORDER[level], why
