"""Shared fixtures: a real sandbox from the real template on a small real corpus, with a tiny
model so that one experiment takes a few seconds on 2 CPU cores."""

from __future__ import annotations

import os
import re
import sysconfig
from pathlib import Path

import pytest

from harness.init import create_sandbox
from harness.sandbox import Sandbox

#: Fast settings for tests (train.py knobs); the rest of train.py is the real template.
TINY = {"DEPTH": "1", "N_EMBD": "32", "N_HEAD": "2", "BATCH_SIZE": "8", "EVAL_BATCH_SIZE": "32"}
STDLIB_FILES = ("textwrap.py", "argparse.py", "difflib.py", "shlex.py", "calendar.py")


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Point prepare.py's cache at a session-wide temp folder (children inherit the variable)."""
    cache = tmp_path_factory.mktemp("arcache")
    old = os.environ.get("AUTORESEARCH_CACHE")
    os.environ["AUTORESEARCH_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("AUTORESEARCH_CACHE", None)
    else:
        os.environ["AUTORESEARCH_CACHE"] = old


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """A small real corpus: a few modules of the Python standard library (~400 KB of text)."""
    d = tmp_path_factory.mktemp("corpus")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_FILES:
        (d / name).write_text((stdlib / name).read_text(encoding="utf-8"), encoding="utf-8")
    return d


#: the [policy] most plumbing tests use: greedy keep, the baseline once
GREEDY_ONCE = {"keep": '"greedy"', "baseline_runs": "1"}


def set_policy(toml: str, settings: dict) -> str:
    """Rewrite ``[policy]`` settings of a harness.toml text (values as TOML literals)."""
    for name, value in settings.items():
        toml, n = re.subn(rf"^{name} = \S+", f"{name} = {value}", toml, flags=re.M)
        assert n == 1, name
    return toml


def set_knobs(source: str, **values: str) -> str:
    """Rewrite ``NAME = value`` lines of train.py (test helper; the harness uses libcst)."""
    for name, value in values.items():
        source, n = re.subn(rf"^{name} = [^#\n]*", f"{name} = {value}", source, flags=re.M)
        assert n == 1, name
    return source


@pytest.fixture
def make_sandbox(tmp_path, corpus_dir):
    """Factory: a prepared sandbox with a tiny model committed by the 'human' before the run.

    Args of the factory: ``time_budget_s`` (default 2), ``allowance_s`` (default 60), ``policy``
    (``[policy]`` settings to write; default ``GREEDY_ONCE``: Karpathy's rule and one baseline run,
    which the tests of the loop's plumbing count on; ``{}`` keeps harness init's defaults) and knob
    overrides for train.py.
    """

    def make(time_budget_s: int = 2, allowance_s: float = 60, name: str = "sbx", policy: dict | None = None,
             **knobs):
        dest = tmp_path / name
        cfg = create_sandbox(dest, str(corpus_dir), time_budget_s, "test")
        toml = re.sub(r"allowance_s = \S+", f"allowance_s = {allowance_s}", (dest / "harness.toml").read_text())
        (dest / "harness.toml").write_text(set_policy(toml, GREEDY_ONCE if policy is None else policy))
        sb = Sandbox(dest, cfg.branch)
        train = set_knobs(sb.read("train.py"), **{**TINY, **knobs})
        sb.commit_files({"train.py": train, "harness.toml": (dest / "harness.toml").read_text()}, "tiny model for tests")
        return dest

    return make
