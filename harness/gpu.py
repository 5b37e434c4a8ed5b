"""What a run got out of its GPU: peak FLOP/s, model FLOPs utilisation, and the SM clock.

- :data:`PEAK_BF16_FLOPS` and :func:`peak_flops`: dense (no structured sparsity) bf16 tensor-core
  peak FLOP/s of common NVIDIA GPUs, from NVIDIA's datasheets and architecture whitepapers.
- :func:`mfu`: model FLOPs utilisation, ``6 * num_params * tokens_per_s / peak``.
- :class:`ClockSampler`: the mean SM clock in MHz while a run trains, through NVML (the
  ``pynvml`` module of the PyPI package ``nvidia-ml-py``, optional: without it, or without an
  NVIDIA driver, the sampler does nothing and reports None).

Standard library only; ``pynvml`` is imported lazily and every failure of it is silent.
"""

from __future__ import annotations

import os
import re
import time
from typing import Optional

#: Dense bf16 tensor-core peak of one GPU, FLOP/s, by a name that appears in
#: ``torch.cuda.get_device_name()`` (e.g. "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB",
#: "NVIDIA GeForce RTX 4090"). Sources: NVIDIA's datasheets (H100/H200, A100, L40S, L40, L4, A10,
#: V100, T4) and architecture whitepapers (Ada: RTX 4090; Ampere GA102: RTX 3090), the figures
#: without sparsity; for GeForce cards the rate with FP32 accumulation (what bf16 autocast uses).
#: A10G (AWS) has no NVIDIA datasheet; it is taken to equal the A10. V100 and T4 have no bf16:
#: their entries are the fp16 tensor-core peak (fp16 mixed precision).
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,  # H200 SXM (H200 datasheet); same tensor cores as H100 SXM
    "GH200": 989e12,  # Grace Hopper superchip: an H100-class SXM GPU
    "H200 NVL": 835e12,  # H200 NVL (H200 datasheet)
    "H100": 989e12,  # H100 SXM5 ("NVIDIA H100 80GB HBM3"; H100 datasheet)
    "H100 NVL": 835e12,  # H100 NVL (H100 datasheet)
    "H100 PCIe": 756e12,  # H100 PCIe (H100 datasheet)
    "A100": 312e12,  # A100 SXM4 and PCIe, 40 and 80 GB (A100 datasheet)
    "L40S": 362e12,  # L40S datasheet (362.05)
    "L40": 181e12,  # L40 datasheet (181.05)
    "L4": 121e12,  # L4 datasheet
    "A10G": 125e12,  # AWS's A10 variant; assumed equal to the A10
    "A10": 125e12,  # A10 datasheet
    "RTX 4090": 165e12,  # Ada whitepaper, RTX 4090 (165.2, FP32 accumulate)
    "RTX 3090": 71e12,  # Ampere GA102 whitepaper, RTX 3090 (71, FP32 accumulate)
    "V100": 125e12,  # V100 SXM2 datasheet, fp16 tensor (no bf16)
    "T4": 65e12,  # T4 datasheet, fp16 tensor (no bf16)
}


def _matches(key: str, name: str) -> bool:
    """``key`` occurs in ``name`` (case-insensitive) as a whole token: not glued to a letter or
    digit on either side, so "A10" does not match "A100" nor "L4" match "L40S"."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, re.I) is not None


def peak_flops(device_name: Optional[str]) -> Optional[float]:
    """Dense bf16 peak of the GPU named ``device_name``, FLOP/s, or None for an unknown device, a
    non-CUDA device ("cpu", "mps") or None. The longest key of :data:`PEAK_BF16_FLOPS` found in
    the name wins ("NVIDIA H100 PCIe": "H100 PCIe", not "H100")."""
    if not device_name:
        return None
    found = [key for key in PEAK_BF16_FLOPS if _matches(key, device_name)]
    return PEAK_BF16_FLOPS[max(found, key=len)] if found else None


def mfu(num_params: Optional[int], tokens_per_s: Optional[float], device_name: Optional[str]) -> Optional[float]:
    """Model FLOPs utilisation, a fraction (0.4 = 40 %): ``6 * num_params * tokens_per_s / peak``.

    ``6 * N`` FLOPs per trained token (forward 2N + backward 4N; Kaplan et al. 2020, "Scaling
    Laws for Neural Language Models", section 2.1) counts the parameter matmuls only: attention's
    score and value FLOPs (``~12 * layers * d_model * seq_len`` a token) are left out, so this
    understates the work of long contexts. ``num_params`` in parameters, ``tokens_per_s`` in
    training tokens per second, peak from :func:`peak_flops`. None when any input is missing or
    not positive, off CUDA, or for a GPU not in the table."""
    peak = peak_flops(device_name)
    if peak is None or not num_params or not tokens_per_s or num_params <= 0 or tokens_per_s <= 0:
        return None
    return 6.0 * num_params * tokens_per_s / peak


def _nvml_handle(nvml, index: int):
    """NVML handle of the ``index``-th device that CUDA sees, given ``CUDA_VISIBLE_DEVICES``:
    an entry that is a number is an NVML index, else a UUID ("GPU-...", "MIG-..."). NVML counts
    devices in PCI bus order; CUDA, unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, fastest first, which
    differs only on machines with mixed GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return nvml.nvmlDeviceGetHandleByIndex(index)
    entries = [e.strip() for e in visible.split(",")]
    if "-1" in entries:  # CUDA stops at the first invalid entry
        entries = entries[:entries.index("-1")]
    entry = entries[index] if 0 <= index < len(entries) else ""
    if not entry:
        raise LookupError(f"CUDA_VISIBLE_DEVICES={visible!r} has no device {index}")
    return nvml.nvmlDeviceGetHandleByIndex(int(entry)) if entry.isdigit() else nvml.nvmlDeviceGetHandleByUUID(entry)


def open_nvml():
    """The ``pynvml`` module (of ``nvidia-ml-py``) after ``nvmlInit()``, or None when it is missing
    or NVML does not start (no driver, no GPU); the caller calls ``nvmlShutdown()`` when done."""
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
    except Exception:
        return None
    return pynvml


class ClockSampler:
    """Samples the SM clock of one GPU through NVML and reports the mean, MHz.

    ``ClockSampler(index=0)`` opens the ``index``-th device visible to CUDA (see
    ``CUDA_VISIBLE_DEVICES``); :meth:`sample` reads its SM clock (``nvmlDeviceGetClockInfo(h,
    NVML_CLOCK_SM)``) at most once a second, however often it is called; :meth:`mean_mhz` is the
    mean of the readings. Without ``pynvml``, without a driver, or on any NVML error the sampler
    is a silent no-op: nothing raises and the mean is None. A clock well under the GPU's boost
    clock while it trains points at power or thermal throttling. Use as a context manager, or
    call :meth:`close`, to release NVML.
    """

    #: the shortest interval between two readings, seconds
    MIN_INTERVAL_S = 1.0

    def __init__(self, index: int = 0):
        self._nvml = self._handle = None
        self._readings: list[float] = []
        self._last: Optional[float] = None
        self._nvml = open_nvml()
        if self._nvml is None:
            return
        try:
            self._handle = _nvml_handle(self._nvml, index)
        except Exception:
            self.close()

    @property
    def available(self) -> bool:
        """True while NVML is open on a device (readings can be taken)."""
        return self._handle is not None

    def sample(self) -> Optional[float]:
        """Read the SM clock now, MHz, unless the last reading is under a second old; returns the
        new reading, or None when skipped, unavailable or failed (a failure closes the sampler)."""
        if self._handle is None:
            return None
        now = time.monotonic()
        if self._last is not None and now - self._last < self.MIN_INTERVAL_S:
            return None
        self._last = now
        try:
            mhz = float(self._nvml.nvmlDeviceGetClockInfo(self._handle, self._nvml.NVML_CLOCK_SM))
        except Exception:
            self.close()
            return None
        self._readings.append(mhz)
        return mhz

    def mean_mhz(self) -> Optional[float]:
        """Mean of the readings so far, MHz, or None when there are none."""
        return sum(self._readings) / len(self._readings) if self._readings else None

    def close(self) -> None:
        """Release NVML (the readings stay); later samples are no-ops. Safe to call twice."""
        nvml, self._nvml, self._handle = self._nvml, None, None
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass

    def __enter__(self) -> "ClockSampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
