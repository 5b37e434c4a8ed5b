"""Training curves: the training loss of a run at fixed fractions of its time budget.

train.py prints progress lines (the template's: ``step   120 | loss 3.1416 | ... | 12.3/60 s``);
the curve is read from the run's log after the run: for each of ``POINTS`` fractions
``k / POINTS`` of the time budget, the last loss printed at or before that much training time.
The record keeps those points (``curve``); ``runs/<n>/curve.json`` beside the log keeps every
printed ``(training seconds, loss)``.
The curve is for agents and people (how fast a change learns, whether it was still improving at
the end); no decision reads it, and it is never the metric (val_bpb comes from the trusted
result file). A train.py that prints no such lines has no curve (None).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

POINTS = 10
_LINE = re.compile(r"\bloss[\s:=]+(?P<loss>[-+0-9.eE]+|nan|inf).*?(?P<t>[0-9.]+)\s*/\s*[0-9.]+\s*s\b")


def losses(log_text: str) -> list[tuple[float, float]]:
    """``(training_seconds, loss)`` of every progress line of ``log_text``, in order."""
    out = []
    for line in log_text.splitlines():
        m = _LINE.search(line)
        if m:
            try:
                out.append((float(m["t"]), float(m["loss"])))
            except ValueError:
                continue
    return out


def curve(log_text: str, budget_s: float, points: int = POINTS) -> Optional[list]:
    """The loss at ``k / points`` of ``budget_s`` training seconds, k = 1..points (None where
    nothing was printed by then), rounded to 4 decimals; None if the log has no progress line."""
    series = losses(log_text)
    if not series or budget_s <= 0:
        return None
    out = []
    for k in range(1, points + 1):
        t = budget_s * k / points
        before = [loss for s, loss in series if s <= t + 1e-9]
        out.append(round(before[-1], 4) if before else None)
    if out[-1] is None:  # the run ended early (crash): the last printed loss stands for the end
        out[-1] = round(series[-1][1], 4)
    return out


def curve_of_run(log_path: Path, budget_s: float) -> Optional[list]:
    """:func:`curve` of the log file at ``log_path`` (None if it cannot be read or has no
    progress line); the whole series goes beside the log as ``curve.json``: ``{"budget_s",
    "curve", "series": [[training_seconds, loss], ...]}`` (a failed write is ignored: the curve
    is informational)."""
    try:
        log_text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    values = curve(log_text, budget_s)
    if values is not None:
        try:
            (Path(log_path).parent / "curve.json").write_text(json.dumps(
                {"budget_s": budget_s, "curve": values, "series": losses(log_text)}), encoding="utf-8")
        except OSError:
            pass
    return values


def text(values: Optional[list]) -> str:
    """A curve in one line, e.g. ``5.12 4.01 3.55 ... 2.61`` (``-`` for a missing point)."""
    if not values:
        return "no curve"
    return " ".join("-" if v is None else f"{v:.2f}" for v in values)


def compare(rec: dict, best: Optional[dict]) -> str:
    """Experiment ``rec``'s curve beside the best's, e.g. ``#12 loss at 10%..100% of the budget:
    5.1 ... 2.6 (best #9: 5.0 ... 2.5)``."""
    line = f"#{rec['experiment']} training loss at 10%..100% of the budget: {text(rec.get('curve'))}"
    if best and best.get("curve") and best["experiment"] != rec["experiment"]:
        line += f" (best #{best['experiment']}: {text(best['curve'])})"
    return line


def best_record(history: list) -> Optional[dict]:
    """The record of the best experiment (:func:`harness.decisions.best_estimate`), or None."""
    from .decisions import best_estimate

    est = best_estimate(history)
    return next((r for r in history if est and r["experiment"] == est.experiment), None)


def summary(history: list, last: int = 3) -> str:
    """The curves of the last ``last`` experiments that have one (repeats left out) beside the
    best's, one line each; ``""`` when none has a curve."""
    best = best_record(history)
    recent = [r for r in history if r.get("curve") and not r.get("repeat_of")][-last:]
    if not recent:
        return ""
    lines = ["Training loss at 10%..100% of the time budget (training_curve shows any run's):"]
    if best and best.get("curve"):
        lines.append(f"best #{best['experiment']}: {text(best['curve'])}")
    lines += [f"#{r['experiment']} ({r['outcome']}): {text(r['curve'])}" for r in recent
              if not best or r["experiment"] != best["experiment"]]
    return "\n".join(lines)
