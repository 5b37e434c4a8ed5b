"""Rail ``protected``: the evaluation contract and the standard library stay as they are.

What it blocks:
- rebinding or shadowing a name imported from ``prepare`` (``TIME_BUDGET = 10**6``,
  ``def evaluate_bpb(...)``, ``for MAX_SEQ_LEN in ...``, ``import x as Tokenizer``, ``global``);
- writes to attributes of modules and their members: ``prepare.X = ...``, ``time.perf_counter = ...``,
  ``math.log = ...``, ``torch.nn.functional.cross_entropy = ...``, ``builtins.print = ...``,
  ``F.cross_entropy = ...`` through an alias, also via augmented assignment and ``del``;
- rebinding builtins at module level (``print = ...``, ``open = ...``, ``len = ...``).

Why: the score is only as good as ``evaluate_bpb``, the clock and the loss functions it relies on;
monkey-patching any of them (or the constants that bound training) changes what is measured
without touching prepare.py.

Benign example it must allow::

    model.lm_head.weight = model.wte.weight        # attributes of objects, not of modules
    torch.backends.cuda.matmul.allow_tf32 = True   # settings objects stay writable
    TRAIN_TIME = TIME_BUDGET * 0.9                 # reading the budget
"""

from __future__ import annotations

import ast
import builtins

from rails.base import AstRail, Context, Violation

PATCHABLE_MODULES = ("prepare", "time", "math", "torch", "builtins", "os", "sys", "random", "gc", "numpy",
                     "functools", "itertools", "collections", "dataclasses", "warnings")
#: settings objects that are meant to be written (TF32, compiler flags)
CONFIG_WRITES = ("torch.backends", "torch._dynamo.config", "torch._inductor.config")
BUILTIN_NAMES = frozenset(n for n in dir(builtins) if not n.startswith("_"))


class ProtectedRail(AstRail):
    """Refuse rebinding prepare's names, patching module attributes and shadowing builtins."""

    id = "protected"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """One violation per offending binding."""
        protected = set(ctx.config.protected_names)
        imported_from_prepare = {local for local, full in ctx.names.aliases.items() if full.startswith("prepare.")}
        out = []
        for node, target in _bindings(ctx.nodes):
            if isinstance(target, str):
                if target in protected and not (isinstance(node, ast.ImportFrom) and node.module == "prepare"
                                                 and ctx.names.aliases.get(target) == f"prepare.{target}"):
                    out.append(self.violation(node, f"{target} is part of prepare's fixed interface and is rebound",
                                              f"read {target}, never assign or redefine it"))
                elif target in imported_from_prepare and not isinstance(node, ast.ImportFrom):
                    out.append(self.violation(node, f"{target} (from prepare) is rebound", "use another name"))
                elif target in BUILTIN_NAMES and node in ctx.ast_tree.body:
                    out.append(self.violation(node, f"the builtin {target} is rebound at module level",
                                              "use another name"))
            else:  # an attribute target
                name = ctx.names.qualname(target)
                if (name and name.split(".")[0] in PATCHABLE_MODULES and name.split(".")[0] in _imported_roots(ctx)
                        and not any(name.startswith(c + ".") for c in CONFIG_WRITES)):
                    out.append(self.violation(node, f"assignment to {name} patches a module",
                                              "leave library and prepare attributes alone; write your own function"))
        return out


def _imported_roots(ctx: Context) -> set[str]:
    roots = {full.split(".")[0] for full in ctx.names.aliases.values()}
    return roots | {"builtins"}


def _names_in(target: ast.AST):
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _names_in(elt)
    elif isinstance(target, ast.Starred):
        yield from _names_in(target.value)
    elif isinstance(target, ast.Attribute):
        yield target


def _bindings(nodes: list):
    """(statement node, bound name or Attribute target) for every binding among ``nodes``."""
    for node in nodes:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                for b in _names_in(t):
                    yield node, b
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            for b in _names_in(node.target):
                yield node, b
        elif isinstance(node, ast.Delete):
            for t in node.targets:
                for b in _names_in(t):
                    yield node, b
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            for b in _names_in(node.target):
                yield node, b
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    for b in _names_in(item.optional_vars):
                        yield node, b
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node, node.name
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                yield node, (a.asname or a.name).split(".")[0]
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for n in node.names:
                yield node, n
        elif isinstance(node, ast.NamedExpr):
            yield node, node.target.id
        elif isinstance(node, ast.arg):
            yield node, node.arg
        elif isinstance(node, ast.ExceptHandler) and node.name:
            yield node, node.name
