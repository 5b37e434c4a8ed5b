"""Rail ``seed-only``: an edit that changes nothing but random seeds is not an experiment.

What it blocks: a new file whose only differences from the parent are the values of seed
constants (``SEED = 43``) or the literal arguments of ``torch.manual_seed``/``random.seed``/
``np.random.seed``/``torch.cuda.manual_seed_all``.

Why: re-rolling the seed until the score dips accepts noise as a win; the harness compares
experiments at a fixed seed.

Benign example it must allow: changing ``SEED`` together with any real change, e.g.
``LEARNING_RATE = 4e-3`` and ``SEED = 1`` in one edit.
"""

from __future__ import annotations

import ast

from rails.base import AstRail, Context, Violation

SEED_CALLS = ("manual_seed", "manual_seed_all", "seed")


class SeedOnlyRail(AstRail):
    """Refuse edits whose only change is a seed value."""

    id = "seed-only"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """Compare the parent and the new file with seed values blanked out."""
        if ctx.old_source is None:
            return []
        old_lines, new_lines = set(ctx.old_source.splitlines()), set(ctx.new_text.splitlines())
        changed = old_lines ^ new_lines
        if not changed or not all("seed" in line.lower() for line in changed):
            return []  # some changed line has nothing to do with seeds: a real edit
        try:
            old_tree = ast.parse(ctx.old_source)
        except (SyntaxError, ValueError):
            return []
        new_dump, old_dump = _without_seeds(ctx.ast_tree), _without_seeds(old_tree)
        if new_dump == old_dump and ast.dump(ctx.ast_tree) != ast.dump(old_tree):
            return [Violation(self.id, 0, "the edit changes only random seeds",
                              "change the model, optimizer or schedule; seed changes measure noise")]
        return []


def _without_seeds(tree: ast.Module) -> str:
    tree = ast.parse(ast.unparse(tree))  # a private copy
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and "SEED" in t.id.upper() for t in node.targets):
            node.value = ast.Constant(0)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in SEED_CALLS:
                node.args = [ast.Constant(0) for _ in node.args]
    return ast.dump(tree)
