"""A scripted agent for tests and demos: replays proposals from a JSON or JSON-lines file.

Each entry is an object with ``description`` and one of:
- ``diff``: a unified diff (sent as is, valid or not: tests use this to feed bad diffs);
- ``knob`` and ``action``: a knob change the harness writes itself (see :mod:`harness.knobs`);
- ``error``: the agent fails this turn with that message (like a model returning junk).
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import AgentError, AgentExhausted, Context, Proposal


class ScriptedAgent:
    """Replays a list of proposal entries in order, then raises :class:`AgentExhausted`.

    Args:
        entries: the entries described in the module docstring.
        name: the agent spec recorded in the ledger.
    """

    def __init__(self, entries: list[dict], name: str = "scripted"):
        self.entries = list(entries)
        self.name = name
        self._next = 0

    @classmethod
    def from_file(cls, path: str) -> "ScriptedAgent":
        """Load entries from a ``.json`` list or a ``.jsonl`` file.

        Raises:
            AgentError: the file is missing or not valid JSON.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
            entries = json.loads(text) if text.lstrip().startswith("[") else [
                json.loads(line) for line in text.splitlines() if line.strip()
            ]
        except (OSError, ValueError) as exc:
            raise AgentError(f"cannot read scripted proposals from {path}: {exc}") from None
        return cls(entries, name=f"scripted:{Path(path).name}")

    def propose(self, context: Context) -> Proposal:
        """Return the next entry as a :class:`Proposal` (``context`` is ignored)."""
        if self._next >= len(self.entries):
            raise AgentExhausted(f"all {len(self.entries)} scripted proposals were used")
        entry = self.entries[self._next]
        self._next += 1
        if "error" in entry:
            raise AgentError(str(entry["error"]))
        description = str(entry.get("description", "scripted proposal"))
        if "knob" in entry:
            from ..knobs import KnobError, apply_action
            from ..patch import make_unified_diff

            old = context.files["train.py"]
            try:
                new, what = apply_action(old, entry["knob"], entry["action"])
            except KnobError as exc:
                raise AgentError(f"scripted knob change failed: {exc}") from None
            return Proposal(description=entry.get("description", what), diff=make_unified_diff(old, new),
                            format="knob", knob={"knob": entry["knob"], "action": entry["action"]})
        return Proposal(description=description, diff=str(entry.get("diff", "")),
                        format=str(entry.get("format", "udiff")))
