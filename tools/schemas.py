"""JSON schemas of the agent-facing tools, in a neutral shape ``{name, description, parameters}``
that each model backend wraps in its own wire format (Anthropic ``input_schema``, OpenAI
``function.parameters``) and that an MCP server can serve as is."""

from __future__ import annotations

#: the arguments of a tool about one experiment
EXPERIMENT_NUMBER = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 1, "description": "the experiment number"}},
    "required": ["n"],
}

READ_FILE = {
    "name": "read_file",
    "description": ("Read one file of the sandbox: program.md (the research program), train.py (the current best "
                    "version, the file you edit), prepare.py (read-only: data, tokenizer, evaluate_bpb, TIME_BUDGET) "
                    "or notes.md (your notes). No other file can be read."),
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "program.md | train.py | prepare.py | notes.md"}},
        "required": ["path"],
    },
}

LIST_EXPERIMENTS = {
    "name": "list_experiments",
    "description": "The ledger as text: one line per experiment (number, outcome, val_bpb, description), newest last.",
    "parameters": {
        "type": "object",
        "properties": {"last_n": {"type": "integer", "minimum": 1, "description": "only the last N experiments (default 20)"}},
    },
}

SHOW_EXPERIMENT = {
    "name": "show_experiment",
    "description": ("One experiment in full: description, outcome, val_bpb, why it failed, its diff, and the tail of "
                    "its run log (crash tracebacks included)."),
    "parameters": EXPERIMENT_NUMBER,
}

PROPOSE_EDIT = {
    "name": "propose_edit",
    "description": (
        "Propose the next experiment: a one-line description and ONE edit of train.py, given as exactly one of "
        "`diff` (a unified diff against the current train.py: '--- a/train.py', '+++ b/train.py', '@@ -l,n +l,n @@' "
        "hunks with exact context lines), `search_replace` (blocks '<<<<<<< SEARCH' / exact current lines / "
        "'=======' / new lines / '>>>>>>> REPLACE') or `whole_file` (the complete new train.py). The edit is "
        "checked at once: the answer is 'accepted' (the experiment will run) or every reason it was refused, "
        "so you can fix it and call propose_edit again."),
    "parameters": {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": "one line: what you changed and why"},
            "diff": {"type": "string", "description": "a unified diff against the current train.py"},
            "search_replace": {"type": "string", "description": "one or more SEARCH/REPLACE blocks"},
            "whole_file": {"type": "string", "description": "the complete new content of the file"},
            "path": {"type": "string", "description": "the file for search_replace/whole_file (default train.py)"},
        },
        "required": ["description"],
    },
}

WRITE_NOTES = {
    "name": "write_notes",
    "description": ("Append text to notes.md, your memory across experiments (it is shown to you at the start of "
                    "every experiment). Keep it short: insights, dead ends, ideas to try next."),
    "parameters": {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "what to append"}},
        "required": ["text"],
    },
}

TRAINING_CURVE = {
    "name": "training_curve",
    "description": ("One experiment's training loss at 10%, 20%, ..., 100% of the time budget, beside the best's: "
                    "how fast a change learns and whether it was still improving when time ran out."),
    "parameters": EXPERIMENT_NUMBER,
}

ASK_OPTIMISER = {
    "name": "ask_optimiser",
    "description": ("Ask the model-based optimiser (Optuna TPE over train.py's ALL_CAPS knobs, learnt from every "
                    "experiment so far) for its next suggestion, as knob values and a ready unified diff, and what it "
                    "has learnt: the best trial, the best region, which knobs matter. Advice only: use it, change "
                    "it or ignore it."),
    "parameters": {
        "type": "object",
        "properties": {"sampler": {"type": "string", "enum": ["tpe", "cmaes", "random"],
                                   "description": "the optimiser's sampler (default tpe)"}},
    },
}

#: every tool, in the order they are offered to a model
ALL_TOOLS = (READ_FILE, LIST_EXPERIMENTS, SHOW_EXPERIMENT, TRAINING_CURVE, ASK_OPTIMISER, PROPOSE_EDIT, WRITE_NOTES)
