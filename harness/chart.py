"""progress.png: val_bpb of every experiment of a sandbox, drawn with matplotlib (Agg, no display).

What it shows (x: experiment number; y: val_bpb, bits per byte, lower is better):

- kept experiments as green dots, the newest :data:`LABELS` labelled with their change (the
  description, shortened), under the running best: a step line of the figure the decision policy compared with after each
  row (the mean of the best's runs);
- the noise band: the running best +- one measured noise sd (:func:`harness.decisions.noise`),
  where the decision policy measured one;
- discarded experiments as grey dots; repeats of a file (baseline repeats, confirmations,
  re-measures) as hollow grey circles;
- experiments without a score as markers along the top edge, one marker per kind of failure:
  crashes (crash, oom, nan, timeout, missing_metric, preempted, interrupted) red x, refused edits
  (rail_blocked, patch_failed, syntax_error, duplicate, stale) orange v, LLM failures (llm_error) purple +.

Like karpathy/autoresearch's progress.png (kept as a running best, discarded as dots), plus the
failures, the noise band and the repeats.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .decisions import best_estimate, noise

PNG_NAME = "progress.png"
FAILURE_GROUPS = (
    ("crash", ("crash", "oom", "nan", "timeout", "missing_metric", "preempted", "interrupted"), "x", "#d62728"),
    ("refused", ("rail_blocked", "patch_failed", "syntax_error", "duplicate", "stale"), "v", "#ff7f0e"),
    ("LLM error", ("llm_error",), "+", "#9467bd"),
)
LABEL_CHARS = 28
#: kept changes labelled with their description: the newest ones (more would cover each other)
LABELS = 12


def _short(text: str, n: int = LABEL_CHARS) -> str:
    text = text.split(" [")[0]
    return text if len(text) <= n else text[:n - 1] + "…"


def running_best(records: list[dict]) -> list[tuple[int, float]]:
    """``(experiment, val_bpb)`` at each row where the best's figure changed: the figure the
    decision policy compared with after that row (:func:`harness.decisions.best_estimate`, the mean
    of the best's runs, refreshed by re-measures)."""
    steps: list[tuple[int, float]] = []
    for i, rec in enumerate(records):
        est = best_estimate(records[:i + 1])
        if est is not None and (not steps or steps[-1][1] != est.val_bpb):
            steps.append((rec["experiment"], est.val_bpb))
    return steps


def render(records: list[dict], path: Path, title: Optional[str] = None) -> Path:
    """Draw the chart of ``records`` (trajectory objects, in order) into ``path`` (a PNG, written
    to a temporary file and renamed, so a reader never sees half a file). Returns ``path``.

    Raises:
        OSError: the file cannot be written.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5.5), dpi=100)
    fig.subplots_adjust(left=0.07, right=0.74, top=0.93, bottom=0.1)  # the legend sits right of the axes
    ax = fig.add_subplot()
    scored = [r for r in records if r.get("val_bpb") is not None and r.get("status") != "crash"]
    kept = [r for r in scored if r.get("status") == "keep"]
    repeats = [r for r in scored if r.get("status") != "keep" and r.get("repeat_of") is not None]
    discarded = [r for r in scored if r.get("status") != "keep" and r.get("repeat_of") is None]
    if discarded:
        ax.scatter([r["experiment"] for r in discarded], [r["val_bpb"] for r in discarded], s=22,
                   color="#9a9a9a", alpha=0.8, label="discarded", zorder=2)
    if repeats:
        ax.scatter([r["experiment"] for r in repeats], [r["val_bpb"] for r in repeats], s=26,
                   facecolors="none", edgecolors="#7a7a7a", label="repeat of a file (seed)",
                   zorder=2)
    last_n = records[-1]["experiment"] if records else 1
    steps = running_best(records)
    if steps:
        xs, ys = [n for n, _ in steps] + [last_n], [v for _, v in steps]
        ys = ys + [ys[-1]]
        ax.step(xs, ys, where="post", color="#2ca02c", linewidth=1.8, label="running best (the policy's figure)",
                zorder=3)
        sd = noise(records).sd
        if sd:
            ax.fill_between(xs, [y - sd for y in ys], [y + sd for y in ys], step="post", color="#2ca02c",
                            alpha=0.15, linewidth=0, label=f"noise band (±1 sd = {sd:.4f})")
    if kept:
        ax.scatter([r["experiment"] for r in kept], [r["val_bpb"] for r in kept], s=40, color="#2ca02c", zorder=4,
                   label="kept")
        for r in kept[-LABELS:]:
            ax.annotate(_short(r.get("description", "")), (r["experiment"], r["val_bpb"]), xytext=(4, -10),
                        textcoords="offset points", fontsize=7, rotation=-25, color="#1f5f1f")
    if scored:
        lo, hi = min(r["val_bpb"] for r in scored), max(r["val_bpb"] for r in scored)
        pad = max((hi - lo) * 0.08, 1e-3)
        top = hi + 2 * pad
        ax.set_ylim(lo - 3 * pad, top + pad)
    else:
        top = 1.0
    for name, outcomes, marker, color in FAILURE_GROUPS:
        failed = [r["experiment"] for r in records if r.get("outcome") in outcomes]
        if failed:
            ax.scatter(failed, [top] * len(failed), marker=marker, color=color, s=40, label=name, zorder=5,
                       clip_on=False)
    ax.set_xlabel("experiment")
    ax.set_ylabel("val_bpb (bits per byte, lower is better)")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(0.5, max(last_n, 2) + 0.5)
    best = steps[-1][1] if steps else None
    ax.set_title(title or f"{len(records)} experiments, {len(kept)} kept"
                 + (f", best val_bpb {best:.6f}" if best is not None else ""))
    if records:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
