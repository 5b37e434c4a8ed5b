"""harness.gpu: the peak-FLOP/s table, MFU, and the NVML clock sampler (with a stand-in pynvml)."""

from __future__ import annotations

import sys
import types

import pytest

from harness import gpu
from harness.gpu import PEAK_BF16_FLOPS, ClockSampler, mfu, peak_flops


def fake_nvml(clocks=(1500,), fail_init=False, fail_read_after=None, calls=None):
    """A stand-in ``pynvml`` module: SM clock readings from ``clocks`` (the last one repeats);
    ``calls`` (a list) records the NVML calls made."""
    calls = [] if calls is None else calls
    readings = list(clocks)
    mod = types.ModuleType("pynvml")
    mod.NVML_CLOCK_SM = 1

    def init():
        calls.append("init")
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def by_index(i):
        calls.append(("index", i))
        return f"handle{i}"

    def by_uuid(u):
        calls.append(("uuid", u))
        return f"handle-{u}"

    def clock(handle, kind):
        assert kind == mod.NVML_CLOCK_SM
        n = sum(1 for c in calls if c == "clock")
        calls.append("clock")
        if fail_read_after is not None and n >= fail_read_after:
            raise RuntimeError("GPU is lost")
        return readings[min(n, len(readings) - 1)]

    mod.nvmlInit, mod.nvmlShutdown = init, lambda: calls.append("shutdown")
    mod.nvmlDeviceGetHandleByIndex, mod.nvmlDeviceGetHandleByUUID = by_index, by_uuid
    mod.nvmlDeviceGetClockInfo = clock
    return mod


@pytest.mark.parametrize("name, flops", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA GH200 480GB", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA A10G", 125e12),
    ("NVIDIA A10", 125e12),
    ("NVIDIA L40S", 362e12),
    ("NVIDIA L40", 181e12),
    ("NVIDIA L4", 121e12),
    ("NVIDIA GeForce RTX 4090", 165e12),
    ("NVIDIA GeForce RTX 3090", 71e12),
    ("Tesla V100-SXM2-16GB", 125e12),
    ("Tesla T4", 65e12),
])
def test_peak_flops_matches_the_device_name(name, flops):
    assert peak_flops(name) == flops


@pytest.mark.parametrize("name", ["cpu", "mps", "cuda:0", "", None, "NVIDIA RTX A1000", "NVIDIA L400", "AMD Instinct MI300X"])
def test_peak_flops_is_none_off_cuda_and_for_unknown_devices(name):
    assert peak_flops(name) is None


def test_every_table_entry_is_a_plausible_dense_peak():
    assert all(30e12 <= v <= 1000e12 for v in PEAK_BF16_FLOPS.values())
    assert all(peak_flops(f"NVIDIA {key}") == value for key, value in PEAK_BF16_FLOPS.items())


def test_mfu_is_six_n_tokens_per_second_over_the_peak():
    assert mfu(124_000_000, 500_000, "NVIDIA H100 80GB HBM3") == pytest.approx(6 * 124e6 * 5e5 / 989e12)
    assert mfu(10**9, 26_000, "NVIDIA A100-SXM4-40GB") == pytest.approx(0.5, rel=0.01)
    assert mfu(10**6, 1000.0, "cpu") is None and mfu(10**6, 1000.0, "Some Future GPU") is None
    assert mfu(None, 1000.0, "NVIDIA H100") is None and mfu(10**6, None, "NVIDIA H100") is None
    assert mfu(0, 1000.0, "NVIDIA H100") is None and mfu(10**6, 0.0, "NVIDIA H100") is None


def test_clock_sampler_without_pynvml_is_a_silent_no_op(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with ClockSampler() as s:
        assert not s.available and s.sample() is None and s.mean_mhz() is None
    s.close()
    assert s.sample() is None


def test_clock_sampler_never_raises_here():
    """Whatever this machine has (no pynvml, no driver, or a real GPU)."""
    s = ClockSampler()
    reading = s.sample()
    assert reading is None or reading > 0
    assert s.mean_mhz() is None or s.mean_mhz() > 0
    s.close()


def test_clock_sampler_when_nvml_fails_to_start(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(fail_init=True))
    s = ClockSampler()
    assert s.sample() is None and s.mean_mhz() is None


def test_clock_sampler_reads_at_most_once_a_second_and_averages(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(clocks=[1000, 1980, 1800], calls=calls))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    now = [100.0]
    monkeypatch.setattr(gpu.time, "monotonic", lambda: now[0])
    s = ClockSampler()
    assert s.available and ("index", 0) in calls
    assert s.sample() == 1000.0
    now[0] += 0.5
    assert s.sample() is None  # too soon: not read
    now[0] += 0.5
    assert s.sample() == 1980.0
    now[0] += 3
    assert s.sample() == 1800.0
    assert calls.count("clock") == 3 and s.mean_mhz() == pytest.approx((1000 + 1980 + 1800) / 3)
    s.close()
    s.close()
    assert calls.count("shutdown") == 1 and s.sample() is None and s.mean_mhz() == pytest.approx(1593.33, abs=0.01)


def test_a_failing_read_closes_the_sampler_silently(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(clocks=[1200], fail_read_after=1, calls=calls))
    now = [0.0]
    monkeypatch.setattr(gpu.time, "monotonic", lambda: now[0])
    s = ClockSampler()
    assert s.sample() == 1200.0
    now[0] += 2
    assert s.sample() is None and not s.available and "shutdown" in calls
    now[0] += 2
    assert s.sample() is None and s.mean_mhz() == 1200.0


@pytest.mark.parametrize("visible, index, expected", [
    ("3,1", 0, ("index", 3)),
    ("3,1", 1, ("index", 1)),
    ("GPU-8f6c2a4e-0000-1111-2222-333344445555", 0, ("uuid", "GPU-8f6c2a4e-0000-1111-2222-333344445555")),
    ("MIG-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", 0, ("uuid", "MIG-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d")),
])
def test_clock_sampler_opens_the_device_cuda_sees(monkeypatch, visible, index, expected):
    calls = []
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(calls=calls))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert ClockSampler(index).available and expected in calls


@pytest.mark.parametrize("visible", ["", "-1", "-1,0", "0"])
def test_clock_sampler_without_a_visible_device_is_a_no_op(monkeypatch, visible):
    calls = []
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(calls=calls))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    s = ClockSampler(index=1 if visible == "0" else 0)  # "0": one device, so index 1 is missing
    assert not s.available and s.sample() is None and s.mean_mhz() is None
    assert "clock" not in calls and calls.count("shutdown") == 1
