"""Rail ``protected``: the evaluation contract and the standard library stay as they are.

What it blocks:
- rebinding or shadowing a name imported from ``prepare`` (``TIME_BUDGET = 10**6``,
  ``def evaluate_bpb(...)``, ``for MAX_SEQ_LEN in ...``, ``import x as Tokenizer``, ``global``);
- writes to attributes of modules and their members: ``prepare.X = ...``, ``time.perf_counter = ...``,
  ``math.log = ...``, ``torch.nn.functional.cross_entropy = ...``, ``builtins.print = ...``,
  ``F.cross_entropy = ...`` through an alias, also via augmented assignment and ``del``;
- rebinding builtins at module level (``print = ...``, ``open = ...``, ``len = ...``) or through
  ``global print`` in a function;
- ``setattr``/``delattr`` on a module (``setattr(F, "cross_entropy", ...)``);
- registering operator implementations (``torch.library``, ``torch._C``), which patches torch for
  every caller, the evaluation included;
- changing objects that prepare handed out (``tokenizer.x = ...``, ``tokenizer.token_bytes[i] = ...``)
  and touching ``.token_bytes`` at all: evaluate_bpb divides by those byte counts.

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
from rails.names import matches

PATCHABLE_MODULES = ("prepare", "time", "math", "torch", "builtins", "os", "sys", "random", "gc", "numpy",
                     "functools", "itertools", "collections", "dataclasses", "warnings")
#: settings objects that are meant to be written (TF32, compiler flags)
CONFIG_WRITES = ("torch.backends", "torch._dynamo.config", "torch._inductor.config")
REGISTRIES = ("torch.library", "torch._C", "torch._library")
_REGISTRY_LAST = frozenset(name.rsplit(".", 1)[1] for name in REGISTRIES)
BUILTIN_NAMES = frozenset(n for n in dir(builtins) if not n.startswith("_"))


class ProtectedRail(AstRail):
    """Refuse rebinding prepare's names, patching module attributes and shadowing builtins."""

    id = "protected"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """One violation per offending binding."""
        protected = set(ctx.config.protected_names)
        imported_from_prepare = {local for local, full in ctx.names.aliases.items() if full.startswith("prepare.")}
        roots = _imported_roots(ctx)
        handed_out = _prepare_objects(ctx)
        out = []
        for node, target in _bindings(ctx):
            if isinstance(target, str):
                if target in protected and not (isinstance(node, ast.ImportFrom) and node.module == "prepare"
                                                 and ctx.names.aliases.get(target) == f"prepare.{target}"):
                    out.append(self.violation(node, f"{target} is part of prepare's fixed interface and is rebound",
                                              f"read {target}, never assign or redefine it"))
                elif target in imported_from_prepare and not isinstance(node, ast.ImportFrom):
                    out.append(self.violation(node, f"{target} (from prepare) is rebound", "use another name"))
                elif target in BUILTIN_NAMES and (isinstance(node, ast.Global) or node in ctx.ast_tree.body):
                    out.append(self.violation(node, f"the builtin {target} is rebound at module level",
                                              "use another name"))
            elif _root_name(target) in handed_out:
                out.append(self.violation(node, f"{_root_name(target)} comes from prepare and is modified",
                                          "leave prepare's objects as they are; wrap them in your own code"))
            elif isinstance(target, ast.Attribute) and self._patches(ctx.names.qualname(target), roots):
                out.append(self.violation(node, f"assignment to {ctx.names.qualname(target)} patches a module",
                                          "leave library and prepare attributes alone; write your own function"))
        for call, name in ctx.names.calls:
            if name in ("setattr", "delattr") and call.args and self._patches(
                    f"{ctx.names.qualname(call.args[0])}.x", roots):
                out.append(self.violation(call, f"{name}() on the module {ctx.names.qualname(call.args[0])}",
                                          "leave library and prepare attributes alone; write your own function"))
        for node in ctx.of(ast.Attribute):
            if node.attr in _REGISTRY_LAST and matches(ctx.names.qualname(node), REGISTRIES):
                out.append(self.violation(node, f"use of {ctx.names.qualname(node)} re-registers torch operators",
                                          "write the operation as a function or module in train.py"))
            elif node.attr == "token_bytes":
                out.append(self.violation(node, ".token_bytes is the evaluation's byte count",
                                          "leave the tokenizer's byte table to evaluate_bpb"))
        return out

    @staticmethod
    def _patches(name: str | None, roots: set[str]) -> bool:
        """True when ``name`` (an assigned dotted name) is an attribute of an imported module."""
        if not name or "." not in name:
            return False
        root = name.split(".")[0]
        return (root in PATCHABLE_MODULES and root in roots
                and not any(name.startswith(c + ".") for c in CONFIG_WRITES))


def _root_name(target) -> str | None:
    """The name an attribute/subscript target hangs off (``tok`` in ``tok.a[1].b``), else None."""
    if not isinstance(target, (ast.Attribute, ast.Subscript)):
        return None
    while isinstance(target, (ast.Attribute, ast.Subscript)):
        target = target.value
    return target.id if isinstance(target, ast.Name) else None


def _prepare_objects(ctx: Context) -> set[str]:
    """Names bound to what a call of prepare's API returned (``tokenizer = Tokenizer.from_directory()``)."""
    out = set()
    for node in ctx.of(ast.Assign):
        if isinstance(node.value, ast.Call) and (ctx.names.qualname(node.value.func) or "").startswith("prepare."):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
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
    elif isinstance(target, (ast.Attribute, ast.Subscript)):
        yield target


_BINDERS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete, ast.For, ast.AsyncFor, ast.comprehension, ast.With,
            ast.AsyncWith, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Global,
            ast.Nonlocal, ast.NamedExpr, ast.arg, ast.ExceptHandler)


def _bindings(ctx: Context):
    """(statement node, bound name or Attribute/Subscript target) for every binding in the file."""
    for node in ctx.of(*_BINDERS):
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
