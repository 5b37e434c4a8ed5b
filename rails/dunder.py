"""Rail ``dunder``: no access to dunder attributes beyond a few harmless ones.

What it blocks: ``x.__subclasses__()``, ``f.__globals__``, ``f.__code__``, ``obj.__dict__``,
``cls.__bases__``, ``type(x).__mro__``, ``m.__builtins__``, ``x.__class__`` and every other
``.__name__``-style attribute except ``__init__``, ``__name__``, ``__doc__`` and ``__qualname__``
(and dunder *definitions* like ``def __init__``, which are not attribute accesses).

Why: dunder attributes are the classic way out of a restricted namespace
(``().__class__.__bases__[0].__subclasses__()`` reaches every loaded class, ``f.__globals__``
reaches a module's globals, ``__code__`` swaps a function's body).

Benign example it must allow::

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
    print(type(opt).__name__)
"""

from __future__ import annotations

import ast

from rails.base import AstRail, Context, Violation

ALLOWED = ("__init__", "__name__", "__doc__", "__qualname__")


class DunderRail(AstRail):
    """Refuse ``.__x__`` attribute access except `ALLOWED`."""

    id = "dunder"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """One violation per dunder attribute access."""
        return [
            self.violation(node, f"access to the dunder attribute {node.attr}",
                           "dunder attributes are off limits; use the object's public API")
            for node in ctx.nodes
            if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr.endswith("__")
            and node.attr not in ALLOWED
        ]
