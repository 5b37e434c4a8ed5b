"""Rail ``seed-only``: an edit that changes nothing but random seeds is not an experiment.

What it blocks: a new file whose only differences from the parent, once comments, formatting,
docstrings, bare string statements and ``pass`` are set aside, are the values of seed constants
(``SEED = 43``) or the arguments of seeding calls (``torch.manual_seed(SEED + 1)``,
``torch.cuda.manual_seed``, ``random.seed``, ``np.random.seed``, ``default_rng``, ``Generator().manual_seed``).

Why: re-rolling the seed until the score dips accepts noise as a win; the harness compares
experiments at a fixed seed. Hiding the re-roll behind a reworded comment or a reformatted line
changes nothing that runs.

Benign example it must allow: changing ``SEED`` together with any real change, e.g.
``LEARNING_RATE = 4e-3`` and ``SEED = 1`` in one edit.

Cost: the parent's parse is cached by its text; statements whose source text is unchanged are
not compared further, so a typical edit costs a few milliseconds.
"""

from __future__ import annotations

import ast

from rails.base import AstRail, Context, Violation

SEED_CALLS = frozenset(("manual_seed", "manual_seed_all", "seed", "default_rng", "RandomState", "Random"))


class SeedOnlyRail(AstRail):
    """Refuse edits whose only change is a seed value."""

    id = "seed-only"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """Compare the parent's and the new file's statements with seed values blanked out."""
        if ctx.old_source is None or ctx.old_source == ctx.new_text or "seed" not in ctx.new_text.lower():
            return []
        old_tree = ctx.old_tree
        if old_tree is None:
            return []
        old_lines, new_lines = ctx.old_source.splitlines(), ctx.new_text.splitlines()
        old_stmts, new_stmts = _statements(old_tree.body), _statements(ctx.ast_tree.body)
        if len(old_stmts) != len(new_stmts):
            return []
        seed_changed = False
        for a, b in zip(old_stmts, new_stmts):
            if _text(a, old_lines) == _text(b, new_lines):
                continue
            if _dump(a, blank=True) != _dump(b, blank=True):
                return []  # a real change
            seed_changed = seed_changed or _dump(a, blank=False) != _dump(b, blank=False)
        if not seed_changed:
            return []  # only comments or formatting changed: no seed re-roll either
        return [Violation(self.id, 0, "the edit changes only random seeds",
                          "change the model, optimizer or schedule; seed changes measure noise")]


def _statements(body: list) -> list:
    """``body`` without docstrings, bare constant expressions and ``pass``."""
    return [s for s in body if not (isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)))]


def _text(stmt, lines: list[str]) -> list[str]:
    """The source lines of ``stmt``, decorators included."""
    start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", ())])
    return lines[start - 1 : stmt.end_lineno]


def _dump(stmt, blank: bool) -> str:
    """``ast.dump`` of ``stmt`` without nested docstrings/pass, seed values blanked when ``blank``."""
    private_copy = ast.parse(ast.unparse(stmt)).body[0]
    return ast.dump(_Normalise(blank).visit(private_copy))


class _Normalise(ast.NodeTransformer):
    """Drops docstrings and ``pass`` from bodies; with ``blank``, zeroes seed values."""

    def __init__(self, blank: bool):
        self.blank = blank

    def generic_visit(self, node):
        node = super().generic_visit(node)
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            kept = _statements(body)
            node.body = kept or [ast.Pass()]
        if self.blank:
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and "SEED" in t.id.upper() for t in targets):
                    node.value = ast.Constant(0)
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in SEED_CALLS:
                    node.args = [ast.Constant(0) for _ in node.args]
                    node.keywords = []
        return node
