"""Agent-facing tools: read a file, list and show experiments, training curves, ask the optimiser,
propose an edit, write notes.

Plain functions with JSON schemas (:mod:`tools.schemas`), one module per responsibility, bound to
one sandbox by :class:`Toolbox` for the built-in loop (and, unchanged, for an MCP server later)::

    box = Toolbox(sandbox_path, cfg, files={"train.py": text}, history=ledger.records())
    result = box.call("propose_edit", {"description": "...", "diff": "..."})
    result.text, result.is_error, box.proposal   # box.proposal: the accepted Proposal or None
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .experiments import list_experiments, show_experiment, training_curve
from .files import ToolError, read_file, write_notes
from .optimiser import ask_optimiser
from .propose import Verdict, propose_edit
from .schemas import ALL_TOOLS

__all__ = ["ALL_TOOLS", "ToolError", "ToolResult", "Toolbox", "Verdict", "ask_optimiser", "list_experiments",
           "propose_edit", "read_file", "show_experiment", "training_curve", "write_notes"]


@dataclass(frozen=True)
class ToolResult:
    """What a tool call answers: ``text`` for the model, ``is_error`` when the call was refused."""

    text: str
    is_error: bool = False


@dataclass
class Toolbox:
    """The tools bound to one sandbox and one proposal round.

    Attributes:
        sandbox: the sandbox folder (None: files, diffs and logs on disk are unavailable).
        cfg: the sandbox's :class:`harness.config.HarnessConfig`.
        files: editable file name -> text on the current best commit.
        history: trajectory objects, oldest first.
        program, notes: program.md and notes.md as already read (None: read from disk).
        experiment: the number of the experiment being proposed (labels notes).
        proposal: the accepted proposal, once propose_edit has said "accepted".
        refusals: how many propose_edit calls were refused.
    """

    sandbox: Optional[Path]
    cfg: object
    files: dict
    history: list = field(default_factory=list)
    program: Optional[str] = None
    notes: Optional[str] = None
    experiment: Optional[int] = None
    proposal: Optional[object] = None
    refusals: int = 0

    def call(self, name: str, arguments) -> ToolResult:
        """Run tool ``name`` with ``arguments`` (a dict from the model); never raises for bad input:
        an unknown tool, missing or mistyped arguments and refusals come back as ``is_error``."""
        if not isinstance(arguments, dict):
            return ToolResult(f"the arguments of {name} must be a JSON object, got {type(arguments).__name__}", True)
        try:
            return self._dispatch(name, arguments)
        except ToolError as exc:
            return ToolResult(str(exc), True)
        except (TypeError, ValueError, KeyError) as exc:
            schema = next((t["parameters"] for t in ALL_TOOLS if t["name"] == name), {})
            return ToolResult(f"bad arguments for {name} ({exc}); its arguments are {list(schema.get('properties', {}))}, "
                              f"required: {schema.get('required', [])}", True)

    def _dispatch(self, name: str, args: dict) -> ToolResult:
        if name == "read_file":
            extra = {k: v for k, v in (("program.md", self.program), ("notes.md", self.notes)) if v is not None}
            return ToolResult(read_file(self.sandbox, args["path"], self.files, extra))
        if name == "list_experiments":
            return ToolResult(list_experiments(self.history, args.get("last_n", 20)))
        if name == "show_experiment":
            return ToolResult(show_experiment(self.sandbox, self.history, args["n"]))
        if name == "training_curve":
            return ToolResult(training_curve(self.history, args["n"]))
        if name == "ask_optimiser":
            return ToolResult(ask_optimiser(self.sandbox, self.files, self.history, args.get("sampler", "tpe")))
        if name == "write_notes":
            return ToolResult(write_notes(self.sandbox, args["text"], self.experiment))
        if name == "propose_edit":
            if self.proposal is not None:
                return ToolResult("a proposal is already accepted for this experiment; stop calling tools", True)
            unknown = set(args) - {"description", "diff", "search_replace", "whole_file", "path"}
            if unknown:
                raise ToolError(f"propose_edit has no argument(s) {', '.join(sorted(unknown))}; use description "
                                "and one of diff, search_replace, whole_file")
            verdict = propose_edit(self.files, self.cfg, **args)
            if verdict.proposal is None:
                self.refusals += 1
                return ToolResult(verdict.message, True)
            self.proposal = verdict.proposal
            return ToolResult(verdict.message)
        raise ToolError(f"there is no tool {name!r}; the tools are {', '.join(t['name'] for t in ALL_TOOLS)}")
