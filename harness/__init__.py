"""autoresearch-harness: autonomous ML research in a git sandbox.

An agent proposes edits to ``train.py``; the harness checks them with static rails, commits them,
trains each for a fixed time budget, scores it by ``val_bpb`` (bits per byte on a fixed validation
slice, lower is better), keeps or discards it, and records the outcome in ``results.tsv`` and
``trajectory.jsonl``. Heavy dependencies (torch, libcst, SDKs) are imported lazily so that the CLI
starts fast.
"""

__version__ = "0.1.0"
