"""Several runners on one machine: where each experiment runs, and the pool that keeps them busy.

``harness start --gpus 0,1,2,3`` (or ``--workers N`` on CPUs) runs that many experiments at once.
Each runner is a :class:`Place`: its own linked git work tree per experiment
(``.harness/worktrees/<n>``, checked out at the experiment's commit, which is made off the branch
under ``refs/autoresearch/running/<n>``), its device (``CUDA_VISIBLE_DEVICES=<id>`` for a GPU;
for CPU workers a share of the cores, pinned, with the thread counts set to match, and no GPU) and
its index. The experiment core (:mod:`harness.core`) decides, moves the branch and writes the
ledger for all of them, one at a time under one lock; only the training runs in parallel.

Rules that keep the record honest with several runners (README "Keeping the accelerator busy"):

- each experiment compares with the best it started from; when another experiment was kept
  while it ran and it beats its starting point, it is not kept off the branch: it is recorded as
  not kept (the reason says why) and its edit runs again on the new best as the next experiment;
- the baseline, its repeats and the re-measures of the best run when no experiment is in flight,
  with runner 0's device and cores, so all runs of one session train on the same share;
- a confirmation run of a candidate runs on the candidate's runner with the next free number.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

#: where experiments of several runners check out their commits, under the sandbox
WORKTREES_DIR = Path(".harness") / "worktrees"


@dataclass(frozen=True)
class Place:
    """Where one run happens.

    Attributes:
        path: the work tree the command runs in (the sandbox itself, or an experiment's linked
            work tree).
        env: variables added to the run's environment (the runner's device, thread counts).
        cpus: CPU cores the run is pinned to (None: any).
        index: the runner's number, 0-based; None for the one runner of a plain session.
        label: how the runner is named to the user (``gpu 1``, ``cpus 2-3``, ``ray 0``).
        remote: where the run really happens when not on this machine (a
            :class:`harness.cluster.RayCluster`; the work tree's files are shipped), else None.
    """

    path: Path
    env: dict = field(default_factory=dict)
    cpus: Optional[tuple] = None
    index: Optional[int] = None
    label: str = "here"
    remote: object = field(default=None, compare=False)

    def at(self, path: Path) -> "Place":
        """The same runner working in ``path``."""
        return replace(self, path=Path(path))


def worktree_of(sandbox: Path, n: int) -> Path:
    """The linked work tree of experiment ``n`` of several runners."""
    return Path(sandbox) / WORKTREES_DIR / str(n)


def places_for(sandbox: Path, gpus: Optional[str] = None, workers: Optional[int] = None) -> list[Place]:
    """The runners of a session.

    Args:
        sandbox: the sandbox folder.
        gpus: ``--gpus``: comma-separated device ids (``0,1,2,3``), one runner each.
        workers: ``--workers``: that many CPU runners, the cores this process may use split into
            equal contiguous shares (the remainder to the first ones).
    Returns:
        One :class:`Place` per runner (index 0, 1, ...), or a single plain one (index None) when
        neither is given or they ask for one runner.
    Raises:
        ValueError: both given, an empty or repeated device id, fewer than 1 worker or more
            workers than cores.
    """
    sandbox = Path(sandbox)
    if gpus is not None and workers is not None:
        raise ValueError("give --gpus or --workers, not both")
    if gpus is not None:
        ids = [g.strip() for g in gpus.split(",")]
        if not all(ids) or len(set(ids)) != len(ids):
            raise ValueError(f"--gpus {gpus!r}: give distinct device ids separated by commas, e.g. 0,1,2,3")
        if len(ids) == 1:
            return [Place(sandbox, {"CUDA_VISIBLE_DEVICES": ids[0]}, label=f"gpu {ids[0]}")]
        return [Place(sandbox, {"CUDA_VISIBLE_DEVICES": g}, index=i, label=f"gpu {g}") for i, g in enumerate(ids)]
    if workers is None or workers == 1:
        return [Place(sandbox)]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if workers < 1 or workers > len(cores):
        raise ValueError(f"--workers {workers}: this machine lets the harness use {len(cores)} core(s); give 1 to "
                         f"{len(cores)}")
    share, extra = divmod(len(cores), workers)
    out, at = [], 0
    for i in range(workers):
        mine = tuple(cores[at:at + share + (1 if i < extra else 0)])
        at += len(mine)
        threads = str(len(mine))
        env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads}
        label = f"cpu {mine[0]}" if len(mine) == 1 else f"cpus {mine[0]}-{mine[-1]}"
        out.append(Place(sandbox, env, mine, i, label))
    return out


class Pool:
    """The runners' threads: at most one experiment per :class:`Place` at a time.

    An error raised by a job (a ledger that cannot be written, an abort) is kept and raised again
    in the thread that calls :meth:`free` or :meth:`wait` next, so the session ends on it.
    """

    def __init__(self, places: list[Place]):
        self.places = places
        self._busy: dict[int, threading.Thread] = {}
        self._errors: list[BaseException] = []
        self._changed = threading.Condition()

    def start(self, place: Place, job: Callable[[], object]) -> None:
        """Run ``job()`` in a new thread on ``place`` (which must be free)."""
        def work():
            try:
                job()
            except BaseException as exc:  # handed to the scheduling thread
                with self._changed:
                    self._errors.append(exc)
            finally:
                with self._changed:
                    self._busy.pop(place.index, None)
                    self._changed.notify_all()

        thread = threading.Thread(target=work, name=f"runner-{place.index}", daemon=True)
        with self._changed:
            self._busy[place.index] = thread
        thread.start()

    def busy(self) -> int:
        """How many runners have an experiment in flight."""
        with self._changed:
            return len(self._busy)

    def free(self) -> Optional[Place]:
        """A runner with nothing in flight, or None.

        Raises:
            BaseException: the first error a job raised since the last call.
        """
        with self._changed:
            self._raise()
            return next((p for p in self.places if p.index not in self._busy), None)

    def wait(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` seconds for a runner to finish its job.

        Raises:
            BaseException: the first error a job raised.
        """
        with self._changed:
            self._raise()
            if self._busy:
                self._changed.wait(timeout_s)
            self._raise()

    def drain(self, poll_s: float = 0.5, on_poll: Callable[[], None] = lambda: None) -> None:
        """Wait until no runner has a job, calling ``on_poll()`` every ``poll_s`` seconds (the
        caller's chance to pass on a stop ``now``); errors of jobs are raised as in :meth:`wait`
        once every job has ended."""
        while True:
            with self._changed:
                if not self._busy:
                    self._raise()
                    return
                self._changed.wait(poll_s)
            on_poll()

    def _raise(self) -> None:
        if self._errors:
            exc = self._errors.pop(0)
            raise exc
