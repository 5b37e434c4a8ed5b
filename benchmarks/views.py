"""How long the views take after a ledger row: progress.png + report.html, at several ledger sizes.

A fresh sandbox (``harness init``, the shakespeare corpus) gets N rows: every experiment a real
commit of train.py with one knob changed (kept ones on the branch), outcomes in a night's mix (1 in
5 kept, 1 in 8 failed, confirmations), each kept one with a sample. Then, per size, in this process
as ``harness start`` does it:

- ``block``: how long :meth:`harness.publish.Publisher.recorded` holds the caller (the delay the
  views add before the next experiment: checkpoint pruning, starting the background round);
- ``latency``: from that call until report.html and progress.png are both rewritten (the background
  round: chart, page, git diffs of the kept changes, knob coverage);

each ``--repeats`` times after one warm-up round (the first round of a session also imports
matplotlib: reported apart as ``first``). Prints median [min-max] seconds per size.

Usage: python benchmarks/views.py [--rows 10,100,300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fill(sandbox: Path, rows: int) -> None:
    """Append ``rows`` records with real commits to the ledger of ``sandbox``."""
    from harness.config import load
    from harness.knobs import set_knobs
    from harness.ledger import ExperimentRecord, Ledger
    from harness.sandbox import Sandbox

    cfg = load(sandbox)
    sb, ledger = Sandbox(sandbox, cfg.branch), Ledger(sandbox)
    start = len(ledger.records()) + 1
    for n in range(start, start + rows):
        parent = sb.head()
        text, _ = set_knobs(sb.read("train.py"), {"LEARNING_RATE": 3e-3 * (1 + (n % 17) / 100)})
        commit = sb.commit_files({"train.py": text}, f"experiment {n}")
        outcome = ("improved" if n % 5 == 0 else "crash" if n % 8 == 0 else
                   "confirmation" if n % 5 == 1 and n > 1 else "not_improved")
        val = None if outcome == "crash" else 2.5 - n * 1e-4 + (n % 7) * 3e-3
        rec = ExperimentRecord(experiment=n, outcome=outcome, description=f"LEARNING_RATE move {n}", agent="bench",
                               commit=commit, parent=parent, val_bpb=val, run_s=70.0, train_s=60.0, wall_s=74.0,
                               steps=330, tokens=330 * 2048, tokens_per_s=11000.0, file_key=commit,
                               repeat_of=n - 1 if outcome == "confirmation" else None,
                               curve=[5.0 - i * 0.2 for i in range(10)])
        if outcome != "improved":
            sb.reset_hard(parent)
        else:
            run = sandbox / "runs" / str(n)
            run.mkdir(parents=True, exist_ok=True)
            (run / "sample.txt").write_text("ROMEO: what light through yonder window breaks " * 3)
        ledger.append(rec)


def measure(sandbox: Path, repeats: int) -> dict:
    from harness.config import load
    from harness.publish import Publisher

    pub = Publisher(sandbox, load(sandbox))
    views = (sandbox / "report.html", sandbox / "progress.png")

    def one() -> tuple[float, float]:
        before = [p.stat().st_mtime_ns if p.exists() else 0 for p in views]
        t0 = time.perf_counter()
        pub.recorded()
        block = time.perf_counter() - t0
        while any((p.stat().st_mtime_ns if p.exists() else 0) == b for p, b in zip(views, before)):
            time.sleep(0.005)
        return block, time.perf_counter() - t0

    first = one()
    runs = [one() for _ in range(repeats)]
    pub.close()
    return {"first": first, "block": [b for b, _ in runs], "latency": [lat for _, lat in runs]}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="10,100,300")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from harness.init import create_sandbox

    sizes = [int(s) for s in args.rows.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp) / "sbx"
        create_sandbox(sandbox, "shakespeare", 60, "bench")
        have = 0
        print(f"{'rows':>5}  {'block s':>22}  {'latency s':>22}  first round s   (cores: {os.cpu_count()})")
        for size in sizes:
            fill(sandbox, size - have)
            have = size
            got = measure(sandbox, args.repeats)
            print(f"{size:>5}  {spread(got['block']):>22}  {spread(got['latency']):>22}  {got['first'][1]:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
