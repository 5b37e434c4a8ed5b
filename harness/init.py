"""``harness init``: create a sandbox from the packaged template (``harness/templates/sandbox/`` and
``program.md``, see :mod:`harness.package_data`).

Steps: copy the template, write the chosen corpus and time budget into prepare.py's constants,
write ``harness.toml`` and the files for agent CLIs (:mod:`harness.agent_files`), ``git init`` with a first commit on ``main``, create branch
``autoresearch/<tag>``, then run ``python prepare.py`` (download, tokenizer, token files; it shows
its own progress bar).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

from .config import HarnessConfig, render
from .package_data import FINETUNE_PROGRAM, FINETUNE_TRAIN, PROGRAM, SANDBOX, PackageDataError, copy_template, template

TEMPLATES = ("scratch", "finetune")
#: prepare.py constants of the fine-tune template: a shorter evaluation and sample (SmolLM2-135M's
#: forward pass scores ~300 tokens a second on 2 CPU cores: 4096 tokens in ~14 s)
FINETUNE_CONSTANTS = {
    "MAX_SEQ_LEN": ("256", "context length of evaluation windows (and the most a training window may have), tokens"),
    "EVAL_TOKENS": ("4096", "validation target tokens scored by evaluate_bpb (~14 s for SmolLM2-135M on 2 CPU cores)"),
    "SAMPLE_TOKENS": ("60", "tokens the fine-tuned model generates after scoring (runs/<n>/sample.txt)"),
}


class InitError(Exception):
    """The sandbox could not be created; the message says why and what to do."""


def default_tag() -> str:
    """Today's date as a short tag, e.g. ``nov21`` (the style of autoresearch's run tags)."""
    return date.today().strftime("%b%d").lower()


def set_constant(source: str, name: str, value_literal: str, comment: str | None = None) -> str:
    """Replace the value of the module-level line ``NAME = ...`` (keeping its comment, or putting
    ``# comment`` instead when given).

    Raises:
        InitError: there is not exactly one such line.
    """
    pattern = re.compile(rf"^({re.escape(name)}\s*=\s*)([^#\n]*?)(\s*(#.*)?)$", re.M)
    tail = (lambda m: m.group(3)) if comment is None else (lambda m: f"  # {comment}")
    new, count = pattern.subn(lambda m: f"{m.group(1)}{value_literal}{tail(m)}", source)
    if count != 1:
        raise InitError(f"prepare.py must have exactly one `{name} = ...` line (found {count})")
    return new


def create_sandbox(dest: Path, corpus: str, time_budget_s: int, tag: str, prepare: bool = True,
                   template_name: str = "scratch", base_model: str | None = None) -> HarnessConfig:
    """Create a sandbox in ``dest`` (which must not exist or be empty) and prepare its data.

    Args:
        dest: the new sandbox folder.
        corpus: ``shakespeare``, ``tinystories``, ``pystdlib`` or a path to a text file or folder.
        time_budget_s: training seconds per experiment (written to prepare.py and harness.toml).
        tag: run tag; experiments go on branch ``autoresearch/<tag>``.
        prepare: run ``python prepare.py`` (data download and tokenization) at the end.
        template_name: ``scratch`` (a small GPT trained from scratch) or ``finetune`` (a pretrained
            model fine-tuned, LoRA by default: the fine-tune train.py, ``BASE_MODEL`` set in
            prepare.py, ``peft`` allowed by the rails).
        base_model: the fine-tune template's base model: None for the embedded SmolLM2-135M-Instruct
            (converted from its GGUF at preparation, offline), a local folder or a Hugging Face id.

    Raises:
        InitError: ``dest`` is not empty, an argument is invalid, a template file is missing from the
            installed package, or data preparation failed (the sandbox is then complete but
            unprepared; the message says how to retry).
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        hint = " It is already a sandbox: continue with `harness start %s`." % dest if (dest / "harness.toml").exists() else ""
        raise InitError(f"{dest} exists and is not empty.{hint}")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", tag):
        raise InitError(f"tag {tag!r} must be letters, digits, '.', '_' or '-'")
    if time_budget_s < 1:
        raise InitError("--time-budget must be at least 1 second")
    if template_name not in TEMPLATES:
        raise InitError(f"--template must be one of {', '.join(TEMPLATES)}, not {template_name!r}")
    if base_model is not None and template_name != "finetune":
        raise InitError("--base-model needs --template finetune")
    try:
        for name in (SANDBOX, PROGRAM, FINETUNE_TRAIN, FINETUNE_PROGRAM, "agent/AGENTS.md", "agent/guard.py"):
            template(name)
    except PackageDataError as exc:
        raise InitError(str(exc)) from None
    if corpus not in ("shakespeare", "tinystories", "pystdlib"):
        path = Path(corpus).expanduser().resolve()
        if not path.exists():
            raise InitError(f"corpus {corpus!r} is neither a known name (shakespeare, tinystories, pystdlib) nor an existing path")
        corpus = str(path)
    copy_template(SANDBOX, dest)
    copy_template(FINETUNE_PROGRAM if template_name == "finetune" else PROGRAM, dest / "program.md")
    prep = dest / "prepare.py"
    text = set_constant(prep.read_text(encoding="utf-8"), "CORPUS", repr(corpus).replace("'", '"'))
    text = set_constant(text, "TIME_BUDGET", str(int(time_budget_s)))
    if template_name == "finetune":
        (dest / "train.py").write_text(template(FINETUNE_TRAIN).read_text(encoding="utf-8"), encoding="utf-8")
        base = base_model or "smollm2-135m-instruct"
        if base_model is not None and Path(base_model).expanduser().is_dir():
            base = str(Path(base_model).expanduser().resolve())
        text = set_constant(text, "BASE_MODEL", repr(base).replace("'", '"'))
        for name, (value, comment) in FINETUNE_CONSTANTS.items():
            text = set_constant(text, name, value, comment)
    prep.write_text(text, encoding="utf-8")
    from .datacache import DEFAULT_ROOT, ENV as CACHE_ENV

    data_root = Path(os.environ.get(CACHE_ENV) or DEFAULT_ROOT).expanduser().resolve()
    cfg = HarnessConfig(tag=tag, time_budget_s=int(time_budget_s), data_cache=str(data_root),
                        allowed_imports_extra=("peft",) if template_name == "finetune" else ())
    (dest / "harness.toml").write_text(render(cfg), encoding="utf-8")
    from .agent_files import write_agent_files
    from .sandbox import Sandbox

    write_agent_files(dest, cfg.editable_files)

    Sandbox.create(dest, cfg.branch, "sandbox from autoresearch-harness template")
    if prepare:
        proc = subprocess.run([sys.executable, "prepare.py"], cwd=dest, env={**os.environ, CACHE_ENV: str(data_root)})
        if proc.returncode != 0:
            raise InitError(
                f"data preparation failed (exit {proc.returncode}); the sandbox exists, fix the cause above and run "
                f"`cd {dest} && python prepare.py`, then `harness start {dest}`."
            )
    return cfg
