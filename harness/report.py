"""``harness status`` and ``harness log``: read-only views of a sandbox for another terminal."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import ConfigError, load
from .control import Control
from .decisions import best_estimate, noise
from .ledger import RESULTS_NAME, Ledger
from .state import is_running, read_state

STATUS_STYLE = {"keep": "green", "discard": "yellow", "crash": "red"}


def _ago(ts) -> str:
    if not ts:
        return "?"
    s = int(time.time() - ts)
    return f"{s // 60}m{s % 60:02d}s"


def print_status(sandbox: Path, console: Console | None = None) -> None:
    """Print whether a harness is running in ``sandbox``, its phase and experiment, the counts of
    keep/discard/crash and the best val_bpb."""
    console = console or Console()
    sandbox = Path(sandbox)
    if not (sandbox / "harness.toml").exists():
        console.print(f"{sandbox} is not a harness sandbox (no harness.toml).")
        raise SystemExit(1)
    state = read_state(sandbox)
    records = Ledger(sandbox).records()
    if is_running(state):
        phase = state.get("phase")
        who = f"(pid {state['pid']}, agent {state.get('agent')})"
        if phase == "paused":
            console.print(f"paused {who}: `harness resume {sandbox}` continues")
        elif phase == "idle":
            console.print(f"serving an agent over MCP {who}: waiting for its next run_experiment")
        elif phase == "waiting_for_llm":
            console.print(f"waiting for the LLM endpoint {who}: next try in {max(0, int(state.get('retry_at', 0) - time.time()))} s")
            console.print(f"  {state.get('detail', '')}")
        else:
            line = f"running {who}: {phase} experiment {state.get('experiment')}"
            if phase == "running":
                line += f" for {_ago(state.get('run_started_at'))}"
            console.print(line)
            if state.get("description"):
                console.print(f"  {state['description']}")
            if state.get("in_flight"):
                console.print(f"  in flight on several runners: experiments {', '.join(map(str, state['in_flight']))}")
        asked = Control(sandbox)
        stop = asked.stop()
        if stop:
            console.print("  stop requested: " + ("aborting the run in flight" if stop == "now"
                                                  else "exits after the current experiment"))
        elif asked.paused() and phase != "paused":
            console.print("  pause requested: pauses after the current experiment")
        if state.get("deadline"):
            console.print(f"  time left in the run: {max(0, int(state['deadline'] - time.time())) // 60} min")
    else:
        console.print("not running" + (f" (last session ended {_ago(state.get('updated_at'))} ago)" if state else ""))
    try:
        cfg = load(sandbox)
    except ConfigError:
        cfg = None
    for line in summary_lines(sandbox, records, cfg and cfg.usd_per_kwh, cfg and cfg.checkpoints):
        console.print(line, highlight=False)
    page = sandbox / "report.html"
    if page.exists():
        console.print(f"report: {page} (`harness report {sandbox} --serve` serves it live)", highlight=False)


def summary_lines(sandbox: Path, records: list[dict], usd_per_kwh: float | None = None,
                  checkpoints: str | None = None) -> list[str]:
    """The state of a sandbox in lines, for ``harness status`` and the report: the counts of
    keep/discard/crash, the best val_bpb, the noise, the knobs explored, the energy (with its cost
    at ``usd_per_kwh`` dollars per kWh when given) and, when ``checkpoints`` (the mode) is given,
    the checkpoints on disk."""
    from .checkpoints import checkpoints_text
    from .energy import energy_text

    counts = {s: sum(r["status"] == s for r in records) for s in ("keep", "discard", "crash")}
    lines = [f"experiments: {len(records)} ({counts['keep']} keep, {counts['discard']} discard, {counts['crash']} crash)"]
    est = best_estimate(records)
    if est is not None:
        lines.append(f"best val_bpb: {est.val_bpb:.6f} at {(est.commit or '-------')[:7]} (experiment "
                     f"{est.experiment}, mean of {est.runs} run{'s' if est.runs != 1 else ''})")
    reference = base_reference(sandbox)
    if reference is not None:
        lines.append(f"reference: the base model before any fine-tuning scores val_bpb {reference:.6f}")
    lines += [_noise_line(records), _coverage_line(sandbox, records), energy_text(records, usd_per_kwh)]
    if checkpoints:
        lines.append(checkpoints_text(sandbox, checkpoints))
    return lines


def base_reference(sandbox: Path) -> float | None:
    """The fine-tune template's reference: the base model's val_bpb before any training
    (``base_val_bpb`` of the prepared corpus's meta.json), or None (a from-scratch sandbox, or not
    prepared)."""
    import json

    from .datacache import corpus_dir, root

    folder = corpus_dir(sandbox, root(sandbox))
    try:
        value = json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("base_val_bpb")
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _coverage_line(sandbox: Path, records: list[dict]) -> str:
    """Which knobs the experiments explored (:func:`harness.optimiser.coverage`)."""
    from .optimiser import GitFiles, coverage, coverage_text

    try:
        current = GitFiles(sandbox)("HEAD")
    except (OSError, ValueError) as exc:
        return f"knobs explored: unknown (train.py of the best cannot be read: {exc})"
    return coverage_text(*coverage(sandbox, records, current))


def _noise_line(records: list[dict]) -> str:
    """``noise sd 0.0068 (12 runs of 4 files); 1 drift of the best`` for status and log."""
    drifts = sum(1 for r in records if r.get("drift"))
    return noise(records).text() + (f"; {drifts} drift{'s' if drifts != 1 else ''} of the best re-measured"
                                    if drifts else "")


def print_log(sandbox: Path, last: int | None = None, console: Console | None = None) -> None:
    """Print results.tsv of ``sandbox`` as a table (the last ``last`` rows when given), with the
    outcome, steps and tokens/s of each run from trajectory.jsonl, and the measured noise."""
    console = console or Console()
    path = Path(sandbox) / RESULTS_NAME
    if not path.exists():
        console.print(f"no experiments yet ({path} does not exist)")
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    records = Ledger(sandbox).records()
    table = Table(title=str(path))
    for col in ("#", "commit", "val_bpb", "memory_gb", "status", "outcome", "steps", "tok/s", "description"):
        table.add_column(col, justify="right" if col in ("#", "val_bpb", "memory_gb", "steps", "tok/s") else "left",
                         no_wrap=col != "description", min_width=20 if col == "description" else None)
    numbered = list(enumerate(rows, 1))
    for i, row in numbered[-last:] if last else numbered:
        rec = records[i - 1] if i <= len(records) else {}
        style = STATUS_STYLE.get(row.get("status", ""), "")
        tps = rec.get("tokens_per_s")
        table.add_row(str(i), row.get("commit", ""), row.get("val_bpb", ""), row.get("memory_gb", ""),
                      f"[{style}]{row.get('status', '')}[/]", rec.get("outcome", ""), str(rec.get("steps") or ""),
                      f"{tps:,.0f}" if tps else "", row.get("description", ""))
    console.print(table)
    console.print(_noise_line(records))
    console.print(_coverage_line(Path(sandbox), records))
