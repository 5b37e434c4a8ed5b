"""Run-time adversarial cases of benchmarks/runtime_cases.py, run for real on the template with a
1 s budget and a tiny model: each must end with its expected outcome and pass its extra check."""

from __future__ import annotations

import pytest

from benchmarks import runtime_cases as rc

pytestmark = pytest.mark.slow
CASES = {case.name: case for case in rc.cases()}


@pytest.fixture(scope="module")
def corpus_and_cache(tmp_path_factory):
    """The stdlib corpus and a data cache shared by the module's cases (prepared by the first)."""
    root = tmp_path_factory.mktemp("runtime")
    cache = root / "cache"
    cache.mkdir()
    return rc.make_corpus(root / "corpus"), cache


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.kind != "gap"])
def test_runtime_case(name, corpus_and_cache, tmp_path):
    corpus, cache = corpus_and_cache
    row = rc.run_case(CASES[name], tmp_path, corpus, cache)
    assert row["ok"], f"{name}: {row['outcome']} ({row['detail']})"
    if name == "forged_print_after_evaluation":
        assert row["val_bpb"] is not None and row["val_bpb"] > 0.5  # the real score, not the forged one


def test_the_known_gap_is_still_a_gap(corpus_and_cache, tmp_path):
    """A train.py that reads the result path from /proc/self/environ and writes the file itself is
    scored: the in-process evaluation cannot stop it (only the static rails do). If this starts
    failing, the gap is closed: move the case to the adversarial kind."""
    corpus, cache = corpus_and_cache
    row = rc.run_case(CASES["forges_the_result_file"], tmp_path, corpus, cache)
    assert not row["ok"] and row["outcome"] == "ok" and row["val_bpb"] == rc.FORGED
