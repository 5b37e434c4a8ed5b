"""What a person looks at after a night: progress.png, report.html in a real headless Chromium,
`harness show N`, samples, checkpoints, energy and MLflow, after a short real session."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import git
import pytest

from harness.agents.scripted import ScriptedAgent
from harness.config import load
from harness.display import Display
from harness.ledger import ExperimentRecord, Ledger
from harness.loop import Limits, Session
from harness.patch import make_unified_diff
from harness.sandbox import Sandbox

from .browser import browser  # noqa: F401 (a fixture)
from .quick_sandbox import quick_sandbox  # noqa: F401 (a fixture)
from .conftest import set_knobs


def harness(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def visible_rows(driver) -> list[list[str]]:
    """The cells' rendered text (innerText) of the table rows a person sees, read in one script call
    (a page reloading meanwhile is read again)."""
    from selenium.common.exceptions import WebDriverException

    script = ("return Array.from(document.querySelectorAll('#experiments tbody tr'))"
              ".filter(tr => tr.offsetParent !== null && tr.getClientRects().length > 0)"
              ".map(tr => Array.from(tr.cells).map(td => td.innerText.trim()));")
    for _ in range(20):
        try:
            return driver.execute_script(script) or []
        except WebDriverException:
            time.sleep(0.25)
    return driver.execute_script(script)


@pytest.mark.slow
def test_a_short_real_session_leaves_views_a_person_can_read(make_sandbox, tmp_path, browser, monkeypatch):  # noqa: F811
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store only on request

    sandbox = make_sandbox(LEARNING_RATE="1e-5")  # a weak baseline, so that the next change is kept
    mlruns = tmp_path / "mlruns"
    sb = Sandbox(sandbox, "autoresearch/test")
    toml = (sandbox / "harness.toml").read_text().replace(
        '# mlflow_uri = "file:///path/to/mlruns"', f'mlflow_uri = "{mlruns.as_uri()}"')
    sb.commit_files({"harness.toml": toml}, "log to MLflow (test)")
    old = sb.read("train.py")
    better = set_knobs(old, LEARNING_RATE="3e-3")
    crash = better.replace("\nimport torch\n", "\nimport torch\nraise RuntimeError('boom from experiment')\n", 1)
    spawn = better.replace("\nimport torch\n", "\nimport torch\nimport subprocess\n", 1)
    entries = [{"description": "raise LEARNING_RATE 1e-5 -> 3e-3", "diff": make_unified_diff(old, better)},
               {"description": "lower LEARNING_RATE to 1e-7",
                "diff": make_unified_diff(better, set_knobs(better, LEARNING_RATE="1e-7"))},
               {"description": "a change that crashes", "diff": make_unified_diff(better, crash)},
               {"description": "import subprocess", "diff": make_unified_diff(better, spawn)}]
    cfg = load(sandbox)
    Session(sandbox, cfg, ScriptedAgent(entries), Display(cfg.time_budget_s, cfg.hard_limit_s),
            Limits(max_experiments=10)).run()

    traj = Ledger(sandbox).records()
    assert [r["outcome"] for r in traj] == ["improved", "improved", "not_improved", "crash", "rail_blocked"]
    # samples: every scored run has one, written after scoring and timed apart from training
    for n in (1, 2, 3):
        assert len((sandbox / "runs" / str(n) / "sample.txt").read_text()) > 20
        assert 0 < traj[n - 1]["sample_s"] < 30 and traj[n - 1]["train_s"] < cfg.time_budget_s + 2
    # checkpoints: the kept experiments' weights stay, the discarded one's are pruned
    import torch

    state = torch.load(sandbox / "runs" / "2" / "model.pt")
    assert sum(t.numel() for t in state.values()) > 1000
    assert (sandbox / "runs" / "1" / "model.pt").exists() and not (sandbox / "runs" / "3" / "model.pt").exists()
    assert traj[2]["checkpoint_bytes"] > 0
    # energy: no RAPL or NVML here is said, never invented
    assert all(r.get("cpu_energy_j") is None or r["cpu_energy_j"] > 0 for r in traj)
    assert git.Repo(sandbox).git.status("--porcelain") == ""  # the views are not untracked files

    # the report in a real browser, as a person sees it
    browser.get((sandbox / "report.html").as_uri())
    assert sandbox.name in browser.title
    chart = browser.find_element(By.ID, "chart")
    assert chart.is_displayed() and browser.execute_script("return arguments[0].naturalWidth", chart) > 500
    rows = visible_rows(browser)
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r[1] for r in rows] == ["improved", "improved", "not_improved", "crash", "rail_blocked"]
    kept = browser.find_element(By.ID, "kept-2")
    sample_line = next(line for line in (sandbox / "runs" / "2" / "sample.txt").read_text().splitlines() if line.strip())
    assert kept.is_displayed() and sample_line.strip() in kept.text
    summary = browser.find_element(By.ID, "summary").text
    assert "experiments: 5 (2 keep, 1 discard, 2 crash)" in summary and "energy:" in summary
    header = browser.find_element(By.CSS_SELECTOR, '#experiments th[data-col="3"]')
    header.click()
    scored = [float(r[3]) for r in visible_rows(browser) if r[3]]
    assert scored == sorted(scored) and len(scored) == 3
    header.click()
    assert [float(r[3]) for r in visible_rows(browser) if r[3]] == sorted(scored, reverse=True)

    # harness show N tells each experiment's story, whatever its outcome
    shown = {n: harness("show", n, sandbox) for n in range(1, 6)}
    assert all(res.returncode == 0 for res in shown.values()), {n: r.stderr for n, r in shown.items()}
    assert "sample (fixed prompt, fixed seed)" in shown[2].stdout and "LEARNING_RATE = 3e-3" in shown[2].stdout
    assert "decision:" in shown[3].stdout and "not_improved" in shown[3].stdout
    assert "boom from experiment" in shown[4].stdout and "detail: exited with code 1" in shown[4].stdout
    assert "import of 'subprocess' is not allowed" in shown[5].stdout and "+import subprocess" in shown[5].stdout
    assert "energy: not measured" in shown[3].stdout or " J" in shown[3].stdout
    missing = harness("show", 99, sandbox)
    assert missing.returncode == 1 and "there is no experiment 99" in missing.stderr

    # MLflow: one run per row, with the knobs, the metrics and the artifacts; logging again adds nothing
    from mlflow.tracking import MlflowClient

    from harness.tracking import experiment_name, log_new_rows

    client = MlflowClient(tracking_uri=mlruns.as_uri())
    exp = client.get_experiment_by_name(experiment_name(sandbox))
    runs = {int(r.data.tags["harness.experiment"]): r for r in client.search_runs([exp.experiment_id])}
    assert sorted(runs) == [1, 2, 3, 4, 5]
    assert runs[2].data.params["LEARNING_RATE"] == "0.003" and runs[2].data.metrics["val_bpb"] == pytest.approx(
        traj[1]["val_bpb"])
    assert runs[4].info.status == "FAILED" and "val_bpb" not in runs[4].data.metrics
    assert {a.path for a in client.list_artifacts(runs[2].info.run_id)} >= {"run.log", "sample.txt", "proposal.diff"}
    assert log_new_rows(sandbox, mlruns.as_uri()) == []

    # served live: the page reloads itself when the ledger grows
    from harness.webreport import serve

    servers = []
    thread = threading.Thread(target=serve, args=(sandbox, "127.0.0.1", 0), kwargs={"ready": servers.append},
                              daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not servers and time.time() < deadline:
        time.sleep(0.1)
    url = f"http://127.0.0.1:{servers[0].server_address[1]}/"
    browser.get(url)
    assert len(visible_rows(browser)) == 5
    Ledger(sandbox).append(ExperimentRecord(experiment=6, outcome="llm_error", description="the model was down",
                                            agent="scripted"))
    deadline = time.time() + 20
    while len(visible_rows(browser)) != 6 and time.time() < deadline:
        time.sleep(0.5)
    assert [r[1] for r in visible_rows(browser)][-1] == "llm_error"
    servers[0].shutdown()


def test_the_chart_shows_kept_discarded_repeats_failures_and_the_noise_band(tmp_path):
    from matplotlib.image import imread

    from harness.chart import render, running_best

    def rec(n, outcome, status, val=None, **kw):
        return {"experiment": n, "outcome": outcome, "status": status, "val_bpb": val,
                "description": f"change {n}", **kw}

    records = [rec(1, "improved", "keep", 2.40, file_key="a", proposal_format="baseline"),
               rec(2, "remeasure", "discard", 2.38, file_key="a", repeat_of=1),
               rec(3, "not_improved", "discard", 2.45, file_key="b"),
               rec(4, "improved", "keep", 2.30, file_key="c"),
               rec(5, "crash", "crash"), rec(6, "rail_blocked", "crash"), rec(7, "llm_error", "crash")]
    assert running_best(records)[0] == (1, 2.40) and running_best(records)[-1][0] == 4
    path = render(records, tmp_path / "progress.png")
    img = imread(path)
    assert img.shape[:2] == (550, 1100)
    rgb = (img[..., :3] * 255).round()

    def has(color, tol=12):
        return bool((abs(rgb - color).max(axis=-1) <= tol).any())

    assert has((44, 160, 44)) and has((214, 39, 40)) and has((255, 127, 14)) and has((148, 103, 189))
    empty = render([], tmp_path / "empty.png")
    assert imread(empty).shape[:2] == (550, 1100)


def test_checkpoints_keep_the_newest_kept_experiments_only(tmp_path):
    from harness.checkpoints import KEEP_KEPT, checkpoint_path, checkpoints_text, disk_use, prune

    records = []
    for n in range(1, 9):
        status = "keep" if n % 2 else "discard"
        records.append({"experiment": n, "status": status})
        path = checkpoint_path(tmp_path, n)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"w" * 1000)
    checkpoint_path(tmp_path, 9).parent.mkdir()
    checkpoint_path(tmp_path, 9).write_bytes(b"in flight")  # not in the ledger yet: untouched
    assert prune(tmp_path, records, "all") == [] and disk_use(tmp_path)[0] == 9
    removed = prune(tmp_path, records, "kept")
    assert sorted(removed) == [1, 2, 4, 6, 8]
    assert sorted(int(p.parent.name) for p in (tmp_path / "runs").glob("*/model.pt")) == [3, 5, 7, 9]
    assert KEEP_KEPT == 3 and prune(tmp_path, records, "kept") == []
    assert checkpoints_text(tmp_path, "kept").startswith("checkpoints (kept): 4 files, 0.0 MB")


def test_a_bad_checkpoints_setting_is_refused_with_the_choices(make_sandbox):
    from harness.config import ConfigError

    sandbox = make_sandbox()
    toml = sandbox / "harness.toml"
    toml.write_text(toml.read_text().replace('checkpoints = "kept"', 'checkpoints = "best"'))
    with pytest.raises(ConfigError, match='"kept", "none" or "all"'):
        load(sandbox)


def test_rapl_energy_is_read_with_its_wrap_and_missing_files_mean_not_measured(tmp_path, monkeypatch):
    import harness.energy as energy

    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: GPU part not measured
    pkg, sub = tmp_path / "intel-rapl:0", tmp_path / "intel-rapl:0:0"
    for d in (pkg, sub):
        d.mkdir()
        (d / "max_energy_range_uj").write_text("1000000000\n")
    (pkg / "energy_uj").write_text("999000000\n")
    (sub / "energy_uj").write_text("5\n")
    meter = energy.EnergyMeter(tmp_path)
    (pkg / "energy_uj").write_text("2000000\n")  # wrapped past the range: 3 J used
    got = meter.stop()
    assert got.cpu_j == pytest.approx(3.0) and got.gpu_j is None and got.gpus == 0
    assert energy.EnergyMeter(tmp_path / "absent").stop().cpu_j is None
    (pkg / "energy_uj").chmod(0o000)
    records = [{"run_s": 10.0, "cpu_energy_j": 3.6e6, "gpu_energy_j": None, "gpu_s": None},
               {"run_s": 10.0, "cpu_energy_j": None}]
    assert energy.energy_text(records, 0.2) == ("energy: 1.0000 kWh (GPU not measured, CPU 1.0000) over 1 of 2 runs, "
                                                "$0.20 at $0.2/kWh")
    assert energy.energy_text([{"run_s": 1.0}]).startswith("energy: not measured")


def test_nvml_energy_of_the_visible_gpus_with_a_stub_of_the_nvml_module(monkeypatch, tmp_path):
    """No GPU is at hand for this issue: the NVML path runs against a stub of the ``pynvml`` module
    that counts millijoules like the real ``nvmlDeviceGetTotalEnergyConsumption``."""
    import types

    import harness.energy as energy

    counters = {0: 1_000_000, 1: 5_000_000, 2: 9_000_000}
    calls = []
    stub = types.SimpleNamespace(
        nvmlInit=lambda: calls.append("init"), nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: 3, nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetHandleByUUID=lambda u: {"GPU-b": 1}[u],
        nvmlDeviceGetTotalEnergyConsumption=lambda h: counters[h])
    monkeypatch.setitem(sys.modules, "pynvml", stub)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-b")
    meter = energy.EnergyMeter(tmp_path)
    counters.update({0: 9_999_999, 1: 5_250_000, 2: 9_500_000})  # GPU 0 is not visible: not counted
    got = meter.stop()
    assert got.gpu_j == pytest.approx(750.0) and got.gpus == 2 and got.cpu_j is None
    assert calls == ["init", "shutdown"]


def test_report_cli_writes_the_views_and_refuses_a_folder_that_is_no_sandbox(quick_sandbox, tmp_path):
    sandbox = quick_sandbox()
    res = harness("report", sandbox)
    assert res.returncode == 0, res.stderr
    assert (sandbox / "report.html").exists() and (sandbox / "progress.png").read_bytes()[:4] == b"\x89PNG"
    page = (sandbox / "report.html").read_text()
    assert "http" not in page.split("<script>")[0].replace("http-equiv", "")  # nothing fetched from a network
    bad = harness("report", tmp_path)
    assert bad.returncode == 1 and "not a harness sandbox" in bad.stderr
