"""The ledger: Karpathy's results.tsv columns, trajectory objects, fsynced appends, no torn rows."""

from __future__ import annotations

import json
import os

import pytest

from harness.ledger import RESULTS_HEADER, ExperimentRecord, Ledger, LedgerError


def rec(n, outcome, val=None, commit="abcdef1234567890", desc="try a thing"):
    return ExperimentRecord(experiment=n, outcome=outcome, description=desc, agent="scripted",
                            commit=commit, val_bpb=val, peak_mem_gb=1.26)


def test_results_tsv_has_karpathys_five_columns_and_formats(tmp_path):
    led = Ledger(tmp_path)
    led.append(rec(1, "improved", 1.2345678))
    led.append(rec(2, "crash", None, desc="tab\there and\nnewline"))
    led.append(rec(3, "patch_failed", None, commit=None))
    lines = (tmp_path / "results.tsv").read_text().splitlines(keepends=True)
    assert lines[0] == RESULTS_HEADER
    assert lines[1] == "abcdef1\t1.234568\t1.3\tkeep\ttry a thing\n"
    assert lines[2] == "abcdef1\t0.000000\t0.0\tcrash\ttab here and newline\n"
    assert lines[3].startswith("-\t0.000000\t0.0\tcrash\t")


def test_trajectory_objects_round_trip_and_give_the_best(tmp_path):
    led = Ledger(tmp_path)
    led.append(rec(1, "improved", 1.5, commit="a" * 40))
    led.append(rec(2, "improved", 1.4, commit="b" * 40))
    led.append(rec(3, "not_improved", 1.45, commit="c" * 40))
    assert [r["status"] for r in led.records()] == ["keep", "keep", "discard"]
    assert led.best() == (1.4, "b" * 40)
    assert led.next_experiment() == 4


def test_a_torn_last_line_is_skipped(tmp_path):
    led = Ledger(tmp_path)
    led.append(rec(1, "improved", 1.5))
    with open(tmp_path / "trajectory.jsonl", "a") as fh:
        fh.write('{"experiment": 2, "outc')
    assert len(led.records()) == 1


def test_a_failed_write_leaves_both_files_as_they_were(tmp_path, monkeypatch):
    led = Ledger(tmp_path)
    led.append(rec(1, "improved", 1.5))
    before = {p: p.read_bytes() for p in (led.results_path, led.trajectory_path)}
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd):
        calls["n"] += 1
        if calls["n"] == 2:  # the results.tsv append, after trajectory.jsonl was written
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(LedgerError, match="No space left on device"):
        led.append(rec(2, "not_improved", 1.6))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert {p: p.read_bytes() for p in before} == before
    assert [json.loads(x)["experiment"] for x in led.trajectory_path.read_text().splitlines()] == [1]


def test_repair_adds_the_results_row_a_kill_between_the_two_files_left_out(tmp_path):
    led = Ledger(tmp_path)
    led.append(rec(1, "improved", 1.5))
    with open(led.trajectory_path, "a") as fh:  # killed after trajectory.jsonl, before results.tsv
        fh.write(json.dumps(rec(2, "not_improved", 1.6, commit="b" * 40).to_json()) + "\n")
    assert led.repair() == ["added 1 results.tsv row(s) that trajectory.jsonl had"]
    assert led.results_path.read_text().splitlines()[-1].startswith("bbbbbbb\t1.600000\t1.3\tdiscard\t")
    assert led.repair() == []


def test_repair_cuts_torn_lines_of_both_files(tmp_path):
    led = Ledger(tmp_path)
    led.append(rec(1, "improved", 1.5))
    good = {p: p.read_bytes() for p in (led.trajectory_path, led.results_path)}
    with open(led.trajectory_path, "a") as fh:
        fh.write('{"experiment": 2, "outc')
    with open(led.results_path, "a") as fh:
        fh.write("abcdef1\t1.6")
    assert sorted(led.repair()) == ["cut a torn last line of trajectory.jsonl", "cut a torn last row of results.tsv"]
    assert {p: p.read_bytes() for p in good} == good
    assert led.next_experiment() == 2


def test_repair_rebuilds_a_results_tsv_that_disagrees_and_keeps_the_old_one(tmp_path):
    led = Ledger(tmp_path)
    led.append(rec(1, "improved", 1.5))
    with open(led.results_path, "a") as fh:
        fh.write("1234567\t1.0\t1.0\tkeep\ta row no trajectory object has\n")
    (msg,) = led.repair()
    assert "rebuilt" in msg
    assert led.results_path.read_text() == RESULTS_HEADER + rec(1, "improved", 1.5).results_row()
    (backup,) = (tmp_path / ".harness").glob("results.tsv.*.bak")
    assert "a row no trajectory object has" in backup.read_text()
