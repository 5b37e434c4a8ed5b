"""How well the embedded model picks knob changes: ``own_pick_rate`` and proposal latency.

Runs the real local agent (SmolLM2-135M-Instruct through llama-cpp-python) for ``--proposals``
proposals (default 12) on the template's train.py, feeding each pick back as a ``not_improved``
experiment so the history grows as in a real run. No training happens: this measures the agent
alone. ``own_pick_rate`` is the share of proposals that were the model's own choice rather than the
harness's fallback pick; ``llm_s`` is the median seconds per proposal; ``calls`` the mean model
calls per proposal (retries included). One run, seed 7 by default.

Last line: ``own_pick_rate=<share> llm_s=<median> calls=<mean> proposals=<n>``.
Usage: python benchmarks/local_agent.py [--proposals 12] [--seed 7]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proposals", type=int, default=12)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from harness.agents.base import Context
    from harness.agents.local import LocalAgent

    source = (ROOT / "harness" / "templates" / "sandbox" / "train.py").read_text(encoding="utf-8")
    program = (ROOT / "harness" / "templates" / "program.md").read_text(encoding="utf-8")
    agent = LocalAgent.load(seed=args.seed)
    history, own, calls, seconds = [], 0, [], []
    for n in range(2, args.proposals + 2):
        prop = agent.propose(Context(n, program, {"train.py": source}, history, 2.22))
        mine = "harness picked" not in prop.knob["reason"]
        own += mine
        calls.append(prop.usage.llm_calls)
        seconds.append(prop.usage.llm_s)
        history.append({"experiment": n, "outcome": "not_improved", "val_bpb": 2.25,
                        "description": prop.description, "knob": prop.knob})
        print(f"{n:3d} {'model' if mine else 'fallback':8s} {prop.description}  ({prop.usage.llm_s:.1f} s)", flush=True)
    print(f"own_pick_rate={own / args.proposals:.2f} llm_s={statistics.median(seconds):.2f} "
          f"calls={statistics.mean(calls):.2f} proposals={args.proposals}")


if __name__ == "__main__":
    main()
