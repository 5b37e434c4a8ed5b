"""A small price table for named API models, to enforce ``--max-llm-usd``.

Prices are list prices in US dollars per million tokens (input, output) as published by the
providers when this table was written; check them before relying on the budget. Cached prompt
tokens are counted at the full input price, so the spend shown is an upper bound. A model not in
the table is counted in tokens only: its cost is None, never an error.
"""

from __future__ import annotations

from typing import Optional

#: model name prefix -> (USD per million prompt tokens, USD per million completion tokens)
PRICES_PER_MTOK = {
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-5": (1.25, 10.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4o": (2.5, 10.0),
    "glm-4.6": (0.6, 2.2),
    "glm-4.5-air": (0.2, 1.1),
    "glm-4.5": (0.6, 2.2),
}


def price(model: str) -> Optional[tuple[float, float]]:
    """(prompt, completion) USD per million tokens for ``model`` (longest matching prefix), or None."""
    name = model.lower().rsplit("/", 1)[-1]
    matches = [p for p in PRICES_PER_MTOK if name.startswith(p)]
    return PRICES_PER_MTOK[max(matches, key=len)] if matches else None


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> Optional[float]:
    """Dollars for that many tokens of ``model``, or None when its price is unknown."""
    p = price(model)
    if p is None:
        return None
    return (prompt_tokens * p[0] + completion_tokens * p[1]) / 1e6
