"""The fine-tune template (`harness init --template finetune`): the embedded SmolLM2-135M-Instruct
converted once, its reference val_bpb, LoRA runs scored by the trusted evaluation, the adapter as
the checkpoint, tampering and non-causal models caught, knobs the menu can move."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from harness.config import load
from harness.init import InitError, create_sandbox
from harness.knobs import apply_action, find_knobs
from harness.runner import run_experiment

pytest.importorskip("peft")
TRAIN = Path(__file__).resolve().parents[1] / "harness" / "templates" / "finetune" / "train.py"


@pytest.fixture(scope="session")
def finetune_sandbox(tmp_path_factory, corpus_dir):
    """One fine-tune sandbox on the small test corpus (3 s budget), prepared once: the GGUF
    conversion and the reference score take about a minute on 2 cores."""
    dest = tmp_path_factory.mktemp("ft") / "sandbox"
    create_sandbox(dest, str(corpus_dir), 3, "ft", template_name="finetune")
    return dest


def folder_of(sandbox: Path) -> Path:
    from harness.datacache import corpus_dir, root

    return corpus_dir(sandbox, root(sandbox))


def run(sandbox: Path, tmp_path: Path, checkpoint: bool = False):
    cfg = load(sandbox)
    return run_experiment(cfg.command, sandbox, tmp_path / "run", cfg.time_budget_s, cfg.hard_limit_s,
                          cfg.over_budget_tolerance_s, checkpoint=checkpoint)


@pytest.mark.slow
def test_init_converts_the_base_model_once_and_records_its_reference(finetune_sandbox):
    from rails import RailConfig, check_source

    folder = folder_of(finetune_sandbox)
    assert folder.name.endswith("--smollm2-135m-instruct")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["base_model"] == "smollm2-135m-instruct" and meta["vocab_size"] == 49152
    assert 0.5 < meta["base_val_bpb"] < 8 and math.isfinite(meta["base_val_bpb"])
    assert (folder / "model" / "config.json").exists() and list((folder / "model").glob("*.safetensors"))
    from harness.report import base_reference, summary_lines

    assert base_reference(finetune_sandbox) == meta["base_val_bpb"]
    assert any(line.startswith("reference: the base model before any fine-tuning") for line in
               summary_lines(finetune_sandbox, []))
    cfg = load(finetune_sandbox)
    assert cfg.allowed_imports_extra == ("peft",)
    text = (finetune_sandbox / "train.py").read_text()
    assert check_source(None, text, RailConfig(**cfg.rail_settings())) == []


@pytest.mark.slow
def test_a_lora_run_is_scored_and_keeps_only_the_adapter(finetune_sandbox, tmp_path):
    import torch

    base = json.loads((folder_of(finetune_sandbox) / "meta.json").read_text())["base_val_bpb"]
    res = run(finetune_sandbox, tmp_path, checkpoint=True)
    assert res.outcome == "ok", (res.detail, res.log_tail)
    assert abs(res.val_bpb - base) < 0.5 and res.steps >= 1  # a few LoRA steps move the base model a little
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert state and all("lora_" in k for k in state)  # the adapter, not the 135M frozen weights
    assert res.checkpoint_bytes < 5e6 and (tmp_path / "run" / "sample.txt").read_text().strip()


CHEATS = {
    "cross_entropy_patched": ("import torch.nn.functional as F\n_ce = F.cross_entropy\n"
                              "F.cross_entropy = lambda *a, **k: _ce(*a, **k) * 0.5\n", "replaced at run time"),
    "sees_the_future": ("class _Future(torch.nn.Module):\n"
                        "    def __init__(self, inner):\n        super().__init__()\n        self.inner = inner\n\n"
                        "    def forward(self, x, *a, **k):\n        return self.inner(torch.roll(x, -1, dims=1))\n\n\n"
                        "model = _Future(model)\n", "not causal"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHEATS))
def test_the_trusted_evaluation_catches_tampering_and_non_causal_models(finetune_sandbox, tmp_path, name):
    import subprocess

    code, expected = CHEATS[name]
    sandbox = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(finetune_sandbox), str(sandbox)], check=True)
    text = (sandbox / "train.py").read_text()
    anchor = "with autocast:\n    val_bpb = evaluate_bpb("
    assert text.count(anchor) == 1
    (sandbox / "train.py").write_text(text.replace(anchor, code + anchor))
    res = run(sandbox, tmp_path)
    assert res.outcome == "integrity_violation" and expected in res.detail, (res.outcome, res.detail, res.log_tail[-800:])


def test_the_knob_menu_moves_the_fine_tune_settings_and_the_results_pass_the_rails():
    from rails import RailConfig, check_source

    text = TRAIN.read_text()
    names = {k.name for k in find_knobs(text)}
    assert {"FULL_FINETUNE", "LORA_RANK", "LORA_ALPHA", "LORA_MLP", "TRAIN_LAST_LAYERS", "LEARNING_RATE",
            "BATCH_SIZE", "TRAIN_SEQ_LEN", "WARMDOWN_FRAC"} <= names
    config = RailConfig(allowed_imports_extra=("peft",))
    assert check_source(None, text, config) == []
    for knob, action in (("FULL_FINETUNE", "toggle"), ("LORA_RANK", "double"), ("LORA_MLP", "toggle"),
                         ("TRAIN_LAST_LAYERS", "+1"), ("LEARNING_RATE", "x1.4")):
        new, _ = apply_action(text, knob, action)
        assert new != text and check_source(text, new, config) == [], (knob, action)
    assert [v.rule for v in check_source(None, text, RailConfig())] == ["imports"]  # peft only where allowed


def test_init_refuses_a_base_model_without_the_template_and_unknown_templates(tmp_path):
    with pytest.raises(InitError, match="--base-model needs --template finetune"):
        create_sandbox(tmp_path / "a", "shakespeare", 60, "t", prepare=False, base_model="x/y")
    with pytest.raises(InitError, match="--template must be one of"):
        create_sandbox(tmp_path / "b", "shakespeare", 60, "t", prepare=False, template_name="mlx")


def test_init_writes_the_fine_tune_constants_and_keeps_a_local_base_model_path(tmp_path):
    base = tmp_path / "my-model"
    base.mkdir()
    create_sandbox(tmp_path / "s", "shakespeare", 60, "t", prepare=False, template_name="finetune",
                   base_model=str(base))
    prepare = (tmp_path / "s" / "prepare.py").read_text()
    assert re.search(rf'^BASE_MODEL = "{re.escape(str(base.resolve()))}"', prepare, re.M)
    assert re.search(r"^EVAL_TOKENS = 4096\b", prepare, re.M) and re.search(r"^SAMPLE_TOKENS = 60\b", prepare, re.M)
    assert (tmp_path / "s" / "train.py").read_text() == TRAIN.read_text()
    assert "fine-tuning a\npretrained language model" in (tmp_path / "s" / "program.md").read_text()
    assert "~14 s for SmolLM2-135M" in prepare  # the comments follow the values
