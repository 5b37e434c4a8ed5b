"""Rail ``dynamic-code``: no code built or looked up at run time.

What it blocks: ``exec``, ``eval``, ``compile``, ``__import__``, ``breakpoint``, ``globals()``,
``locals()``, ``vars()``, ``importlib.*`` — called or merely referenced (``run = eval``);
``getattr``/``setattr``/``delattr``/``hasattr`` whose attribute name is not a string literal, or is
a dunder, or that are passed around as values (``functools.reduce(getattr, ...)``);
``operator.attrgetter``/``methodcaller``; ``typing.get_type_hints``/``ForwardRef`` (they evaluate
string annotations); format strings that traverse attributes or items (``"{0.__globals__}"``,
``"{0.environ}".format(os)``); the names ``__builtins__``, ``__loader__``, ``__spec__``.
``torch.compile`` is *not* affected (it compiles the model, not source text).

Why: every other rail reads the file as written; code assembled from strings at run time (or an
attribute fetched by a computed name, ``getattr(prepare, "eval" + "uate_bpb")``) escapes them all.

Benign example it must allow::

    act = getattr(F, "gelu")          # a literal, non-dunder name
    model = torch.compile(model)
    print("{:.4f} {name}".format(loss, name="lr"))
"""

from __future__ import annotations

import ast
import re

from rails.base import AstRail, Context, Violation
from rails.names import const_str, matches

FORBIDDEN_CALLS = ("exec", "eval", "compile", "__import__", "breakpoint", "globals", "locals", "vars",
                   "builtins.exec", "builtins.eval", "builtins.compile", "builtins.__import__", "importlib",
                   "operator.attrgetter", "operator.methodcaller", "typing.get_type_hints", "typing.ForwardRef",
                   "typing._eval_type")
FORBIDDEN_BUILTINS = frozenset(("exec", "eval", "compile", "__import__", "breakpoint", "globals", "locals", "vars"))
_DOTTED = tuple(n for n in FORBIDDEN_CALLS if "." in n)
_DOTTED_LAST = frozenset(n.rsplit(".", 1)[1] for n in _DOTTED)
ATTR_FUNCS = ("getattr", "setattr", "delattr", "hasattr")
FORBIDDEN_NAMES = ("__builtins__", "__loader__", "__spec__")
#: a replacement field that looks up an attribute or item: "{0.x}", "{a[k]}"
FORMAT_TRAVERSAL = re.compile(r"\{[^{}:!]*[.\[]")
_HINT = "write the code directly in train.py"


class DynamicCodeRail(AstRail):
    """Refuse run-time code construction and computed attribute access."""

    id = "dynamic-code"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """One violation per offending call, name or format string."""
        out = []
        for call, name in ctx.names.calls:
            if matches(name, FORBIDDEN_CALLS):
                out.append(self.violation(call, f"call of {name}() runs or looks up code at run time", _HINT))
            elif name in ATTR_FUNCS:
                attr = const_str(call.args[1]) if len(call.args) > 1 else None
                if attr is None:
                    out.append(self.violation(call, f"{name}() with a computed attribute name",
                                              "use the attribute directly (obj.name) or a string literal"))
                elif attr.startswith("__") and attr.endswith("__"):
                    out.append(self.violation(call, f"{name}() of the dunder attribute {attr!r}",
                                              "dunder attributes are off limits"))
        callees = ctx.callees
        for node in ctx.of(ast.Name):
            if node.id in FORBIDDEN_NAMES:
                out.append(self.violation(node, f"use of {node.id}", "builtins and loaders are off limits"))
            elif id(node) not in callees and (node.id in FORBIDDEN_BUILTINS or node.id in ATTR_FUNCS):
                out.append(self.violation(node, f"{node.id} is used as a value (an indirect call)",
                                          f"call {node.id} directly with literal arguments, or not at all"))
        for node in ctx.of(ast.Attribute):
            if node.attr in _DOTTED_LAST and id(node) not in callees and matches(ctx.names.qualname(node), _DOTTED):
                out.append(self.violation(node, f"use of {ctx.names.qualname(node)}", _HINT))
        for node in ctx.strings:
            if isinstance(node.value, str) and "{" in node.value and FORMAT_TRAVERSAL.search(node.value):
                out.append(self.violation(node, "a format string that looks up attributes or items",
                                          "format plain values: '{:.4f}'.format(x) or an f-string"))
        return out
