"""Prompt growth of the API agent: prompt tokens at experiment 100 divided by experiment 10.

Builds a scripted history of 100 experiments (deterministic: every 7th improves, every 5th
crashes with a traceback in its detail, the rest do not improve; descriptions of 50-110
characters; a 150-character note written every 3rd experiment), then renders, for experiments
10, 25, 50, 100 (and 200 for a look further), the whole first request an API agent sends: the
system blocks (rules, program.md, the template train.py), the per-experiment message (history
summary, last crash, notes) and the JSON of the tool schemas. train.py is held fixed so that only
the history-dependent parts can grow.

Tokens are counted with the tokenizer of the embedded model (SmolLM2, through llama-cpp-python
with ``vocab_only``), or, with ``--chars4`` or when that is unavailable, approximated as
characters / 4. The last line is ``prompt_growth=<tokens@100 / tokens@10> ...``.

Usage: python benchmarks/prompt_growth.py [--chars4]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IDEAS = ["lower LEARNING_RATE 3e-3 -> 2e-3", "GELU instead of ReLU^2 in the MLP",
         "add a learned gain to rms_norm in every block and before the head",
         "raise WARMDOWN_FRAC 0.3 -> 0.5 for a longer linear decay at the end of the budget",
         "tie the input embedding and the output head weights", "DEPTH 4 -> 3 and N_EMBD 128 -> 160",
         "SwiGLU MLP with hidden width 8/3 * N_EMBD instead of ReLU^2", "BATCH_SIZE 8 -> 12",
         "value residual: mix the first block's values into every later block's attention",
         "zero-init the attention output projection only, normal init elsewhere"]
TRACEBACK = ("Traceback (most recent call last):\n  File \"train.py\", line 141, in <module>\n    loss = model(x, y)\n"
             "  File \"train.py\", line 118, in forward\n    x = block(x, self.cos, self.sin)\n"
             "RuntimeError: mat1 and mat2 shapes cannot be multiplied (512x160 and 128x512)\n")


def scripted_history(n: int) -> tuple[list[dict], list[str]]:
    """``n`` trajectory objects and the notes written along the way."""
    history, notes, best = [], [], 2.40
    for i in range(1, n + 1):
        crash, improved = i % 5 == 0, i % 7 == 0 or i == 1
        val = None if crash else (best - 0.01 if improved else best + 0.003 * (i % 4 + 1))
        if improved and val is not None:
            best = val
        outcome = "crash" if crash else ("improved" if improved else "not_improved")
        history.append({"experiment": i, "outcome": outcome, "status": "crash" if crash else ("keep" if improved else "discard"),
                        "val_bpb": val, "description": f"{IDEAS[i % len(IDEAS)]} (variant {i})",
                        "detail": TRACEBACK if crash else "", "proposal_format": "udiff"})
        if i % 3 == 0:
            notes.append(f"## before experiment {i + 1}\nAfter {i} experiments: shape changes crash when N_EMBD and "
                         f"the head disagree; schedule changes help a little; next try idea {i % len(IDEAS)}.")
    return history, notes


def counter(chars4: bool):
    """``(name, count(text) -> int)``: the SmolLM2 tokenizer, or characters / 4."""
    if not chars4:
        try:
            from llama_cpp import Llama

            from harness.agents.local import default_model_path

            vocab = Llama(model_path=default_model_path(), vocab_only=True, verbose=False)
            return "smollm2-tokenizer", lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False))
        except Exception as exc:  # no model installed: fall back to the approximation
            print(f"(SmolLM2 tokenizer unavailable: {exc}; using characters / 4)")
    return "chars/4", lambda text: (len(text) + 3) // 4


def prompt_text(n: int, history: list[dict], notes: list[str]) -> str:
    """The first request of experiment ``n`` as text: system blocks, user message, tool schemas."""
    from harness.agents.base import Context
    from harness.agents.prompt import stable_prefix, task_message
    from tools import ALL_TOOLS

    past = history[:n - 1]
    kept = [r["val_bpb"] for r in past if r["status"] == "keep"]
    shown_notes = "\n".join(note for note in notes if int(note.split()[3]) <= n)
    ctx = Context(experiment=n, program=(ROOT / "harness" / "templates" / "program.md").read_text(encoding="utf-8"),
                  files={"train.py": (ROOT / "harness" / "templates" / "sandbox" / "train.py").read_text(encoding="utf-8")},
                  history=past, best_val_bpb=min(kept) if kept else None, notes=shown_notes)
    return "\n\n".join([*stable_prefix(ctx), task_message(ctx, "udiff"), json.dumps(list(ALL_TOOLS))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chars4", action="store_true", help="count tokens as characters / 4")
    args = ap.parse_args()
    name, count = counter(args.chars4)
    history, notes = scripted_history(200)
    tokens = {}
    for n in (10, 25, 50, 100, 200):
        text = prompt_text(n, history, notes)
        tokens[n] = count(text)
        print(f"experiment {n:>3}: {len(text):>6} chars, {tokens[n]:>5} prompt tokens ({name})")
    print(f"prompt_growth={tokens[100] / tokens[10]:.3f} tokens_10={tokens[10]} tokens_100={tokens[100]} "
          f"tokens_200={tokens[200]} counter={name}")


if __name__ == "__main__":
    main()
