"""Latency of all static rails together: ``rails_p99_ms`` (see shared BENCHMARKS.md).

Input: the template's train.py followed by renamed copies of its functions and classes until it
is about 630 lines (a realistic size for an evolved train.py), checked against the template as the
parent. 20 warm-up checks, then 200 timed checks of ``rails.check_source`` in this one process;
prints p50, p99 and max in milliseconds. Last line: ``rails_p99_ms=<p99> rails_p50_ms=<p50> lines=<n>``.
Usage: python benchmarks/rails_latency.py [--checks 200]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sample_file(target_lines: int = 630) -> str:
    """The template grown to about ``target_lines`` lines with renamed copies of its top-level
    functions and classes, added one at a time."""
    template = (ROOT / "harness" / "templates" / "sandbox" / "train.py").read_text(encoding="utf-8")
    units = re.findall(r"^(?:def|class) \w+.*?(?=^\S)", template, flags=re.M | re.S)
    text, i = template, 0
    while text.count("\n") < target_lines:
        unit = units[i % len(units)]
        i += 1
        text += "\n\n" + re.sub(r"^(def|class) (\w+)", lambda m: f"{m.group(1)} {m.group(2)}_v{i}", unit).rstrip() + "\n"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checks", type=int, default=200)
    args = ap.parse_args()
    from rails import RailConfig, check_source

    parent = (ROOT / "harness" / "templates" / "sandbox" / "train.py").read_text(encoding="utf-8")
    source = sample_file()
    violations = check_source(parent, source, RailConfig())
    cfg = RailConfig()
    for _ in range(20):
        check_source(parent, source, cfg)
    times = []
    for _ in range(args.checks):
        t0 = time.perf_counter()
        check_source(parent, source, cfg)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p50, p99 = statistics.median(times), times[int(0.99 * (len(times) - 1))]
    print(f"{source.count(chr(10))} lines, {len(violations)} violations on the sample, {args.checks} checks")
    print(f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {times[-1]:.1f} ms")
    print(f"rails_p99_ms={p99:.1f} rails_p50_ms={p50:.1f} lines={source.count(chr(10))}")


if __name__ == "__main__":
    main()
