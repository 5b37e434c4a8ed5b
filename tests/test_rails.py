"""rails: static checks on a proposed train.py, from Python and from `python -m rails`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rails import ALL_RAILS, Context, ContextRail, Rail, RailConfig, Violation, check_source
from rails.syntax import SyntaxRail

REPO = Path(__file__).resolve().parents[1]

CLEAN = '''\
"""Tiny train.py for the rails tests."""
import math, time

from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, evaluate_bpb

LEARNING_RATE = 3e-4  # η, the step size
DEPTH = 4  # transformer blocks


def schedule(progress):
    """Cosine decay of the learning rate."""
    return LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * progress))


tokenizer = Tokenizer.from_directory()
t0 = time.perf_counter()
elapsed = 0.0
while elapsed < TIME_BUDGET:
    elapsed = time.perf_counter() - t0
val_bpb = evaluate_bpb(None, tokenizer, 8)
print(f"val_bpb: {val_bpb:.6f}")
'''

BROKEN_AT_LINE_10 = CLEAN.replace("def schedule(progress):", "def schedule(progress:")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "rails", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_clean_file_passes_every_rail():
    assert check_source(None, CLEAN) == []
    assert check_source(CLEAN, CLEAN.encode("utf-8")) == []


def test_syntax_error_is_reported_at_its_line_with_a_hint():
    [violation] = check_source(CLEAN, BROKEN_AT_LINE_10)
    assert violation.rule == "syntax"
    assert violation.line == 10
    assert violation.message.startswith("invalid syntax")
    assert violation.hint == "fix the syntax error at line 10; the file must parse as Python 3"


def test_unclosed_bracket_is_reported_where_it_opens():
    source = "A = 1\nB = (2,\n"
    [violation] = check_source(None, source)
    assert (violation.rule, violation.line) == ("syntax", 2)
    assert "never closed" in violation.message


def test_undecodable_bytes_fail_closed_with_the_line():
    data = CLEAN.encode("utf-8").replace(b"# transformer blocks", b"# transformer \xff blocks")
    [violation] = check_source(None, data)
    assert (violation.rule, violation.line) == ("syntax", 7)
    assert "not valid UTF-8" in violation.message and "0xff" in violation.message


def test_nul_byte_is_refused():
    [violation] = check_source(None, "A = 1\nB = 2\x00\n")
    assert (violation.rule, violation.line) == ("syntax", 2)


def test_violation_formats_as_one_line_with_path_line_rule_and_hint():
    violation = Violation("syntax", 12, "invalid syntax", "fix it")
    assert str(violation) == "train.py:12: [syntax] invalid syntax (hint: fix it)"
    assert violation.format("sandbox/train.py").startswith("sandbox/train.py:12: [syntax]")
    assert Violation("x", 0, "m", "h").format("f.py") == "f.py: [x] m (hint: h)"


def test_syntax_rail_follows_the_rail_protocol_and_runs_alone():
    rail = SyntaxRail()
    assert isinstance(rail, Rail) and rail.id == "syntax"
    assert rail.check(None, CLEAN, RailConfig()) == []
    assert rail.check(None, BROKEN_AT_LINE_10, RailConfig())[0].line == 10
    assert ALL_RAILS[0].id == "syntax"


class RecordingRail(ContextRail):
    """A later rail: records the parse tree it was given."""

    id = "recording"

    def __init__(self):
        self.modules = []

    def check_context(self, ctx: Context) -> list[Violation]:
        self.modules.append(ctx.module)
        return []


def test_later_rails_share_one_parse_and_are_skipped_after_a_syntax_failure():
    first, second = RecordingRail(), RecordingRail()
    rails = (SyntaxRail(), first, second)
    assert check_source(None, CLEAN, rails=rails) == []
    assert first.modules[0] is second.modules[0]
    assert [v.rule for v in check_source(None, BROKEN_AT_LINE_10, rails=rails)] == ["syntax"]
    assert len(first.modules) == 1


def test_rail_config_defaults_protect_the_prepare_contract():
    config = RailConfig()
    assert config.editable_files == ("train.py",)
    assert config.allowed_imports is None
    assert {"MAX_SEQ_LEN", "TIME_BUDGET", "evaluate_bpb"} <= set(config.protected_names)


def test_cli_exits_0_and_says_ok_for_a_clean_file(tmp_path):
    (tmp_path / "train.py").write_text(CLEAN, encoding="utf-8")
    (tmp_path / "parent.py").write_text(CLEAN, encoding="utf-8")
    result = run_cli("check", "train.py", "--against", "parent.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok: train.py passes {len(ALL_RAILS)} rails"


def test_cli_exits_1_and_prints_one_line_per_violation(tmp_path):
    (tmp_path / "train.py").write_bytes(BROKEN_AT_LINE_10.encode("utf-8"))
    result = run_cli("check", "train.py", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py:10: [syntax] invalid syntax")


def test_cli_exits_2_on_a_missing_file_or_bad_usage(tmp_path):
    missing = run_cli("check", "nope.py", cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read nope.py" in missing.stderr
    assert run_cli(cwd=tmp_path).returncode == 2
    assert run_cli("check", cwd=tmp_path).returncode == 2


def test_rails_import_without_the_harness():
    code = "import sys, rails; assert 'harness' not in sys.modules, 'rails imported harness'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
