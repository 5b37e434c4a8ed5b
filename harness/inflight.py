"""The in-flight marker: ``.harness/inflight.json`` names the experiment whose git and ledger
writes are under way, so that a harness killed at any instant can be repaired on the next start
(:mod:`harness.reconcile`).

The marker is a small JSON object replaced atomically (temp file, fsync, ``os.replace``, fsync of
the folder): a reader sees the old object or the new one, never half of one. Its fields:

- ``experiment`` (int), ``phase`` (``committing`` | ``running`` | ``confirming`` | ``deciding``, or
  ``repeating`` for a re-measure of the best, which has no commit of its own);
- ``parent`` (sha the experiment's commit goes on), ``description``, ``started_at`` (epoch s),
  ``parent_val_bpb`` (best val_bpb when it started), ``proposal_format``, ``knob``, ``usage``
  (the LLM cost of the proposal), ``retry_of`` (the preempted experiment it repeats), ``attempts``;
- ``commit``: sha of the ``Status: running`` commit, from phase ``running`` on;
- ``file_key``, ``best``, ``noise_sd``, ``noise_df``: what the decision compares with, fixed at
  the commit (:mod:`harness.decisions`); ``runs``: the runs so far, from phase ``confirming`` on;
- ``record``: the complete ledger record (without its final commit sha), from phase ``deciding``
  on: the decision was taken, only git's trailers, the branch move and the row remain to write;
  ``extra``: the confirmation rows written after it.

With several runners (:mod:`harness.runners`) each experiment in flight has its own marker,
``.harness/inflight/<n>.json``, with the same fields plus ``runner`` (the runner's index) and
``worktree`` (where it runs); its ``runs`` carry their own experiment numbers (``number``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from .state import STATE_DIR

MARKER_NAME = "inflight.json"
#: folder of the markers of several runners' experiments
RUNNERS_DIR = "inflight"


def marker_path(sandbox: Path, n: Optional[int] = None) -> Path:
    """``<sandbox>/.harness/inflight.json``, or with ``n`` the marker of experiment ``n`` of
    several runners, ``<sandbox>/.harness/inflight/<n>.json``."""
    if n is None:
        return Path(sandbox) / STATE_DIR / MARKER_NAME
    return Path(sandbox) / STATE_DIR / RUNNERS_DIR / f"{n}.json"


def _path_of(sandbox: Path, marker: dict) -> Path:
    return marker_path(sandbox, marker["experiment"] if marker.get("runner") is not None else None)


def write_marker(sandbox: Path, marker: dict) -> None:
    """Atomically replace the marker with ``marker`` (JSON-serialisable); one with a ``runner``
    goes to its own file (:func:`marker_path` with its number).

    Raises:
        OSError: the file could not be written (disk full, permissions); the old marker stays.
    """
    path = _path_of(sandbox, marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(marker, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_marker(sandbox: Path) -> Optional[dict]:
    """The marker, or None when no experiment is in flight (or the file is unreadable)."""
    try:
        data = json.loads(marker_path(sandbox).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("experiment"), int) else None


def runner_markers(sandbox: Path) -> list[dict]:
    """The markers of several runners' experiments in flight, by number (unreadable ones skipped:
    a marker file is replaced atomically, so only a foreign file can be one)."""
    out = []
    for path in (Path(sandbox) / STATE_DIR / RUNNERS_DIR).glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("experiment"), int):
            out.append(data)
    return sorted(out, key=lambda m: m["experiment"])


def clear_marker(sandbox: Path, marker: Optional[dict] = None) -> None:
    """Remove the marker (the experiment is fully recorded); with ``marker``, the file that one
    was written to."""
    path = marker_path(sandbox) if marker is None else _path_of(sandbox, marker)
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
