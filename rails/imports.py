"""Rail ``imports``: train.py may import only a research allowlist of modules.

What it blocks: imports of modules outside the allowlist (``subprocess``, ``socket``, ``urllib``,
``ctypes``, ``pickle``, ``importlib``, ``signal``, ``atexit``, ``builtins``, ``shutil``,
``multiprocessing``, ...), dangerous submodules of allowed packages (``torch.utils.cpp_extension``
for inline native code, ``torch.hub`` for downloads, ``torch.multiprocessing``, ``torch.distributed``,
``torch.library``, ``torch.utils`` modules other than ``checkpoint``/``data``/``flop_counter``), ``import prepare``
as a module object (it invites ``prepare.evaluate_bpb = ...``), names from ``prepare`` beyond its
published interface, and relative or star imports. When ``kernels`` is allowed (an adopted
autoresearch checkout), only ``kernels.get_kernel(REPO)`` may be used, and REPO must be a string
literal, or a name every assignment of which is a literal or ``a if cond else b`` of literals,
naming a repository of ``RailConfig.kernel_repos`` (``[rails] kernel_repos`` in harness.toml);
any other member of ``kernels``, a computed repository, and ``get_kernel`` or ``kernels`` passed
around as values (``g = get_kernel``, ``getattr(kernels, ...)``) are refused.

Why: process spawning, network access, native code, unsafe deserialisation, signal handlers and
exit hooks all start with an import; refusing the import is the cheapest, most robust rail.
``get_kernel`` downloads and runs native code from a Hugging Face repository, so which
repositories it may load is the sandbox owner's decision, not the agent's.

Benign example it must allow::

    import math, time, os
    from dataclasses import dataclass
    import torch.nn.functional as F
    from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, make_dataloader, evaluate_bpb
    from kernels import get_kernel   # with kernels allowed and both repositories in kernel_repos
    repo = "varunneal/flash-attention-3" if cap == (9, 0) else "kernels-community/flash-attn3"
    fa3 = get_kernel(repo).flash_attn_interface
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
#: the one member of the ``kernels`` package train.py may use (it loads a repository's native code)
KERNEL_LOADER = "kernels.get_kernel"
_KERNEL_HINT = ("only repositories listed in [rails] kernel_repos of harness.toml may be loaded ({}); "
                "name one as a string literal, or write the kernel in torch")


def denied_module(name: str) -> bool:
    """True when the dotted ``name`` lies in a denied submodule of an allowed package
    (`DENIED_SUBMODULES`, or ``torch.utils.X`` outside `TORCH_UTILS_ALLOWED`)."""
    if matches(name, DENIED_SUBMODULES):
        return True
    return name.startswith("torch.utils.") and not matches(name, TORCH_UTILS_ALLOWED)
PREPARE_INTERFACE = ("MAX_SEQ_LEN", "TIME_BUDGET", "EVAL_TOKENS", "VOCAB_SIZE", "Tokenizer",
                     "make_dataloader", "evaluate_bpb", "load_base_model")


class ImportsRail(AstRail):
    """Refuse imports outside the allowlist (``RailConfig.allowed_imports`` or `DEFAULT_ALLOWED`, plus
    ``RailConfig.allowed_imports_extra``), and any use of ``kernels`` but ``get_kernel`` of a
    repository in ``RailConfig.kernel_repos``."""

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
        return out + self._kernels(ctx)

    def _kernels(self, ctx: Context) -> list[Violation]:
        """Violations for uses of the ``kernels`` package: anything but a direct call of
        ``kernels.get_kernel`` (under any alias), and calls whose repository is computed or not in
        ``ctx.config.kernel_repos``."""
        aliases = ctx.names.aliases
        local = {n for n, full in aliases.items() if full == "kernels" or full.startswith("kernels.")}
        if not local:
            return []
        out = []
        allowed = ctx.config.kernel_repos
        hint = _KERNEL_HINT.format(", ".join(allowed) if allowed else "none now")
        callees = ctx.callees
        member = {id(a.value): a for a in ctx.of(ast.Attribute)
                  if isinstance(a.value, ast.Name) and a.value.id in local}
        for node in ctx.of(ast.Name):
            if node.id not in local:
                continue
            full, attr = aliases[node.id], member.get(id(node))
            if full == "kernels" and attr is not None and attr.attr == "get_kernel" and id(attr) in callees:
                continue  # kernels.get_kernel(...): the call is judged below
            if full == KERNEL_LOADER and id(node) in callees:
                continue  # get_kernel(...), under any alias
            what = f"{full}.{attr.attr}" if attr is not None else full
            what = "the kernels module itself" if what == "kernels" else what
            out.append(self.violation(node, f"use of {what}: only direct calls of kernels.get_kernel(REPO) may "
                                            "use the kernels package", hint))
        for call, name in ctx.names.calls:
            if name != KERNEL_LOADER:
                continue
            repo = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "repo_id"), None)
            if call.args and isinstance(call.args[0], ast.Starred) or any(k.arg is None for k in call.keywords):
                repo = None
            repos = _literal_strings(ctx, repo, set())
            if repos is None:
                out.append(self.violation(call, "get_kernel loads a computed repository name, which is not on "
                                                 "the allowlist of kernel repositories", hint))
                continue
            for r in dict.fromkeys(repos):
                if r not in allowed:
                    out.append(self.violation(call, f"get_kernel loads the repository {r!r}, which is not on "
                                                    "the allowlist of kernel repositories", hint))
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


def _literal_strings(ctx: Context, node, seen: set) -> list[str] | None:
    """The strings ``node`` may evaluate to when it is a string literal, ``a if cond else b`` of such
    expressions, or a name whose every binding in the file is a plain assignment of one; None when
    it is anything else (computed, an f-string, a parameter, a loop variable, ...)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        a, b = _literal_strings(ctx, node.body, seen), _literal_strings(ctx, node.orelse, seen)
        return None if a is None or b is None else a + b
    if not isinstance(node, ast.Name) or node.id in seen:
        return None
    seen = seen | {node.id}
    values = _assigned_values(ctx, node.id)
    if not values:
        return None
    out: list[str] = []
    for value in values:
        found = _literal_strings(ctx, value, seen)
        if found is None:
            return None
        out += found
    return out


def _assigned_values(ctx: Context, name: str) -> list | None:
    """The right-hand sides of every binding of ``name`` in the file when each is a plain
    ``name = value`` or ``name: T = value``; None when ``name`` is bound any other way (import,
    parameter, loop or ``with`` target, unpacking, augmented or walrus assignment, ``del``,
    ``global``, ``def``, ``class``, ``except ... as``, a ``match`` capture) or never."""
    if name in ctx.names.aliases:
        return None
    values, plain = [], set()
    for node in ctx.of(ast.Assign, ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for t in targets:
            if isinstance(t, ast.Name) and t.id == name:
                plain.add(id(t))
                if node.value is not None:
                    values.append(node.value)
    for node in ctx.of(ast.Name):
        if node.id == name and not isinstance(node.ctx, ast.Load) and id(node) not in plain:
            return None
    for node in ctx.of(ast.arg):
        if node.arg == name:
            return None
    for node in ctx.of(ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler):
        if node.name == name:
            return None
    for node in ctx.of(ast.Global, ast.Nonlocal):
        if name in node.names:
            return None
    for node in ctx.of(ast.MatchAs, ast.MatchStar, ast.MatchMapping):
        if getattr(node, "name", None) == name or getattr(node, "rest", None) == name:
            return None
    return values or None
