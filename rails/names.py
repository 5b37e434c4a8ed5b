"""Shared analysis for the rails: resolve what a name or attribute chain refers to.

``import torch.nn.functional as F`` then ``F.cross_entropy`` resolves to
``torch.nn.functional.cross_entropy``; ``from os import environ as e`` then ``e.get`` resolves to
``os.environ.get``. Built once per file from the stdlib ``ast`` (CPython applies NFKC to
identifiers while parsing, so ``ｅｘｅｃ`` arrives here as ``exec``).
"""

from __future__ import annotations

import ast
from functools import cached_property


class Names:
    """Import aliases of one module and a resolver for dotted expressions.

    Args:
        nodes: every node of the module's ``ast`` (``list(ast.walk(tree))``).
    """

    def __init__(self, nodes: list):
        self.nodes = nodes

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Local name -> fully qualified name, for every ``import``/``from ... import`` anywhere."""
        out: dict[str, str] = {}
        for node in self.nodes:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        out[a.asname] = a.name
                    else:
                        out[a.name.split(".")[0]] = a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    out[a.asname or a.name] = f"{node.module}.{a.name}"
        return out

    def qualname(self, node: ast.AST) -> str | None:
        """The dotted name ``node`` refers to (``torch.nn.functional.cross_entropy``), or None for
        expressions that are not a name or an attribute chain on a name."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(self.aliases.get(node.id, node.id))
        return ".".join(reversed(parts))

    @cached_property
    def calls(self) -> list[tuple[ast.Call, str | None]]:
        """Every call with the qualified name of what is called (None when not resolvable)."""
        return [(n, self.qualname(n.func)) for n in self.nodes if isinstance(n, ast.Call)]


def matches(qualname: str | None, prefixes) -> bool:
    """True when ``qualname`` equals one of ``prefixes`` or lies below one (``os.environ.get``
    matches ``os.environ``)."""
    return qualname is not None and any(qualname == p or qualname.startswith(p + ".") for p in prefixes)


def const_str(node: ast.AST | None) -> str | None:
    """The value of a string literal node, else None."""
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
