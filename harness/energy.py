"""Energy a run used: GPU energy through NVML, CPU package energy through RAPL, never invented.

- GPU: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded; Volta and
  newer) of every device visible to CUDA (``CUDA_VISIBLE_DEVICES``), read before and after the
  run, through the ``pynvml`` module of ``nvidia-ml-py``.
- CPU: the package domains of the Linux powercap RAPL interface,
  ``/sys/class/powercap/intel-rapl:<n>/energy_uj`` (microjoules; AMD Zen exposes the same files),
  read before and after, a counter wrap corrected with ``max_energy_range_uj``. Since Linux 5.10
  the files are readable by root only; where they are missing or unreadable (virtual machines,
  containers, macOS) the CPU energy is None: "not measured".

A reading covers the whole machine's packages and the visible GPUs, not the run's process alone:
on a machine busy with other work it overstates the run's share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

POWERCAP = Path("/sys/class/powercap")
_PACKAGE = re.compile(r"^intel-rapl:\d+$")  # top-level (package) domains; intel-rapl:0:0 is a sub-domain
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Energy:
    """Energy of one run.

    Attributes:
        gpu_j: joules used by the visible GPUs during the run, or None (no GPU, no NVML, or a
            GPU older than Volta).
        cpu_j: joules used by the CPU packages during the run (RAPL), or None (not readable).
        gpus: number of GPUs the run could see through NVML (0 without a GPU or NVML).
    """

    gpu_j: Optional[float]
    cpu_j: Optional[float]
    gpus: int


def _rapl_domains(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if _PACKAGE.match(p.name))
    except OSError:
        return []


def _read_int(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class EnergyMeter:
    """Reads the energy counters now (:meth:`__init__`) and again at :meth:`stop`.

    Args:
        powercap: the powercap folder (``/sys/class/powercap``; tests pass a folder of their own).

    Every failure of NVML or of the RAPL files is silent and makes that part None.
    """

    def __init__(self, powercap: Path = POWERCAP):
        self._rapl = [(d, _read_int(d / "energy_uj"), _read_int(d / "max_energy_range_uj"))
                      for d in _rapl_domains(Path(powercap))]
        self._rapl = [entry for entry in self._rapl if entry[1] is not None]
        from .gpu import _nvml_handle, open_nvml

        self._handles, self._gpu_start = [], None
        self._nvml = open_nvml()
        if self._nvml is None:
            return
        try:
            for index in range(self._nvml.nvmlDeviceGetCount()):
                try:
                    self._handles.append(_nvml_handle(self._nvml, index))
                except LookupError:
                    break
            self._gpu_start = self._gpu_mj()
        except Exception:
            self._gpu_start = None

    def _gpu_mj(self) -> Optional[float]:
        if not self._handles:
            return None
        try:
            return float(sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles))
        except Exception:
            return None

    def stop(self) -> Energy:
        """The energy used since the meter was made; releases NVML."""
        cpu_j = None
        if self._rapl:
            total = 0.0
            for domain, start, wrap in self._rapl:
                end = _read_int(domain / "energy_uj")
                if end is None:
                    total = None
                    break
                delta = end - start
                if delta < 0 and wrap:
                    delta += wrap
                total += delta / 1e6
            cpu_j = total
        gpu_j = None
        if self._gpu_start is not None:
            end = self._gpu_mj()
            gpu_j = None if end is None else max(0.0, (end - self._gpu_start) / 1e3)
        gpus = len(self._handles)
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None
        return Energy(gpu_j, cpu_j, gpus)


def session_energy(records: list[dict]) -> dict:
    """Totals over trajectory objects: ``gpu_kwh`` and ``cpu_kwh`` (None when no run measured
    that part), ``gpu_hours`` (sum of ``gpu_s``, None without GPU time), ``runs_measured`` (runs
    with any energy figure) and ``runs`` (runs that started a process)."""
    ran = [r for r in records if r.get("run_s") is not None]
    gpu = [r["gpu_energy_j"] for r in ran if r.get("gpu_energy_j") is not None]
    cpu = [r["cpu_energy_j"] for r in ran if r.get("cpu_energy_j") is not None]
    gpu_s = [r["gpu_s"] for r in ran if r.get("gpu_s") is not None]
    return {"gpu_kwh": sum(gpu) / JOULES_PER_KWH if gpu else None,
            "cpu_kwh": sum(cpu) / JOULES_PER_KWH if cpu else None,
            "gpu_hours": sum(gpu_s) / 3600 if gpu_s else None,
            "runs_measured": sum(1 for r in ran if r.get("gpu_energy_j") is not None or r.get("cpu_energy_j") is not None),
            "runs": len(ran)}


def energy_text(records: list[dict], usd_per_kwh: Optional[float] = None) -> str:
    """One line for ``harness status`` and the report, e.g. ``energy: 0.071 kWh (GPU 0.065, CPU
    0.006) over 50 of 50 runs, 0.8 GPU-hours, $0.01 at $0.15/kWh``, or ``energy: not measured
    (no NVML GPU energy counter and no readable RAPL files on this machine)``."""
    e = session_energy(records)
    if e["runs_measured"] == 0:
        line = "energy: not measured (no NVML GPU energy counter and no readable RAPL files on this machine)"
        return line + (f"; {e['gpu_hours']:.2f} GPU-hours" if e["gpu_hours"] else "")
    kwh = (e["gpu_kwh"] or 0.0) + (e["cpu_kwh"] or 0.0)
    parts = [f"GPU {e['gpu_kwh']:.4f}" if e["gpu_kwh"] is not None else "GPU not measured",
             f"CPU {e['cpu_kwh']:.4f}" if e["cpu_kwh"] is not None else "CPU not measured"]
    line = f"energy: {kwh:.4f} kWh ({', '.join(parts)}) over {e['runs_measured']} of {e['runs']} runs"
    if e["gpu_hours"]:
        line += f", {e['gpu_hours']:.2f} GPU-hours"
    if usd_per_kwh is not None:
        line += f", ${kwh * usd_per_kwh:.2f} at ${usd_per_kwh:g}/kWh"
    return line
