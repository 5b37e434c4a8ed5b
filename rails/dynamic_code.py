"""Rail ``dynamic-code``: no code built or looked up at run time.

What it blocks: ``exec``, ``eval``, ``compile``, ``__import__``, ``breakpoint``, ``globals()``,
``locals()``, ``vars()``, ``importlib.*``; ``getattr``/``setattr``/``delattr``/``hasattr`` whose
attribute name is not a string literal, or is a dunder; the names ``__builtins__`` and
``__loader__``; ``torch.compile`` is *not* affected (it compiles the model, not source text).

Why: every other rail reads the file as written; code assembled from strings at run time (or an
attribute fetched by a computed name, ``getattr(prepare, "eval" + "uate_bpb")``) escapes them all.

Benign example it must allow::

    act = getattr(F, "gelu")          # a literal, non-dunder name
    model = torch.compile(model)
"""

from __future__ import annotations

import ast

from rails.base import AstRail, Context, Violation
from rails.names import const_str, matches

FORBIDDEN_CALLS = ("exec", "eval", "compile", "__import__", "breakpoint", "globals", "locals", "vars",
                   "builtins.exec", "builtins.eval", "builtins.compile", "builtins.__import__", "importlib")
ATTR_FUNCS = ("getattr", "setattr", "delattr", "hasattr")
FORBIDDEN_NAMES = ("__builtins__", "__loader__", "__spec__")


class DynamicCodeRail(AstRail):
    """Refuse run-time code construction and computed attribute access."""

    id = "dynamic-code"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """One violation per offending call or name."""
        out = []
        for call, name in ctx.names.calls:
            if matches(name, FORBIDDEN_CALLS):
                out.append(self.violation(call, f"call of {name}() runs or looks up code at run time",
                                          "write the code directly in train.py"))
            elif name in ATTR_FUNCS:
                attr = const_str(call.args[1]) if len(call.args) > 1 else None
                if attr is None:
                    out.append(self.violation(call, f"{name}() with a computed attribute name",
                                              "use the attribute directly (obj.name) or a string literal"))
                elif attr.startswith("__") and attr.endswith("__"):
                    out.append(self.violation(call, f"{name}() of the dunder attribute {attr!r}",
                                              "dunder attributes are off limits"))
        for node in ctx.nodes:
            if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
                out.append(self.violation(node, f"use of {node.id}", "builtins and loaders are off limits"))
        return out
