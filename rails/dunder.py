"""Rail ``dunder``: no dunder attributes, frames or object-graph introspection.

What it blocks: ``x.__subclasses__()``, ``f.__globals__``, ``f.__code__``, ``obj.__dict__``,
``cls.__bases__``, ``type(x).__mro__``, ``x.__class__`` and every other ``.__name__``-style
attribute except ``__init__``, ``__name__``, ``__doc__`` and ``__qualname__``; frame and code
objects (``tb.tb_frame``, ``.f_back``, ``.f_globals``, ``.f_locals``, ``.gi_frame``, ``.co_code``);
the collector's object graph (``gc.get_objects``, ``gc.get_referents``, ``gc.get_referrers``);
tensor subclasses that intercept torch calls (defining ``__torch_function__`` or
``__torch_dispatch__``, ``.as_subclass``, ``torch.overrides``, ``torch.utils._python_dispatch``).
Dunder *definitions* like ``def __init__`` or ``def __exit__`` are not attribute accesses.

Why: these are the ways out of a restricted namespace (``().__class__.__bases__[0].__subclasses__()``
reaches every loaded class, ``f.__globals__`` or a frame's ``f_globals`` reach prepare's module
state, ``gc.get_referents(evaluate_bpb)`` hands out its globals dict), and a tensor subclass with
``__torch_function__`` returned as logits decides what ``F.cross_entropy`` computes in evaluation.

Benign example it must allow::

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
    print(type(opt).__name__)
    gc.collect(); gc.freeze()
"""

from __future__ import annotations

import ast

from rails.base import AstRail, Context, Violation
from rails.names import matches

ALLOWED = ("__init__", "__name__", "__doc__", "__qualname__")
FRAME_ATTRS = frozenset(("f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "tb_frame", "tb_next",
                         "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "co_code", "co_consts", "co_names",
                         "as_subclass", "_make_subclass", "_make_wrapper_subclass"))
INTROSPECTION = ("gc.get_objects", "gc.get_referents", "gc.get_referrers", "gc.garbage", "gc.callbacks",
                 "torch.overrides", "torch.utils._python_dispatch", "torch._C._TensorBase")
_LAST = frozenset(name.rsplit(".", 1)[1] for name in INTROSPECTION)
FORBIDDEN_DEFS = ("__torch_function__", "__torch_dispatch__")


class DunderRail(AstRail):
    """Refuse ``.__x__`` attribute access except `ALLOWED`, frame attributes and introspection."""

    id = "dunder"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """One violation per offending attribute, name or definition."""
        out = []
        for node in ctx.of(ast.Attribute):
            attr = node.attr
            if attr.startswith("__") and attr.endswith("__") and attr not in ALLOWED:
                out.append(self.violation(node, f"access to the dunder attribute {attr}",
                                          "dunder attributes are off limits; use the object's public API"))
            elif attr in FRAME_ATTRS:
                out.append(self.violation(node, f"access to .{attr} (frames, code objects, tensor subclasses)",
                                          "work with tensors and modules, not with interpreter internals"))
            elif attr in _LAST and matches(ctx.names.qualname(node), INTROSPECTION):
                out.append(self.violation(node, f"use of {ctx.names.qualname(node)}",
                                          "object-graph introspection is off limits; gc.collect/freeze are fine"))
        imported = {local for local, full in ctx.names.aliases.items() if matches(full, INTROSPECTION)}
        for node in ctx.of(ast.Name):
            if node.id in imported:
                out.append(self.violation(node, f"use of {ctx.names.qualname(node)}",
                                          "object-graph introspection is off limits"))
        for node in ctx.of(ast.FunctionDef, ast.AsyncFunctionDef):
            if node.name in FORBIDDEN_DEFS:
                out.append(self.violation(node, f"defining {node.name} intercepts torch calls, evaluation included",
                                          "return plain tensors from the model"))
        return out
