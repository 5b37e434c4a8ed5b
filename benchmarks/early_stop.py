"""Would early stopping pay? Replays real sessions' training curves against an early-stop rule.

The rule under test (issue 13, item 5): a run whose training loss at fraction ``f`` of the time
budget is worse than the best run's at ``f`` by more than ``k`` noise units is stopped there.
The noise unit at ``f`` is the pooled sd of the training loss at ``f`` between runs of the same
file (baseline repeats, confirmations, re-measures), from the session's own history up to then.

Input: the ``trajectory.jsonl`` of real sessions (``--ledger``; their rows carry ``curve``: the
training loss at 10%..100% of the budget, harness/curves.py). Each session is replayed in order;
for each proposal that ran to a score, with the best (harness.decisions.best_estimate) and the
noise as they were when it ran, each rule (f in 0.2..0.8, k in 2, 3, 5, 10) says stop or go.

Per rule: runs stopped, kept experiments (``improved``) that would have been stopped (a lost
winner), and the share of all proposals' training time saved. The last line names the rule that
saves most without losing a winner (or says none does):
``early_stop_saving=<share> rule=f<f>k<k> winners_lost=0 proposals=<n> sessions=<s>``.

Usage: python benchmarks/early_stop.py --ledger S1/trajectory.jsonl S2/trajectory.jsonl ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FRACTIONS = (0.2, 0.3, 0.5, 0.7, 0.8)
MARGINS = (2, 3, 5, 10)


def loss_sd(history: list[dict], point: int) -> float | None:
    """Pooled sd of the training loss at curve ``point`` within groups of runs of the same file
    (:func:`harness.decisions.within_groups`, as the noise of val_bpb is pooled)."""
    from harness.decisions import within_groups

    groups: dict[str, list[float]] = {}
    for r in history:
        c = r.get("curve")
        if r.get("file_key") and c and len(c) > point and c[point] is not None and r.get("val_bpb") is not None:
            groups.setdefault(r["file_key"], []).append(c[point])
    return within_groups(groups.values()).sd


def replay(rows: list[dict]) -> list[dict]:
    """For each proposal of one session that scored: its outcome, curve, the best's curve then,
    the loss sd per point then, and its training seconds."""
    from harness.decisions import best_estimate

    out = []
    for i, r in enumerate(rows):
        if r.get("repeat_of") or r.get("proposal_format") in ("baseline", "repeat", None) or not r.get("curve") \
                or r.get("val_bpb") is None:
            continue
        history = rows[:i]
        est = best_estimate(history)
        best = next((h for h in history if est and h["experiment"] == est.experiment), None)
        if not best or not best.get("curve"):
            continue
        points = len(r["curve"])
        out.append({"outcome": r["outcome"], "curve": r["curve"], "best": best["curve"], "train_s": r.get("train_s") or 0,
                    "sd": [loss_sd(history, p) for p in range(points)]})
    return out


def judge(runs: list[dict], f: float, k: float) -> dict:
    """Apply the rule stop-at-``f``-beyond-``k``-sd to ``runs`` (from :func:`replay`)."""
    stopped = lost = 0
    saved = total = 0.0
    for run in runs:
        total += run["train_s"]
        p = round(f * len(run["curve"])) - 1
        loss, ref, sd = run["curve"][p], run["best"][p] if p < len(run["best"]) else None, run["sd"][p]
        if loss is None or ref is None or not sd:
            continue
        if loss - ref > k * sd:
            stopped += 1
            lost += run["outcome"] == "improved"
            saved += run["train_s"] * (1 - f)
    return {"stopped": stopped, "lost": lost, "saved": saved / total if total else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ledger", nargs="+", required=True)
    args = ap.parse_args()

    runs, sessions = [], 0
    for path in args.ledger:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        got = replay(rows)
        sessions += bool(got)
        runs += got
    kept = sum(r["outcome"] == "improved" for r in runs)
    print(f"{len(runs)} proposals with curves ({kept} kept) in {sessions} sessions")
    best = None
    for f in FRACTIONS:
        for k in MARGINS:
            j = judge(runs, f, k)
            print(f"stop at {f:.0%} of the budget beyond {k} sd: {j['stopped']:3d} stopped, {j['lost']} kept ones "
                  f"among them, {j['saved']:.1%} of training time saved")
            if j["lost"] == 0 and j["stopped"] and (best is None or j["saved"] > best[2]["saved"]):
                best = (f, k, j)
    if best is None:
        print(f"early_stop_saving=0 rule=none winners_lost=none proposals={len(runs)} sessions={sessions}")
    else:
        f, k, j = best
        print(f"early_stop_saving={j['saved']:.3f} rule=f{f:g}k{k:g} winners_lost=0 proposals={len(runs)} "
              f"sessions={sessions}")


if __name__ == "__main__":
    sys.exit(main())
