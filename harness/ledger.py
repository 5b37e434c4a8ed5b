"""The ledger: ``results.tsv`` (Karpathy's five columns) and ``trajectory.jsonl`` (one JSON object
per experiment), written by the harness only.

Each experiment appends one line to each file under a :mod:`filelock` lock, then flushes and
fsyncs both before the next experiment starts, so a crash loses at most the experiment in flight.
``trajectory.jsonl`` is written first and is the record of truth; ``results.tsv`` is a view derived
from it, the one autoresearch's analysis tools read: ``commit val_bpb memory_gb status
description``, tab-separated, val_bpb with 6 decimals and memory_gb with 1, crashes as
``0.000000`` and ``0.0``. After a crash, :meth:`Ledger.repair` cuts a torn last line and rebuilds
the missing tail of results.tsv from trajectory.jsonl, so the two always agree row for row.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from filelock import FileLock

from .faults import point

RESULTS_NAME = "results.tsv"
TRAJECTORY_NAME = "trajectory.jsonl"
RESULTS_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"

#: Outcome taxonomy (DESIGN.md) -> results.tsv status, the one list of outcomes. ``keep`` means the
#: row advanced the branch; a repeat of a file already run (``confirmation`` of a candidate,
#: ``remeasure`` of the best, baseline repeats) and a ``duplicate`` that never ran are ``discard``:
#: they did not advance it. Anything not scored is a ``crash`` row.
STATUS_OF = {
    "improved": "keep",
    "not_improved": "discard",
    "confirmation": "discard",
    "remeasure": "discard",
    "duplicate": "discard",
    "stale": "discard",
    "over_budget": "discard",
    "integrity_violation": "discard",
    "patch_failed": "crash",
    "rail_blocked": "crash",
    "syntax_error": "crash",
    "crash": "crash",
    "oom": "crash",
    "nan": "crash",
    "timeout": "crash",
    "missing_metric": "crash",
    "preempted": "crash",
    "llm_error": "crash",
    "interrupted": "crash",
}


class LedgerError(Exception):
    """The ledger could not be written (disk full, permissions); nothing partial was kept."""


@dataclass
class ExperimentRecord:
    """One experiment as recorded in trajectory.jsonl (fields of DESIGN.md, plus a few).

    ``commit`` is the full sha of the experiment's commit, or None when the proposal never became
    a commit (``patch_failed``, ``rail_blocked``, ``syntax_error``, ``llm_error``, ``duplicate``,
    ``stale``: a proposal asked ahead that no longer fits the best, :mod:`harness.pipeline`); a
    repeat (``repeat_of`` set: a confirmation or re-measure) carries the sha of the commit it ran
    again. Seconds are wall clock; ``peak_mem_gb`` as in :class:`harness.runner.RunResult`.

    What the run did: ``steps`` (training batches drawn), ``tokens`` (training tokens),
    ``tokens_per_s`` (tokens / train_s), ``mfu`` (model FLOPs utilisation, 0-1, CUDA only),
    ``gpu_clock_mhz`` (mean SM clock, NVML), ``load_1m`` (the machine's 1-minute load average
    when the run started), ``curve`` (training loss at 10%..100% of the time budget,
    :mod:`harness.curves`), ``sample_s`` (seconds spent writing ``runs/<n>/sample.txt`` after
    scoring), ``checkpoint_bytes`` (size of the weights saved to ``runs/<n>/model.pt``; the file
    may be pruned later, :mod:`harness.checkpoints`), ``gpu_energy_j``/``cpu_energy_j`` (joules,
    None: not measured) and ``gpu_s`` (GPU-seconds) of :mod:`harness.energy`. Decisions (:mod:`harness.decisions`): ``file_key`` (the editable files,
    comments and formatting ignored), ``seed`` (the SEED a repeat ran with, None: the committed
    one), ``decision`` (the evidence: best figure, noise, delta, z, runs, reason), ``drift`` (a
    re-measure of the best that moved beyond the noise).
    """

    experiment: int
    outcome: str
    description: str
    agent: str
    commit: Optional[str] = None
    parent: Optional[str] = None
    val_bpb: Optional[float] = None
    parent_val_bpb: Optional[float] = None
    proposal_format: Optional[str] = None
    rail_verdicts: list = field(default_factory=list)
    started_at: str = ""
    wall_s: float = 0.0
    run_s: Optional[float] = None
    train_s: Optional[float] = None
    peak_mem_gb: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_s: float = 0.0
    retries: int = 0
    detail: str = ""
    knob: Optional[dict] = None
    retry_of: Optional[int] = None
    llm_down: bool = False
    file_key: Optional[str] = None
    repeat_of: Optional[int] = None
    seed: Optional[int] = None
    decision: Optional[dict] = None
    drift: Optional[dict] = None
    steps: Optional[int] = None
    tokens: Optional[int] = None
    tokens_per_s: Optional[float] = None
    mfu: Optional[float] = None
    gpu_clock_mhz: Optional[float] = None
    load_1m: Optional[float] = None
    curve: Optional[list] = None
    sample_s: Optional[float] = None
    checkpoint_bytes: Optional[int] = None
    gpu_energy_j: Optional[float] = None
    cpu_energy_j: Optional[float] = None
    gpu_s: Optional[float] = None

    @classmethod
    def from_json(cls, data: dict) -> "ExperimentRecord":
        """The record of a trajectory object (``status`` and unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def status(self) -> str:
        """``keep``, ``discard`` or ``crash`` (from :data:`STATUS_OF`)."""
        return STATUS_OF[self.outcome]

    def to_json(self) -> dict:
        """The trajectory object (``status`` included)."""
        return {**asdict(self), "status": self.status}

    def results_row(self) -> str:
        """The results.tsv line (tab-separated, newline-terminated)."""
        return results_row(self.to_json())


def results_row(rec: dict) -> str:
    """The results.tsv line of trajectory object ``rec`` (tab-separated, newline-terminated)."""
    status = STATUS_OF[rec["outcome"]]
    scored = rec.get("val_bpb") is not None and status != "crash"
    desc = " ".join(str(rec.get("description", "")).replace("\t", " ").split()) or "-"
    return "\t".join([
        (rec.get("commit") or "-")[:7],
        f"{rec['val_bpb']:.6f}" if scored else "0.000000",
        f"{rec.get('peak_mem_gb') or 0.0:.1f}" if scored else "0.0",
        status,
        desc,
    ]) + "\n"


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


class Ledger:
    """results.tsv + trajectory.jsonl of one sandbox.

    Args:
        sandbox: the sandbox folder; the lock file is ``.harness/ledger.lock`` inside it.
    """

    def __init__(self, sandbox: Path):
        self.sandbox = Path(sandbox)
        self.results_path = self.sandbox / RESULTS_NAME
        self.trajectory_path = self.sandbox / TRAJECTORY_NAME
        (self.sandbox / ".harness").mkdir(exist_ok=True)
        self.lock = FileLock(str(self.sandbox / ".harness" / "ledger.lock"))
        self._cache: tuple = (None, 0, 0, [])  # inode, bytes parsed, mtime then, the objects

    def append(self, record: ExperimentRecord) -> None:
        """Append ``record`` to both files, fsynced, under the ledger lock.

        Raises:
            LedgerError: a write failed (for example the disk is full); a partially written line
                is truncated away so the files stay parseable.
        """
        with self.lock:
            sizes = {p: (p.stat().st_size if p.exists() else None)
                     for p in (self.trajectory_path, self.results_path)}
            try:
                if sizes[self.results_path] in (None, 0):
                    _append(self.results_path, RESULTS_HEADER)
                _append(self.trajectory_path, json.dumps(record.to_json(), sort_keys=True) + "\n")
                point("between_ledger_files")
                _append(self.results_path, record.results_row())
            except OSError as exc:
                for path, size in sizes.items():
                    try:
                        if size is None:
                            path.unlink(missing_ok=True)
                        else:
                            os.truncate(path, size)
                    except OSError:
                        pass
                raise LedgerError(
                    f"could not write the ledger in {self.sandbox} ({exc}); nothing of experiment "
                    f"{record.experiment} was recorded. Free disk space or fix permissions, then "
                    "`harness start` again."
                ) from exc

    def repair(self) -> list[str]:
        """Make the files whole again after a crash; returns what was repaired (empty: nothing).

        A torn last line of trajectory.jsonl (a write cut short) is cut off; results.tsv is then
        made to hold exactly one row per trajectory object, in order: missing rows at its end are
        appended from trajectory.jsonl; any other difference (rows that trajectory.jsonl does not
        have, edited rows) rewrites it from trajectory.jsonl, the old file kept as
        ``.harness/results.tsv.<epoch s>.bak``.

        Raises:
            LedgerError: a file could not be written.
        """
        done = []
        with self.lock:
            try:
                if _cut_torn_tail(self.trajectory_path):
                    done.append("cut a torn last line of trajectory.jsonl")
                expected = [results_row(r) for r in self._parse()]
                on_disk = self.results_path.read_text(encoding="utf-8") if self.results_path.exists() else ""
                actual = on_disk[:on_disk.rfind("\n") + 1]  # without a torn last row
                rows = actual.splitlines(keepends=True)[1:]
                if not expected and not actual:
                    return done
                if actual.startswith(RESULTS_HEADER) and rows == expected[:len(rows)]:
                    if actual != on_disk:
                        os.truncate(self.results_path, len(actual.encode("utf-8")))
                        done.append("cut a torn last row of results.tsv")
                    missing = expected[len(rows):]
                    if missing:
                        _append(self.results_path, "".join(missing))
                        done.append(f"added {len(missing)} results.tsv row(s) that trajectory.jsonl had")
                    return done
                if self.results_path.exists():
                    backup = self.sandbox / ".harness" / f"{RESULTS_NAME}.{int(time.time())}.bak"
                    os.replace(self.results_path, backup)
                    done.append(f"results.tsv disagreed with trajectory.jsonl; rebuilt it (old file: {backup})")
                tmp = self.results_path.with_name(RESULTS_NAME + ".tmp")
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(RESULTS_HEADER + "".join(expected))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.results_path)
            except OSError as exc:
                raise LedgerError(f"could not repair the ledger in {self.sandbox} ({exc}); free disk space or "
                                  "fix permissions, then `harness start` again.") from exc
        return done

    def records(self) -> list[dict]:
        """All trajectory objects in order (a torn last line, from a crash, is skipped). The file is
        append-only between repairs: what was parsed before is kept, and only lines appended since
        are parsed (a file that shrank or changed in place is parsed again whole). The objects are
        shared between calls: read them, do not change them."""
        with self.lock:
            return list(self._parse())

    def _parse(self) -> list[dict]:
        try:
            st = self.trajectory_path.stat()
        except FileNotFoundError:
            self._cache = (None, 0, 0, [])
            return []
        ino, parsed, mtime, records = self._cache
        if ino != st.st_ino or st.st_size < parsed or (st.st_size == parsed and st.st_mtime_ns != mtime):
            parsed, records = 0, []  # replaced, cut or changed in place: parse it again whole
        if st.st_size > parsed:
            with open(self.trajectory_path, "rb") as fh:
                fh.seek(parsed)
                data = fh.read()
            whole = data[:data.rfind(b"\n") + 1]  # a torn last line waits until it is complete (or cut)
            records = records + [rec for rec in map(_loads, whole.decode("utf-8").splitlines()) if rec is not None]
            parsed += len(whole)
        self._cache = (st.st_ino, parsed, st.st_mtime_ns, records)
        return records

    def next_experiment(self) -> int:
        """The number of the next experiment (1 for a new sandbox)."""
        return next_number(self.records())

    def best(self) -> tuple[Optional[float], Optional[str]]:
        """(the best's figure, its commit) so far, or (None, None); see :func:`best_kept`."""
        return best_kept(self.records())


def _loads(line: str) -> Optional[dict]:
    try:
        return json.loads(line)
    except ValueError:
        return None


def next_number(records: list[dict]) -> int:
    """The number of the experiment after trajectory objects ``records`` (1 for none)."""
    return (max(r["experiment"] for r in records) + 1) if records else 1


def best_kept(records: list[dict]) -> tuple[Optional[float], Optional[str]]:
    """(the best's figure in bits per byte, its commit) among trajectory objects ``records``, or
    (None, None). The best is the last kept experiment (the branch head: every keep beat the one
    before); its figure is the mean of its file's runs (:func:`harness.decisions.best_estimate`)."""
    from .decisions import best_estimate

    est = best_estimate(records)
    return (None, None) if est is None else (est.val_bpb, est.commit)


def _cut_torn_tail(path: Path) -> bool:
    """Truncate ``path`` after its last newline (a line written only in part has none); True when
    something was cut."""
    if not path.exists():
        return False
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        os.truncate(path, keep)
        return True
    return False
