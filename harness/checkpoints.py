"""Checkpoints of kept experiments: which weights stay in ``runs/<n>/model.pt``, and the disk they use.

prepare.py saves the weights after scoring when the harness asks for it (``[run] checkpoints`` in
harness.toml, train.py itself cannot write files):

- ``"kept"`` (default): every run saves; after each decision the harness deletes the weights of
  runs that were not kept (discarded, confirmations, re-measures, failures) and, of the kept
  experiments, keeps only the newest :data:`KEEP_KEPT` (the current best and the two kept before
  it), so the disk holds at most that many checkpoints;
- ``"all"``: every run's weights stay (nothing is pruned; a night of 60 s runs of the template
  model is about 5 MB each);
- ``"none"``: no run saves.

Continue the winning recipe from its weights with ``torch.load("runs/<n>/model.pt")``: the
state_dict of the model that train.py passed to evaluate_bpb (tensors on the CPU).
"""

from __future__ import annotations

from pathlib import Path

from .runner import CHECKPOINT_NAME

MODES = ("kept", "none", "all")
#: kept experiments whose weights stay under ``"kept"``: the newest ones, the current best first
KEEP_KEPT = 3


def checkpoint_path(sandbox: Path, n: int) -> Path:
    """``runs/<n>/model.pt`` of ``sandbox``."""
    return Path(sandbox) / "runs" / str(n) / CHECKPOINT_NAME


def prune(sandbox: Path, records: list[dict], mode: str) -> list[int]:
    """Delete the checkpoints the rule of ``mode`` does not keep (see the module docstring); only
    experiments already in the ledger (``records``, trajectory objects) are touched, never a run in
    flight. Idempotent. Returns the experiment numbers whose checkpoint was deleted."""
    if mode != "kept":
        return []
    keep = {r["experiment"] for r in records if r.get("status") == "keep"}
    keep = set(sorted(keep)[-KEEP_KEPT:])
    removed = []
    for r in records:
        n = r["experiment"]
        path = checkpoint_path(sandbox, n)
        if n not in keep and path.exists():
            path.unlink(missing_ok=True)
            removed.append(n)
    return removed


def disk_use(sandbox: Path) -> tuple[int, int]:
    """(checkpoints, bytes) under ``runs/*/model.pt`` of ``sandbox``."""
    files = list((Path(sandbox) / "runs").glob(f"*/{CHECKPOINT_NAME}"))
    return len(files), sum(f.stat().st_size for f in files if f.exists())


def checkpoints_text(sandbox: Path, mode: str) -> str:
    """``checkpoints (kept): 3 files, 15.2 MB in runs/*/model.pt; the newest 3 kept experiments stay``."""
    count, size = disk_use(sandbox)
    rule = {"kept": f"the newest {KEEP_KEPT} kept experiments stay", "all": "every run's weights stay",
            "none": "none are saved"}[mode]
    return f"checkpoints ({mode}): {count} file{'s' if count != 1 else ''}, {size / 1e6:.1f} MB in runs/*/model.pt; {rule}"
