"""The prompt of an API-model agent: a stable prefix (rules, program.md, the current best files) and
one user message per experiment (history summary, last crash, notes, the task).

The size stays flat as the history grows: the last :data:`RECENT` experiments get a line each;
older ones are folded into counts per outcome, the kept ones (the path to the best), and as many
of the rest as fit in :data:`OLDER_CHARS`; notes and the crash log are cut to a fixed tail. The
tools (list_experiments, show_experiment, read_file) give the model everything that was cut.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

from ..curves import summary
from .base import Context

RECENT = 8
OLDER_CHARS = 800
NOTES_CHARS = 1000
#: lines of an adopted checkout's own results.tsv shown to the agent
TRIED_LINES = 20
CRASH_LOG_LINES, CRASH_LOG_CHARS = 15, 1200
CRASHES = ("crash", "oom", "nan", "timeout", "missing_metric")

RULES = """You are an autonomous ML researcher. You improve `train.py`, a small GPT language-model trainer, \
one experiment at a time. Each experiment trains for a fixed time budget and is scored by val_bpb \
(validation bits per byte, lower is better). val_bpb is noisy (the steps that fit in the budget, the seed): \
the harness runs a promising change again with other seeds and keeps it only when its mean beats the best's by \
clearly more than the measured noise; a change whose file equals one already run is refused as a duplicate.

How one experiment works:
1. Read what you need with the tools (read_file, list_experiments, show_experiment, training_curve). The \
current best train.py is below; you rarely need to read it again. ask_optimiser gives a model-based \
optimiser's next knob values and what it learnt from every experiment so far (which knobs matter, the best \
region): use it or ignore it.
2. Call propose_edit once with a one-line description and ONE edit of train.py. Anything is fair game: \
hyperparameters, architecture, optimizer, schedule, initialisation.
3. If propose_edit answers "refused", read every reason, fix the edit and call it again. When it answers \
"accepted", stop: the harness runs the experiment and shows you the result next time.
Optionally record insights for later with write_notes (short).

Rules the harness enforces: only train.py may change; prepare.py (data, tokenizer, evaluate_bpb, \
TIME_BUDGET) is read-only; do not touch the evaluation, the clock, the data split, the environment, \
the network or other files; the edited file must parse. A diff's context and removed lines must be \
copied exactly from the current train.py. Prefer small, exact edits with a clear reason; do not \
repeat a change that was already tried from the same starting point."""

FORMAT_HELP = {
    "udiff": "a unified diff in `diff` ('--- a/train.py', '+++ b/train.py', '@@ -l,n +l,n @@' hunks with 3 lines "
             "of exact context)",
    "search_replace": "SEARCH/REPLACE blocks in `search_replace` ('<<<<<<< SEARCH', exact current lines, "
                      "'=======', new lines, '>>>>>>> REPLACE')",
    "whole": "the complete new train.py in `whole_file`",
}


def stable_prefix(context: Context) -> list[str]:
    """The system blocks: the rules, then program.md and the current best files. They change only
    when an experiment is kept, so API prompt caching can reuse them."""
    files = "\n\n".join(f"Current best {name} (your edit applies to exactly this text):\n```python\n{text}```"
                        for name, text in context.files.items())
    return [RULES, f"program.md (the human's research program):\n{context.program.strip()}\n\n{files}"]


def older_summary(older: list[dict], budget: int = OLDER_CHARS) -> list[str]:
    """Experiments before the recent window, in at most about ``budget`` characters: counts per
    outcome, every kept one that fits (newest first), then the others that fit."""
    from tools.experiments import experiment_line

    counts = Counter(r["outcome"] for r in older)
    lines = [f"Experiments {older[0]['experiment']}-{older[-1]['experiment']} in short ("
             + ", ".join(f"{n} {o}" for o, n in counts.most_common()) + "):"]
    kept = [r for r in older if r.get("status") == "keep"]
    others = [r for r in older if r.get("status") != "keep"]
    chosen, used = [], 0
    for group, width in ((kept, 60), (others, 40)):
        for rec in reversed(group):
            line = experiment_line(rec, width)
            if used + len(line) + 1 > budget:
                break
            chosen.append((rec["experiment"], line))
            used += len(line) + 1
    shown = sorted(chosen)
    lines += [line for _, line in shown]
    if len(shown) < len(older):
        lines.append(f"({len(older) - len(shown)} more not shown: list_experiments and show_experiment have them all)")
    return lines


def history_summary(history: list[dict]) -> str:
    """Every experiment's outcome in bounded text: older ones folded (:func:`older_summary`), the
    last :data:`RECENT` one line each (number, outcome, val_bpb, description)."""
    from tools.experiments import experiment_line

    if not history:
        return "(no experiments yet)"
    older, recent = history[:-RECENT], history[-RECENT:]
    lines = older_summary(older) if older else []
    lines.append("Recent experiments (number, outcome, val_bpb, description):")
    lines += [experiment_line(r, 100) for r in recent]
    return "\n".join(lines)


def tried_summary(tried, limit: int = TRIED_LINES) -> str:
    """The adopted checkout's own results.tsv rows in at most ``limit`` lines (kept rows first,
    then the newest others): status, val_bpb, description."""
    rows = list(tried)
    kept = [r for r in rows if r.get("status") == "keep"]
    others = [r for r in rows if r.get("status") != "keep"]
    shown = (kept + others[::-1])[:limit]
    lines = [f"Tried in this checkout before the harness adopted it ({len(rows)} rows of its results.tsv; "
             "recreating one of these files is refused as a duplicate):"]
    for r in shown:
        val = f"{r['val_bpb']:.6f}" if isinstance(r.get("val_bpb"), float) else "-"
        lines.append(f"- {r.get('status', '?')} {val} {str(r.get('description', ''))[:80]}")
    if len(shown) < len(rows):
        lines.append(f"({len(rows) - len(shown)} more in results.autoresearch.tsv)")
    return "\n".join(lines)


def last_crash(history: list[dict], sandbox: Optional[Path]) -> str:
    """The tail of the log of the newest crashed run among the recent ones (``""`` when none)."""
    from tools.experiments import log_tail

    rec = next((r for r in reversed(history[-RECENT:]) if r["outcome"] in CRASHES), None)
    if rec is None:
        return ""
    tail = log_tail(sandbox, rec["experiment"], CRASH_LOG_LINES, CRASH_LOG_CHARS) or rec.get("detail", "")[-CRASH_LOG_CHARS:]
    return f"Experiment {rec['experiment']} ended in {rec['outcome']}; the end of its log:\n{tail}"


def notes_tail(notes: str, limit: int = NOTES_CHARS) -> str:
    """The last ``limit`` characters of the notes, cut at a line start, saying so when cut."""
    if len(notes) <= limit:
        return notes
    tail = notes[-limit:]
    tail = tail[tail.find("\n") + 1:] if "\n" in tail else tail
    return f"(older notes cut; read_file notes.md has them all)\n{tail}"


def task_message(context: Context, edit_format: str = "udiff", sandbox: Optional[Path] = None) -> str:
    """The per-experiment user message: best so far, history, last crash, notes, what to do now."""
    best = "none yet" if context.best_val_bpb is None else f"{context.best_val_bpb:.6f}"
    noise = f" {context.noise.text()}: smaller differences are chance." if getattr(context.noise, "sd", None) else ""
    parts = [f"Experiment {context.experiment}. Best val_bpb so far: {best}.{noise}", "",
             "History:", history_summary(context.history)]
    curves = summary(context.history)
    if curves:
        parts += ["", curves]
    if context.tried:
        parts += ["", tried_summary(context.tried)]
    if context.pending:
        parts += ["", "Running now (results not known yet; do not propose the same):",
                  *(f"- {p['description']}" for p in context.pending)]
    crash = last_crash(context.history, sandbox)
    if crash:
        parts += ["", crash]
    notes = (context.notes or "").strip()
    if notes:
        parts += ["", f"Your notes (notes.md):\n{notes_tail(notes)}"]
    parts += ["", f"Now propose experiment {context.experiment} with propose_edit, preferably as "
              f"{FORMAT_HELP.get(edit_format, FORMAT_HELP['udiff'])}."]
    return "\n".join(parts)
