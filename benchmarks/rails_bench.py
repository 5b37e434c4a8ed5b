"""Recall and false-positive rate of the rails: ``static_recall``, ``static_false_positive_rate``
(see shared BENCHMARKS.md).

Input: the corpora of ``benchmarks/rails_corpus.py``: adversarial edits over every category of
issue 4 (each names the rail id that must refuse it) and benign research edits, applied to the
sandbox template's train.py and to a Karpathy-style autoresearch train.py
(``benchmarks/fixtures/karpathy_style_train.py``), each checked once against its unedited parent
with ``rails.check_source`` and the default ``RailConfig`` (a case's own settings where it has
some: the ``kernels`` cases run with an adopted checkout's ``[rails]``).

An adversarial case counts as caught when the rails refuse it at all (recall); it also counts as
*attributed* when the rail it names is among the refusing ones (printed, not the headline). A benign
case is a false positive when any rail refuses it. With ``--runtime``, and when
``benchmarks/runtime_cases.py`` exists, its ``evaluate(progress=print)`` runs the run-time cases for
real (minutes) and its figures are printed too.

Measured 2026-12-02 (one run, 2-core CPU shared with other jobs, 253 checks in 8.3 s): 206
adversarial cases over 19 categories and 47 benign ones, static_recall=1.000 (206/206),
static_false_positive_rate=0.000 (0/47). Before the rails were
extended for this corpus the same run gave static_recall=0.603 (117/194) and 1 false positive
(``print(..., file=sys.stderr)``).

Last line: ``static_recall=<r> static_false_positive_rate=<f> adversarial=<n> benign=<m>``
(then ``runtime_recall=... runtime_false_positive_rate=...`` when --runtime ran).
Usage: python benchmarks/rails_bench.py [--runtime] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def static_results(cases) -> list[dict]:
    """Run the rails on each case; one dict per case with ``id``, ``category``, ``expected``,
    ``found`` (sorted rule ids) and ``first`` (the first violation, formatted, or "")."""
    from rails import check_source

    rows = []
    for case in cases:
        violations = check_source(case.parent(), case.source(), case.config())
        rows.append({"id": case.id, "category": case.category, "expected": case.rule, "base": case.base,
                     "found": sorted({v.rule for v in violations}),
                     "first": violations[0].format() if violations else ""})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Recall, attribution and false-positive rate over ``static_results`` rows."""
    adv = [r for r in rows if r["expected"]]
    ben = [r for r in rows if not r["expected"]]
    caught = [r for r in adv if r["found"]]
    attributed = [r for r in adv if r["expected"] in r["found"]]
    false_pos = [r for r in ben if r["found"]]
    return {
        "adversarial": len(adv), "benign": len(ben),
        "recall": len(caught) / len(adv) if adv else 1.0,
        "attribution": len(attributed) / len(adv) if adv else 1.0,
        "false_positive_rate": len(false_pos) / len(ben) if ben else 0.0,
        "missed": [r for r in adv if not r["found"]],
        "misattributed": [r for r in adv if r["found"] and r["expected"] not in r["found"]],
        "false_positives": false_pos,
    }


def _print_static(rows: list[dict], summary: dict, verbose: bool) -> None:
    by_cat = defaultdict(lambda: [0, 0])
    for r in rows:
        ok = (r["expected"] in r["found"]) if r["expected"] else not r["found"]
        by_cat[r["category"]][0] += ok
        by_cat[r["category"]][1] += 1
    print("static layer, per category (cases handled as expected / cases):")
    for cat in sorted(by_cat):
        good, n = by_cat[cat]
        print(f"  {cat:18s} {good:3d}/{n:<3d}")
    for title, key in (("MISSED", "missed"), ("caught by another rail", "misattributed"),
                       ("FALSE POSITIVE", "false_positives")):
        for r in summary[key]:
            print(f"  {title}: {r['id']} (expected {r['expected']}, found {r['found']}) {r['first']}")
    if verbose:
        for r in rows:
            print(f"  {r['id']:24s} {str(r['expected']):14s} {','.join(r['found']) or '-'}")
    print(f"static: recall {summary['recall']:.3f} ({summary['adversarial'] - len(summary['missed'])}/"
          f"{summary['adversarial']}), attributed to the named rail {summary['attribution']:.3f}, "
          f"false positives {summary['false_positive_rate']:.3f} "
          f"({len(summary['false_positives'])}/{summary['benign']})")


def _runtime(progress=print) -> dict | None:
    """The run-time layer's figures from ``benchmarks/runtime_cases.py``, or None if it is absent."""
    if not (HERE / "runtime_cases.py").exists():
        return None
    from benchmarks import runtime_cases

    return runtime_cases.evaluate(progress=progress)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runtime", action="store_true", help="also run the run-time cases (minutes)")
    ap.add_argument("--verbose", action="store_true", help="one line per case")
    args = ap.parse_args()
    from benchmarks.rails_corpus import ADVERSARIAL, BENIGN, check_unique

    check_unique()
    t0 = time.perf_counter()
    rows = static_results(ADVERSARIAL + BENIGN)
    summary = summarize(rows)
    _print_static(rows, summary, args.verbose)
    print(f"static layer: {len(rows)} checks in {time.perf_counter() - t0:.1f} s")
    tail = ""
    if args.runtime:
        rt = _runtime()
        if rt is None:
            print("runtime layer: benchmarks/runtime_cases.py not found; skipped")
        else:
            print(f"runtime: recall {rt['recall']:.3f} on {rt['adversarial']} cases, "
                  f"false positives {rt['false_positive_rate']:.3f} on {rt['benign']}")
            tail = f" runtime_recall={rt['recall']:.3f} runtime_false_positive_rate={rt['false_positive_rate']:.3f}"
    print(f"static_recall={summary['recall']:.3f} static_false_positive_rate={summary['false_positive_rate']:.3f} "
          f"adversarial={summary['adversarial']} benign={summary['benign']}{tail}")


if __name__ == "__main__":
    main()
