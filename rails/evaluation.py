"""Rail ``evaluation``: evaluate_bpb is called exactly once, on the model, and its result is the
only val_bpb the script prints; the validation split is never used for training.

What it blocks: no call or several calls of ``evaluate_bpb``; a call inside a loop or a
comprehension; a call inside ``try`` (a crash in evaluation must crash the run, not be swallowed
into a made-up score); ``make_dataloader(..., "val")`` (training or selecting on validation data);
printing a ``val_bpb`` line whose value is not the result of ``evaluate_bpb`` (a literal, another
variable, arithmetic on the result).

Why: the harness reads the score from its own channel, but a second evaluation (best-of-N
selection on the validation set), training on validation batches or a forged summary line all
make the record lie.

Benign example it must allow::

    val_bpb = evaluate_bpb(model, tokenizer, EVAL_BATCH_SIZE)
    print(f"val_bpb:          {val_bpb:.6f}")
"""

from __future__ import annotations

import ast

from rails.base import AstRail, Context, Violation
from rails.names import const_str


class EvaluationRail(AstRail):
    """Refuse extra, hidden, guarded or forged evaluations and use of the validation split."""

    id = "evaluation"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """Violations for the evaluation call sites, val dataloaders and val_bpb prints."""
        tree = ctx.ast_tree
        evals = [c for c, name in ctx.names.calls if name == "prepare.evaluate_bpb"]
        out = []
        if len(evals) != 1:
            out.append(self.violation(evals[1] if len(evals) > 1 else tree, f"evaluate_bpb is called {len(evals)} times",
                                      "call evaluate_bpb exactly once, after training"))
        enclosing = [n for n in ctx.nodes if isinstance(n, LOOPS + TRIES)] if evals else []
        for call in evals:
            for node in enclosing:
                if _contains(node, call):
                    where, hint = (("inside try", "let an evaluation error crash the run") if isinstance(node, TRIES)
                                   else ("inside a loop", "call it once, after the training loop"))
                    out.append(self.violation(call, f"evaluate_bpb is called {where}", hint))
                    break
        results = {n.targets[0].id for n in ctx.nodes
                   if isinstance(n, ast.Assign) and any(n.value is c for c in evals)
                   and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)}
        for call, name in ctx.names.calls:
            if name == "prepare.make_dataloader":
                split = call.args[3] if len(call.args) > 3 else next((k.value for k in call.keywords if k.arg == "split"), None)
                if const_str(split) != "train":
                    out.append(self.violation(call, "make_dataloader on a split other than a literal \"train\"",
                                              "train only on the train split; the validation split is the metric's"))
            elif name == "print":
                out += self._forged_print(call, results)
        return out

    def _forged_print(self, call: ast.Call, results: set[str]) -> list[Violation]:
        for arg in call.args:
            text = _literal_text(arg)
            if "val_bpb" not in text:
                continue
            values = [v.value for v in ast.walk(arg) if isinstance(v, ast.FormattedValue)]
            if not values or not all(isinstance(v, ast.Name) and v.id in results for v in values):
                return [self.violation(call, "a printed val_bpb that is not evaluate_bpb's result",
                                       "print only the variable assigned from evaluate_bpb")]
        return []


LOOPS = (ast.For, ast.While, ast.AsyncFor, ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp, ast.Lambda)
TRIES = (ast.Try,) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())


def _contains(outer: ast.AST, inner: ast.AST) -> bool:
    """True when ``inner``'s source span lies within ``outer``'s (ast positions)."""
    return ((outer.lineno, outer.col_offset) <= (inner.lineno, inner.col_offset)
            and (inner.end_lineno, inner.end_col_offset) <= (outer.end_lineno, outer.end_col_offset))


def _literal_text(node: ast.AST) -> str:
    """The literal text of a string or f-string argument (formatted values left out)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.BinOp):
        return _literal_text(node.left) + _literal_text(node.right)
    return ""
