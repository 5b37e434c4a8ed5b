"""``harness start --ray ADDRESS`` (harness/cluster.py) on a real local Ray cluster: a head node
without GPUs and two nodes that declare one (fake) GPU each, started with ray's own cluster
utility. The runs are a stand-in train script that sleeps, reports where it ran and scores
train.py's text; one test kills a node while its run is in flight."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import git
import pytest

from harness.ledger import Ledger
from harness.sandbox import Sandbox

from .quick_sandbox import start
from .test_fault_injection import proposals
from .test_runners import assert_consistent, span

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

WHERE_TRAIN = '''"""Stands in for train.py on the cluster: says where it runs, sleeps, scores train.py's text."""
import hashlib, json, os, pathlib, sys, time

print("cwd=" + os.getcwd(), "gpu=" + os.environ.get("CUDA_VISIBLE_DEVICES", "-"), flush=True)
if os.environ.get("AUTORESEARCH_SMOKE_S"):
    pathlib.Path(os.environ["AUTORESEARCH_RESULT_FILE"]).write_text(json.dumps({{"val_bpb": 1.0, "eval_calls": 1}}))
    sys.exit(0)
time.sleep({sleep_s})
h = int(hashlib.sha256(pathlib.Path("train.py").read_bytes()).hexdigest(), 16)
pathlib.Path(os.environ["AUTORESEARCH_RESULT_FILE"]).write_text(
    json.dumps({{"val_bpb": 1.0 + (h % 100000) / 1e6, "train_s": 0.1, "eval_calls": 1}}))
'''


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster: a head with no GPU, two nodes with one declared GPU each."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    nodes = [c.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, nodes
    c.shutdown()


def start_on_cluster(address: str, make_sandbox, tmp_path: Path, name: str, sleep_s: float, seed: int,
                     experiments: int):
    """A sandbox whose runs are ``where_train.py`` (``sleep_s`` each), and ``harness start --ray``
    on it with a scripted agent: (sandbox, the running process)."""
    sandbox = make_sandbox(time_budget_s=1, allowance_s=60, name=name)
    toml = re.sub(r"command = \[.*\]", 'command = ["python", "where_train.py"]', (sandbox / "harness.toml").read_text())
    Sandbox(sandbox, "autoresearch/test").commit_files(
        {"harness.toml": toml, "where_train.py": WHERE_TRAIN.format(sleep_s=sleep_s)}, "score with where_train.py")
    agent = f"scripted:{proposals(tmp_path / 'p.jsonl', random.Random(seed))}"
    return sandbox, start(sandbox, "--max-experiments", experiments, "--agent", agent, "--ray", address)


@pytest.mark.slow
def test_a_session_on_a_ray_cluster_runs_on_its_gpus_and_the_record_agrees(cluster, make_sandbox, tmp_path):
    c, _ = cluster
    sandbox, proc = start_on_cluster(c.address, make_sandbox, tmp_path, "ray-ok", 2.0, seed=2, experiments=10)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err + out
    assert "2 runners (ray 0, ray 1)" in out
    records = assert_consistent(sandbox)
    ran = [r for r in records if r.get("run_s")]
    assert len(ran) >= 6
    for r in ran:  # every run happened in a task's folder on a node, on the GPU Ray gave it
        log = (sandbox / "runs" / str(r["experiment"]) / "run.log").read_text()
        assert "/harness-task-" in log and "gpu=0" in log, log
    proposals_ran = [r for r in ran if r["proposal_format"] not in ("baseline", "repeat")]
    assert any(span(b)[0] < span(a)[1] - 1 for a, b in zip(proposals_ran, proposals_ran[1:])), \
        "the two GPUs never ran at the same time"


@pytest.mark.slow
def test_a_node_lost_mid_run_is_recorded_preempted_and_run_again(cluster, make_sandbox, tmp_path):
    c, nodes = cluster
    sandbox, proc = start_on_cluster(c.address, make_sandbox, tmp_path, "ray-kill", 10.0, seed=4, experiments=4)
    markers = sandbox / ".harness" / "inflight"
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:  # both runners busy with proposals, their tasks started
        running = [json.loads(m.read_text()) for m in markers.glob("*.json")] if markers.is_dir() else []
        if len([m for m in running if m.get("phase") == "running"]) == 2:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("two experiments never ran at once: " + proc.communicate()[1])
    time.sleep(5)  # well inside the 10 s runs, after the tasks' workers started
    c.remove_node(nodes[1])
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err + out
    records = assert_consistent(sandbox)
    lost = [r for r in records if r["outcome"] == "preempted"]
    assert len(lost) == 1 and "lost with its node" in lost[0]["detail"], [r["outcome"] for r in records]
    again = [r for r in records if r.get("retry_of") == lost[0]["experiment"]]
    assert len(again) == 1 and again[0]["outcome"] in ("improved", "not_improved"), again
    assert Ledger(sandbox).records() == records and git.Repo(sandbox).is_dirty() is False


@pytest.mark.slow
def test_warm_up_tasks_start_one_worker_each_while_the_baseline_runs(cluster, make_sandbox):
    from harness.cluster import RayCluster

    c, nodes = cluster
    if len(nodes) < 2 or nodes[1] not in c.list_all_nodes():  # the node-loss test removed one
        nodes[1:] = [c.add_node(num_cpus=1, num_gpus=1)]
        c.wait_for_nodes()
    try:
        rc = RayCluster(c.address, make_sandbox(name="ray-warm"))
        rc.warm(2, time_budget_s=2.0)  # each holds its GPU 1 s
        pids = ray.get(rc.warming, timeout=120)
        assert len(pids) == 2 and len(set(pids)) == 2, pids  # each held its GPU: two worker processes
    finally:
        ray.shutdown()
