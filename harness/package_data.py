"""The data files the harness ships inside its package, under ``harness/templates/``, found with
:mod:`importlib.resources` (so a wheel installed anywhere works, not only a source checkout):

- ``sandbox/``: the user's starting repo (``prepare.py``, ``train.py``, ``.gitignore``), copied by
  ``harness init``;
- ``finetune/``: the train.py and program.md of ``harness init --template finetune``;
- ``program.md``: the human's research program (the built-in loop's);
- ``program_mcp.md``: the same program for an external agent working through the MCP tools;
- ``agent/``: ``AGENTS.md`` (also written as ``CLAUDE.md``) and ``guard.py``, Claude Code's hook.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11+; 3.10 has importlib.abc.Traversable
    from importlib.resources.abc import Traversable

SANDBOX = "sandbox"
#: the fine-tune template's train.py and program.md (its prepare.py is the sandbox template's, with
#: BASE_MODEL set)
FINETUNE_TRAIN = "finetune/train.py"
FINETUNE_PROGRAM = "finetune/program.md"
PROGRAM = "program.md"
PROGRAM_MCP = "program_mcp.md"
AGENT = "agent"
#: never copied out of the package (leftovers of imports, or of a run inside a source checkout's template)
SKIPPED = ("__pycache__", "runs", "metrics.json")


class PackageDataError(Exception):
    """A data file of the package is missing: the installation is incomplete."""


def template(name: str) -> Traversable:
    """The packaged file or folder ``name`` under ``harness/templates/`` (``"sandbox"``,
    ``"program.md"``, ``"agent/guard.py"`` ...).

    Raises:
        PackageDataError: it is not in the installed package (the message says how to repair).
    """
    item = files("harness").joinpath("templates", *name.split("/"))
    if not (item.is_file() or item.is_dir()):
        raise PackageDataError(
            f"harness/templates/{name} is missing from the installed autoresearch-harness package; "
            f"reinstall it (pip install --force-reinstall autoresearch-harness, or from a wheel built with "
            f"`python -m build` in a clone)")
    return item


def read_template(name: str) -> str:
    """The text (UTF-8) of the packaged file ``name`` under ``harness/templates/``.

    Raises:
        PackageDataError: the file is not in the installed package.
    """
    return template(name).read_text(encoding="utf-8")


def copy_template(name: str, dest: Path) -> list[Path]:
    """Copy the packaged file or folder ``name`` to ``dest`` (a folder's content is merged into
    ``dest``, which may exist; :data:`SKIPPED` names and ``*.pyc`` are skipped); returns the files written.

    Raises:
        PackageDataError: ``name`` is not in the installed package.
        OSError: ``dest`` cannot be written.
    """
    return _copy(template(name), Path(dest))


def _copy(item: Traversable, dest: Path) -> list[Path]:
    if item.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(item.read_bytes())
        return [dest]
    written: list[Path] = []
    dest.mkdir(parents=True, exist_ok=True)
    for child in sorted(item.iterdir(), key=lambda c: c.name):
        if child.name in SKIPPED or child.name.endswith(".pyc"):
            continue
        written += _copy(child, dest / child.name)
    return written
