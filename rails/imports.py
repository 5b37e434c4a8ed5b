"""Rail ``imports``: train.py may import only a research allowlist of modules.

What it blocks: imports of modules outside the allowlist (``subprocess``, ``socket``, ``urllib``,
``ctypes``, ``pickle``, ``importlib``, ``signal``, ``atexit``, ``builtins``, ``shutil``,
``multiprocessing``, ...), dangerous submodules of allowed packages (``torch.utils.cpp_extension``
for inline native code, ``torch.hub`` for downloads, ``torch.multiprocessing``, ``torch.distributed``,
``torch.library``, ``torch.utils`` modules other than ``checkpoint``/``data``/``flop_counter``), ``import prepare``
as a module object (it invites ``prepare.evaluate_bpb = ...``), names from ``prepare`` beyond its
published interface, and relative or star imports.

Why: process spawning, network access, native code, unsafe deserialisation, signal handlers and
exit hooks all start with an import; refusing the import is the cheapest, most robust rail.

Benign example it must allow::

    import math, time, os
    from dataclasses import dataclass
    import torch.nn.functional as F
    from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, make_dataloader, evaluate_bpb
"""

from __future__ import annotations

import ast

from rails.base import AstRail, Context, Violation
from rails.names import matches

#: top-level modules train.py may import when harness.toml names no allowlist
DEFAULT_ALLOWED = (
    "torch", "math", "time", "os", "sys", "gc", "random", "dataclasses", "functools", "itertools",
    "collections", "typing", "contextlib", "copy", "enum", "abc", "warnings", "statistics",
    "operator", "numpy", "einops", "prepare", "__future__",
)
#: submodules refused even though their package is allowed
DENIED_SUBMODULES = ("torch.utils.cpp_extension", "torch.hub", "torch.multiprocessing", "torch.distributed",
                     "torch.package", "torch.library", "torch._C", "torch.overrides", "torch.serialization",
                     "torch.onnx", "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing")
#: the only torch.utils modules train.py may use (the others write files, spawn or build native code)
TORCH_UTILS_ALLOWED = ("torch.utils.checkpoint", "torch.utils.data", "torch.utils.flop_counter")


def denied_module(name: str) -> bool:
    """True when the dotted ``name`` lies in a denied submodule of an allowed package
    (`DENIED_SUBMODULES`, or ``torch.utils.X`` outside `TORCH_UTILS_ALLOWED`)."""
    if matches(name, DENIED_SUBMODULES):
        return True
    return name.startswith("torch.utils.") and not matches(name, TORCH_UTILS_ALLOWED)
PREPARE_INTERFACE = ("MAX_SEQ_LEN", "TIME_BUDGET", "EVAL_TOKENS", "VOCAB_SIZE", "Tokenizer",
                     "make_dataloader", "evaluate_bpb")


class ImportsRail(AstRail):
    """Refuse imports outside the allowlist (``RailConfig.allowed_imports`` or `DEFAULT_ALLOWED`, plus
    ``RailConfig.allowed_imports_extra``)."""

    id = "imports"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """One violation per refused import statement or name."""
        allowed = set(ctx.config.allowed_imports or DEFAULT_ALLOWED) | set(ctx.config.allowed_imports_extra)
        out = []
        for node in ctx.nodes:
            if isinstance(node, ast.Import):
                for a in node.names:
                    out += self._module(node, a.name, allowed)
                    if a.name == "prepare":
                        out.append(self.violation(node, "`import prepare` binds the fixed module itself",
                                                  "import the names you need: from prepare import MAX_SEQ_LEN, ..."))
            elif isinstance(node, ast.ImportFrom):
                if node.level or not node.module:
                    out.append(self.violation(node, "relative imports are not allowed", "import by absolute name"))
                    continue
                out += self._module(node, node.module, allowed)
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if a.name == "*":
                        out.append(self.violation(node, f"`from {node.module} import *` hides what is imported",
                                                  "import the names you use explicitly"))
                    elif node.module == "prepare" and a.name not in PREPARE_INTERFACE:
                        out.append(self.violation(node, f"prepare.{a.name} is not part of prepare's interface",
                                                  f"import only {', '.join(PREPARE_INTERFACE)} from prepare"))
                    elif denied_module(full):
                        out.append(self.violation(node, f"{full} is not allowed", _hint(full)))
        return out

    def _module(self, node, name: str, allowed: set) -> list[Violation]:
        top = name.split(".")[0]
        if top not in allowed:
            return [self.violation(node, f"import of {name!r} is not allowed in train.py",
                                   f"allowed modules: {', '.join(sorted(allowed))}; do the work with torch")]
        if denied_module(name):
            return [self.violation(node, f"import of {name!r} is not allowed", _hint(name))]
        return []


def _hint(name: str) -> str:
    if "cpp_extension" in name:
        return "native code cannot be reviewed by the rails; write the kernel in torch"
    if "hub" in name:
        return "experiments run without network; define the model in train.py"
    return "experiments run in one process; remove it"
