"""Runs on a Ray cluster: ``harness start --ray ADDRESS``.

Each run (an experiment, a confirmation run, the baseline and its repeats) becomes one Ray task
that needs one GPU (``num_gpus=1``) on an existing cluster (``ray start``, KubeRay, SkyPilot:
README "Keeping the accelerator busy"). The session runs as many experiments at once as the
cluster declares GPUs (``--workers N`` caps it); the experiment core on this machine checks,
commits, decides and records as with local runners (:mod:`harness.runners`), only the run moves.

What a task gets and does:

- the tracked files of the run's work tree (the experiment's commit, with its seed when it is a
  confirmation run) and the prepared corpus (put in Ray's object store once per session), written
  to a fresh folder on the node;
- :func:`harness.runner.run_experiment` there: the same time box, confinement (limits, no
  network), trusted evaluation and result file as a local run, pinned to the GPU Ray gave it;
- afterwards every shipped file is hashed again: a run that changed prepare.py, train.py or the
  prepared data is an ``integrity_violation``;
- it returns the run's record, its log, result file, sample and checkpoint, which land in
  ``runs/<n>/`` here.

A task lost with its node (or its worker process) is a ``preempted`` run: the core records it
and runs the experiment once more (``retry_of``). Every node needs this package installed in the
same Python version (``pip install 'autoresearch-harness[cluster]'``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Optional

#: seconds a task may wait for its GPU on top of the hard limit before the run is given up
QUEUE_GRACE_S = 300.0
#: files of a run's folder that come back from the node
RETURNED = ("run.log", "metrics.json", "sample.txt", "model.pt")


#: at most this many seconds a warm-up task holds its GPU (see :meth:`RayCluster.warm`)
WARM_HOLD_S = 30.0
#: Ray options of a run task, and of a warm-up task, which must be shaped alike to warm a worker the
#: runs reuse. max_calls=0: a worker process runs any number of them. Ray's default for a GPU task
#: is one (a fresh worker each time, to free GPU memory the task's own process holds); the training
#: runs in a child process that exits, so the worker holds none, and reusing it saves a worker
#: start (interpreter, ray, harness imports) per run.
TASK_OPTIONS = {"num_gpus": 1, "max_retries": 0, "max_calls": 0}


class ClusterError(Exception):
    """The Ray cluster cannot be used; the message says why and what to do."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_on_node(files: dict, data: dict, corpus_dir: Optional[str], command: list, time_budget_s: float,
                hard_limit_s: float, tolerance_s: float, checkpoint: bool, env: dict,
                evaluation: str = "prepare") -> dict:
    """The body of a Ray task (also callable directly): run ``command`` on ``files`` (relative
    path -> bytes) with the prepared corpus ``data`` (relative path -> bytes, under the cache root
    as ``corpus_dir``) in a fresh folder of this node.

    Returns:
        ``{"result": RunResult fields but log_path, "tampered": [changed paths], "files":
        {name: bytes} of RETURNED}``.
    """
    from .datacache import ENV as CACHE_ENV
    from .runner import run_experiment

    work = Path(tempfile.mkdtemp(prefix="harness-task-"))
    try:
        tree, cache, run_dir = work / "tree", work / "cache", work / "run"
        shipped = {f"tree/{k}": v for k, v in files.items()}
        if corpus_dir:
            shipped.update({f"cache/{corpus_dir}/{k}": v for k, v in data.items()})
        for rel, blob in shipped.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(blob)
        tree.mkdir(exist_ok=True)
        os.environ[CACHE_ENV] = str(cache)  # the run's data root (harness.datacache.root reads it first)
        gpu = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
        res = run_experiment(command, tree, run_dir, time_budget_s, hard_limit_s, tolerance_s,
                             checkpoint=checkpoint, extra_env={**env, **gpu}, evaluation=evaluation)
        tampered = sorted(rel for rel, blob in shipped.items()
                          if not (work / rel).is_file() or _sha((work / rel).read_bytes()) != _sha(blob))
        result = {f.name: getattr(res, f.name) for f in fields(res) if f.name != "log_path"}
        back = {name: (run_dir / name).read_bytes() for name in RETURNED if (run_dir / name).is_file()}
        return {"result": result, "tampered": tampered, "files": back}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def start_worker(hold_s: float) -> int:
    """The body of a warm-up task: import what a run task imports (so its worker process is
    started and loaded), then hold the GPU ``hold_s`` seconds so that the other warm-up tasks
    cannot reuse this worker and each starts one of its own. Returns the worker's process id."""
    import importlib

    importlib.import_module(f"{__package__}.runner")  # the import a run task pays on a cold worker
    time.sleep(max(0.0, hold_s))
    return os.getpid()


class RayCluster:
    """A connection to a Ray cluster that runs a sandbox's runs.

    Args:
        address: the cluster's address (``ray://host:10001``, ``host:6379`` or ``auto``).
        sandbox: the sandbox folder (its prepared corpus is shipped once).

    Raises:
        ClusterError: ray is not installed, the cluster cannot be reached, or it declares no GPU.
    """

    def __init__(self, address: str, sandbox: Path):
        try:
            import ray
        except ImportError:
            raise ClusterError("--ray needs the ray package: pip install 'autoresearch-harness[cluster]' (on this "
                               "machine and on every node of the cluster)") from None
        self.ray, self.address, self.sandbox = ray, address, Path(sandbox)
        try:
            ray.init(address=address, log_to_driver=False, ignore_reinit_error=True,
                     namespace="autoresearch-harness")
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError ... by version
            raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}. Start one with "
                               "`ray start --head` (README: Keeping the accelerator busy) and pass its address.") from None
        self.gpus = int(ray.cluster_resources().get("GPU", 0))
        if self.gpus < 1:
            raise ClusterError(f"the Ray cluster at {address} declares no GPU; each run needs one (num_gpus=1). "
                               "Start its nodes with GPUs (or `ray start --num-gpus N` to declare them).")
        self._task = ray.remote(**TASK_OPTIONS)(run_on_node)
        self._warmer = ray.remote(**TASK_OPTIONS)(start_worker)
        self._data = None
        self.warming: list = []

    def _corpus(self):
        """(folder name under the cache root, object ref of its files) of the prepared corpus."""
        if self._data is None:
            from .datacache import corpus_dir, root

            folder = corpus_dir(self.sandbox, root(self.sandbox))
            if folder is None or not folder.is_dir():
                self._data = (None, self.ray.put({}))
            else:
                self._data = (folder.name, self.ray.put(_tree_bytes(folder)))
        return self._data

    def run(self, cfg, place, run_dir: Path, on_tick=None):
        """Run the work tree at ``place.path`` as one task; wait for it, ticking ``on_tick``
        about 4 times a second; return its :class:`harness.runner.RunResult` with the files in
        ``run_dir``. A lost node or worker gives ``preempted``.

        Raises:
            KeyboardInterrupt: (from ``on_tick``) after the task was cancelled.
        """
        from .runner import RunResult
        from .sandbox import Sandbox

        ray = self.ray
        tree = Sandbox(place.path, cfg.branch)
        tracked = tree.git.ls_files("-z").split("\0")
        files = {name: (place.path / name).read_bytes() for name in tracked if name and (place.path / name).is_file()}
        corpus, data = self._corpus()
        ref = self._task.remote(files, data, corpus, list(cfg.command), cfg.time_budget_s, cfg.hard_limit_s,
                                cfg.over_budget_tolerance_s, cfg.checkpoints != "none", dict(place.env),
                                cfg.evaluation)
        run_dir.mkdir(parents=True, exist_ok=True)
        log = run_dir / "run.log"
        start = time.monotonic()
        try:
            while not ray.wait([ref], timeout=0.25)[0]:
                elapsed = time.monotonic() - start
                if on_tick:
                    on_tick(elapsed)
                if elapsed > cfg.hard_limit_s + QUEUE_GRACE_S:
                    ray.cancel(ref, force=True)
                    log.write_text(f"the Ray task did not finish within {elapsed:.0f} s\n")
                    return RunResult("timeout", None, None, elapsed, None, 0.0, log, "",
                                     f"the Ray task did not end within the hard limit plus {QUEUE_GRACE_S:.0f} s of "
                                     "waiting for a GPU")
            out = ray.get(ref)
        except KeyboardInterrupt:
            ray.cancel(ref, force=True)
            raise
        except (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError,
                ray.exceptions.TaskCancelledError, ray.exceptions.RaySystemError) as exc:
            why = f"the Ray task was lost with its node or worker ({type(exc).__name__}): {str(exc)[:300]}"
            log.write_text(why + "\n")
            return RunResult("preempted", None, None, time.monotonic() - start, None, 0.0, log, why, why)
        for name, blob in out["files"].items():
            (run_dir / name).write_bytes(blob)
        res = RunResult(**out["result"], log_path=log)
        if out["tampered"]:
            res = replace(res, outcome="integrity_violation",
                          detail=f"files changed by the run on its node: {', '.join(out['tampered'])}")
        return res

    def warm(self, n: int, time_budget_s: float) -> None:
        """Start ``n`` Ray worker processes for this session's run tasks while the baseline runs
        alone, so that the first round of ``n + 1`` experiments finds them started (a cold worker
        starts an interpreter and imports ray and the harness: seconds each, and a node starts only
        a few at a time). ``n`` tasks shaped like a run (:data:`TASK_OPTIONS`) that import the runner
        and hold their GPU half the run's ``time_budget_s`` (seconds), at most :data:`WARM_HOLD_S`, so
        they end before the baseline does and the first round never waits for them. Not waited
        for: a warm-up that fails costs a cold start later, nothing else."""
        hold = min(WARM_HOLD_S, max(0.0, time_budget_s / 2))
        self.warming = [self._warmer.remote(hold) for _ in range(max(0, n))]

    def places(self, limit: Optional[int] = None) -> list:
        """One runner per GPU of the cluster (at most ``limit``); a single one is a plain session."""
        from .runners import Place

        n = self.gpus if limit is None else max(1, min(limit, self.gpus))
        if n == 1:
            return [Place(self.sandbox, label="ray", remote=self)]
        return [Place(self.sandbox, index=i, label=f"ray {i}", remote=self) for i in range(n)]
