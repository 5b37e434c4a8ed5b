"""The rails are configured per sandbox from harness.toml's [rails] section: parsed into
HarnessConfig, passed to RailConfig by check_proposal and by `harness rails check`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import ConfigError, HarnessConfig, load, render
from harness.experiment import check_proposal
from rails import RailConfig

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "harness" / "templates" / "sandbox"
KERNELS = "\nimport torch\nimport kernels\n"


def sandbox(tmp_path: Path, rails_toml: str = "") -> Path:
    """A folder with the template's prepare.py and train.py and a harness.toml (+ ``rails_toml``)."""
    for name in ("prepare.py", "train.py"):
        shutil.copy(TEMPLATE_DIR / name, tmp_path / name)
    from harness.config import read_constant

    cfg = HarnessConfig(tag="t", time_budget_s=int(read_constant(tmp_path / "prepare.py", "TIME_BUDGET")))
    text = render(cfg)
    if rails_toml:
        text = text.split("[rails]")[0] + "[rails]\n" + rails_toml
    (tmp_path / "harness.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_render_writes_a_rails_section_that_loads_back_to_the_defaults(tmp_path):
    cfg = load(sandbox(tmp_path))
    assert "[rails]" in (tmp_path / "harness.toml").read_text()
    assert (cfg.allowed_imports, cfg.allowed_imports_extra, cfg.protected_names) == (None, (), None)
    assert RailConfig(**cfg.rail_settings()) == RailConfig()


def test_rails_settings_are_parsed_and_reach_rail_config(tmp_path):
    cfg = load(sandbox(tmp_path, 'allowed_imports_extra = ["kernels"]\nprotected_names = ["TIME_BUDGET", "FOO"]\n'))
    assert cfg.allowed_imports_extra == ("kernels",)
    rail_cfg = RailConfig(**cfg.rail_settings())
    assert rail_cfg.allowed_imports_extra == ("kernels",) and rail_cfg.protected_names == ("TIME_BUDGET", "FOO")
    assert rail_cfg.allowed_imports is None and rail_cfg.editable_files == ("train.py",)
    full = load(sandbox(tmp_path, 'allowed_imports = ["torch", "math", "time", "sys", "prepare"]\n'))
    assert RailConfig(**full.rail_settings()).allowed_imports == ("torch", "math", "time", "sys", "prepare")


@pytest.mark.parametrize("bad", ['allowed_imports_extra = "kernels"\n', 'allowed_imports_extra = ["no way"]\n',
                                 "protected_names = [1]\n"])
def test_malformed_rails_settings_are_a_config_error(tmp_path, bad):
    with pytest.raises(ConfigError, match="allowed_imports_extra|protected_names"):
        load(sandbox(tmp_path, bad))


def _diff(old: str, new: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/train.py", "b/train.py"))


def test_check_proposal_uses_the_sandbox_allowlist(tmp_path):
    from harness.agents.base import Proposal

    old = (TEMPLATE_DIR / "train.py").read_text()
    new = old.replace("\nimport torch\n", KERNELS, 1)
    proposal = Proposal(diff=_diff(old, new), description="use kernels")
    refused = check_proposal(proposal, {"train.py": old}, HarnessConfig(tag="t"))
    assert refused.outcome == "rail_blocked" and "[imports]" in refused.detail
    allowed = check_proposal(proposal, {"train.py": old}, HarnessConfig(tag="t", allowed_imports_extra=("kernels",)))
    assert allowed.outcome is None and allowed.files["train.py"] == new


def test_cli_rails_check_reads_the_sandbox_settings(tmp_path):
    box = sandbox(tmp_path)
    (box / "train.py").write_text((box / "train.py").read_text().replace("\nimport torch\n", KERNELS, 1))

    def check(*extra):
        return subprocess.run([sys.executable, "-m", "harness", "rails", "check", str(box / "train.py"), *extra],
                              capture_output=True, text=True, timeout=120)

    res = check()
    assert res.returncode == 1 and "import of 'kernels'" in res.stdout
    sandbox(box, 'allowed_imports_extra = ["kernels"]\n')
    (box / "train.py").write_text((TEMPLATE_DIR / "train.py").read_text().replace("\nimport torch\n", KERNELS, 1))
    res = check("--sandbox", str(box))
    assert res.returncode == 0, res.stdout + res.stderr
    sandbox(box, 'allowed_imports_extra = "kernels"\n')
    res = check()
    assert res.returncode == 2 and "allowed_imports_extra" in res.stderr


def test_kernel_repos_load_render_back_and_reach_rail_config(tmp_path):
    repos = ("varunneal/flash-attention-3", "kernels-community/flash-attn3")
    box = sandbox(tmp_path, f'allowed_imports_extra = ["kernels"]\nkernel_repos = ["{repos[0]}", "{repos[1]}"]\n')
    cfg = load(box)
    assert (cfg.allowed_imports_extra, cfg.kernel_repos) == (("kernels",), repos)
    assert RailConfig(**cfg.rail_settings()).kernel_repos == repos
    text = render(cfg)
    assert f'kernel_repos = ["{repos[0]}", "{repos[1]}"]' in text
    (box / "harness.toml").write_text(text, encoding="utf-8")
    assert load(box) == cfg and render(load(box)) == text
    assert load(sandbox(tmp_path)).kernel_repos == ()


@pytest.mark.parametrize("bad", ['kernel_repos = "kernels-community/flash-attn3"\n',
                                 'kernel_repos = ["flash-attn3"]\n', 'kernel_repos = ["a/b/c"]\n',
                                 'kernel_repos = ["owner/na me"]\n', "kernel_repos = [3]\n"])
def test_malformed_kernel_repos_are_a_config_error(tmp_path, bad):
    with pytest.raises(ConfigError, match="kernel_repos must be a list of Hugging Face repositories"):
        load(sandbox(tmp_path, bad))
