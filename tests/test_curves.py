"""Training curves (harness/curves.py): read from the template's progress lines, shown to agents."""

from __future__ import annotations

from harness.curves import compare, curve, losses, summary, text
from tools import Toolbox

LOG = """device cpu | params 0.10M | vocab 2048
step     1 | loss 7.6000 | lr 3.00e-03 | 100 ms | 1,000 tok/s | epoch 0 | 0.0/10 s
step    10 | loss 5.5000 | lr 3.00e-03 | 100 ms | 1,000 tok/s | epoch 0 | 2.1/10 s
step    20 | loss 4.5000 | lr 3.00e-03 | 100 ms | 1,000 tok/s | epoch 0 | 5.1/10 s
step    30 | loss 3.9000 | lr 3.00e-03 | 100 ms | 1,000 tok/s | epoch 0 | 10.0/10 s
---
val_bpb:          2.100000
"""


def test_curve_takes_the_last_loss_printed_by_each_tenth_of_the_budget():
    assert losses(LOG)[1] == (2.1, 5.5)
    assert curve(LOG, 10) == [7.6, 7.6, 5.5, 5.5, 5.5, 4.5, 4.5, 4.5, 4.5, 3.9]
    # a run that crashed at 5.1 s: the last loss printed stands for the end
    assert curve("\n".join(LOG.splitlines()[:4]), 10)[-1] == 4.5
    assert curve("no progress lines here", 10) is None
    assert text([7.6, None, 3.9]) == "7.60 - 3.90"


def test_agents_see_the_curve_beside_the_best():
    history = [
        {"experiment": 1, "outcome": "improved", "status": "keep", "val_bpb": 2.4, "commit": "a", "run_s": 12,
         "proposal_format": "baseline", "curve": [6.0] * 9 + [3.0], "file_key": "k1"},
        {"experiment": 2, "outcome": "not_improved", "status": "discard", "val_bpb": 2.5, "commit": "b", "run_s": 12,
         "curve": [6.5] * 9 + [3.5], "file_key": "k2"},
        {"experiment": 3, "outcome": "rail_blocked", "status": "crash", "val_bpb": None, "commit": None, "run_s": None},
    ]
    assert compare(history[1], history[0]).endswith("3.50 (best #1: 6.00 6.00 6.00 6.00 6.00 6.00 6.00 6.00 6.00 3.00)")
    lines = summary(history).splitlines()
    assert lines[1].startswith("best #1: ") and lines[2].startswith("#2 (not_improved): 6.50")
    box = Toolbox(None, cfg=None, files={"train.py": ""}, history=history)
    assert "best #1" in box.call("training_curve", {"n": 2}).text
    assert "never ran" in box.call("training_curve", {"n": 3}).text
    assert box.call("training_curve", {"n": 9}).is_error
    assert box.call("ask_optimiser", {}).is_error  # no sandbox to read the trials from
