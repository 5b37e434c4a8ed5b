"""``harness show N``: one experiment's whole story, whatever its outcome.

Description and outcome, the figures (val_bpb against the best's, what the run did, energy), the
decision and its evidence, the rails' verdicts of a refused edit, the diff (``runs/<n>/proposal.diff``,
or git for the baseline), the training curve, the sample, and the end of the run's log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.syntax import Syntax
from rich.text import Text

LOG_LINES = 15


def story(sandbox: Path, n: int) -> Optional[dict]:
    """The parts of experiment ``n``'s story as text, keyed ``header``, ``figures``, ``decision``,
    ``rails``, ``diff``, ``curve``, ``sample``, ``log`` (empty strings where a part does not
    apply), or None when the ledger has no experiment ``n``."""
    from .curves import text as curve_text
    from .ledger import Ledger
    from .webreport import diff_of, evidence_text, sample_of
    from tools.propose import verdict_line

    sandbox = Path(sandbox)
    rec = next((r for r in Ledger(sandbox).records() if r["experiment"] == n), None)
    if rec is None:
        return None
    header = f"experiment {n}: {rec['description']}\n{rec['status']} ({rec['outcome']})"
    if rec.get("repeat_of"):
        header += f", a repeat of #{rec['repeat_of']}"
    if rec.get("commit"):
        header += f", commit {rec['commit'][:10]}"
    figures = []
    if rec.get("val_bpb") is not None:
        figures.append(f"val_bpb {rec['val_bpb']:.6f}" + (f" (best before: {rec['parent_val_bpb']:.6f})"
                                                          if rec.get("parent_val_bpb") is not None else ""))
    did = [f"{label} {fmt.format(rec[key])}" for key, label, fmt in (
        ("steps", "steps", "{}"), ("tokens_per_s", "tokens/s", "{:,.0f}"), ("train_s", "trained", "{:.1f} s"),
        ("run_s", "run", "{:.1f} s"), ("wall_s", "wall", "{:.1f} s"), ("peak_mem_gb", "peak memory", "{:.2f} GB"),
        ("mfu", "MFU", "{:.3f}"), ("sample_s", "sample", "{:.2f} s")) if rec.get(key) is not None]
    if did:
        figures.append(", ".join(did))
    energy = [f"{label} {rec[key]:.0f} J" for key, label in (("gpu_energy_j", "GPU"), ("cpu_energy_j", "CPU"))
              if rec.get(key) is not None]
    if rec.get("run_s") is not None:
        figures.append("energy: " + (", ".join(energy) if energy else "not measured"))
    if rec.get("llm_calls"):
        figures.append(f"LLM: {rec['llm_calls']} calls, {rec.get('prompt_tokens', 0)}+{rec.get('completion_tokens', 0)} "
                       f"tokens, {rec.get('llm_s', 0):.1f} s")
    decision = evidence_text(rec) if rec["status"] != "crash" else ""
    if rec.get("detail") and rec["status"] == "crash":
        decision = f"why: {rec['detail']}"
    rails = "\n".join(verdict_line(v) if isinstance(v, dict) else str(v) for v in rec.get("rail_verdicts") or [])
    log = ""
    log_path = sandbox / "runs" / str(n) / "run.log"
    if log_path.exists():
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        log = "\n".join(lines[-LOG_LINES:])
    return {"header": header, "figures": "\n".join(figures), "decision": decision, "rails": rails,
            "diff": diff_of(sandbox, rec), "curve": curve_text(rec.get("curve")) if rec.get("curve") else "",
            "sample": sample_of(sandbox, n) or "", "log": log}


def print_story(sandbox: Path, n: int, console: Optional[Console] = None) -> bool:
    """Print :func:`story` of experiment ``n``; False (and a message) when there is none."""
    console = console or Console()
    parts = story(sandbox, n)
    if parts is None:
        console.print(f"no experiment {n} in {sandbox}/trajectory.jsonl (`harness log` lists them)")
        return False
    titles = (("header", None), ("figures", None), ("decision", "decision"), ("rails", "rails refused"),
              ("curve", "training loss at 10%..100% of the budget"))
    for key, title in titles:
        if parts[key]:
            _part(console, title, parts[key], bold=key == "header")
        if key == "rails" and parts["diff"]:
            _part(console, "diff", "")
            console.print(Syntax(parts["diff"], "diff", background_color="default"))
    if parts["sample"]:
        _part(console, "sample (fixed prompt, fixed seed)", "\n" + parts["sample"])
    if parts["log"]:
        _part(console, f"end of runs/{n}/run.log", "\n" + parts["log"])
    return True


def _part(console: Console, title: Optional[str], body: str, bold: bool = False) -> None:
    text = Text()
    if title:
        text.append(f"{title}: ", style="bold")
    text.append(body, style="bold" if bold else "")
    console.print(text)
