"""Optional MLflow tracking: every ledger row of a sandbox as an MLflow run (``[tracking] mlflow_uri``).

Logged with the official client (``mlflow.tracking.MlflowClient``; the ``mlflow-skinny``
distribution of the ``tracking`` extra is enough), into the MLflow experiment
``autoresearch-harness/<sandbox folder>/<tag>``:

- run name ``#<n> <description>``; tags ``harness.experiment`` (the number), ``harness.status``,
  ``harness.outcome``, ``harness.commit``;
- params: the description, the agent, and the knobs (ALL_CAPS literals) of train.py at the
  experiment's commit;
- metrics: val_bpb, steps, tokens, tokens_per_s, train_s, wall_s, peak_mem_gb, mfu, gpu_clock_mhz,
  gpu_energy_j, cpu_energy_j, sample_s (those the row has);
- artifacts: ``runs/<n>/proposal.diff``, ``run.log``, ``sample.txt`` (those that exist);
- status FINISHED for scored rows, FAILED for crash rows.

Rows already logged (found by the ``harness.experiment`` tag) are skipped, so logging after a kill
or a restart neither duplicates nor loses a row.
"""

from __future__ import annotations

from pathlib import Path

METRICS = ("val_bpb", "steps", "tokens", "tokens_per_s", "train_s", "wall_s", "peak_mem_gb", "mfu",
           "gpu_clock_mhz", "gpu_energy_j", "cpu_energy_j", "sample_s")
ARTIFACTS = ("proposal.diff", "run.log", "sample.txt")
TAG = "harness.experiment"


class TrackingError(Exception):
    """MLflow is missing or refused a write; the message says what to do."""


def experiment_name(sandbox: Path) -> str:
    """``autoresearch-harness/<folder>/<tag>`` of ``sandbox``."""
    from .config import load

    return f"autoresearch-harness/{Path(sandbox).resolve().name}/{load(sandbox).tag}"


def log_new_rows(sandbox: Path, uri: str) -> list[int]:
    """Log the ledger rows of ``sandbox`` that ``uri`` does not hold yet; returns their numbers.

    Raises:
        TrackingError: mlflow is not installed, or the tracking store failed.
    """
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingError("[tracking] mlflow_uri is set but MLflow is not installed: "
                            "pip install 'autoresearch-harness[tracking]' (or remove the setting)") from None
    from .ledger import Ledger
    from .optimiser import GitFiles, knob_values

    sandbox = Path(sandbox)
    try:
        client = MlflowClient(tracking_uri=uri)
        name = experiment_name(sandbox)
        found = client.get_experiment_by_name(name)
        exp_id = found.experiment_id if found else client.create_experiment(name)
        done = {int(run.data.tags[TAG]) for run in client.search_runs([exp_id], max_results=50000)
                if run.data.tags.get(TAG, "").isdigit()}
        files, logged = GitFiles(sandbox), []
        for rec in Ledger(sandbox).records():
            n = rec["experiment"]
            if n in done:
                continue
            run = client.create_run(exp_id, run_name=f"#{n} {rec['description']}"[:250], tags={
                TAG: str(n), "harness.status": rec["status"], "harness.outcome": rec["outcome"],
                "harness.commit": rec.get("commit") or ""})
            params = {"description": rec["description"][:500], "agent": rec.get("agent", "")}
            if rec.get("commit"):
                try:
                    params.update({k: str(v) for k, v in knob_values(files(rec["commit"])).items()})
                except (OSError, SyntaxError):
                    pass
            stamp = int(1000 * _epoch(rec.get("started_at")))
            metrics = [Metric(k, float(rec[k]), stamp, 0) for k in METRICS
                       if isinstance(rec.get(k), (int, float)) and not isinstance(rec.get(k), bool)]
            client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()],
                             tags=[RunTag("mlflow.note.content", rec.get("detail") or "")])
            for artifact in ARTIFACTS:
                path = sandbox / "runs" / str(n) / artifact
                if path.exists():
                    client.log_artifact(run.info.run_id, str(path))
            client.set_terminated(run.info.run_id, "FAILED" if rec["status"] == "crash" else "FINISHED")
            logged.append(n)
        return logged
    except TrackingError:
        raise
    except Exception as exc:  # MLflow raises its own and OS errors; the session goes on either way
        raise TrackingError(f"MLflow logging to {uri} failed: {type(exc).__name__}: {exc}") from None


def _epoch(iso) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        import time

        return time.time()
