"""Rail ``evaluation``: evaluate_bpb is called exactly once, plainly, on prepare's tokenizer, its
result is the only val_bpb the script prints, and the validation split is never used for training.

What it blocks:
- no call or several calls of ``evaluate_bpb``; a call that is not a module-level statement
  ``name = evaluate_bpb(...)`` nested only in ``with`` blocks of torch context managers (so not in
  a loop, a comprehension, a function that could run twice, an ``if``, a ``try``, or a
  ``with contextlib.suppress(...)``/custom context manager that could swallow its error; torch's
  context managers and ``contextlib.nullcontext()``, which never swallow one, are allowed, also
  through a name bound to them or to a choice between them, as the MPS forks write
  ``autocast_ctx = torch.amp.autocast(...) if cuda else contextlib.nullcontext()``);
- ``evaluate_bpb`` or ``make_dataloader`` used other than by a direct call (``ev = evaluate_bpb``,
  ``functools.partial(evaluate_bpb, ...)``);
- a tokenizer argument that is not the name bound to ``Tokenizer.from_directory()`` (a wrapper with
  made-up byte counts);
- ``make_dataloader(..., split)`` with a split other than the literal ``"train"``;
- re-binding the result (``val_bpb = val_bpb * 0.9``); printing a ``val_bpb`` line whose value is
  not the result; any other string literal containing ``bpb`` (``'%s: %f' % ('val_bpb', 0.5)``,
  ``sys.stdout.write('val_bpb: ...')``); docstrings and comments may mention it.

Why: the harness reads the score from its own channel, but a second evaluation (best-of-N
selection on the validation set), training on validation batches, a tokenizer with inflated byte
counts or a forged summary line all make the record lie.

Benign example it must allow::

    with autocast:
        val_bpb = evaluate_bpb(model, tokenizer, EVAL_BATCH_SIZE)
    print(f"val_bpb:          {val_bpb:.6f}")
"""

from __future__ import annotations

import ast

from rails.base import AstRail, Context, Violation
from rails.names import const_str

LOOPS = (ast.For, ast.While, ast.AsyncFor)
TRIES = (ast.Try,) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())
_CHILD_BODIES = ("body", "orelse", "finalbody", "handlers")


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
        results: set[str] = set()
        for call in evals:
            problem, result = _placement(ctx, call)
            if problem:
                out.append(self.violation(call, f"evaluate_bpb is called {problem[0]}", problem[1]))
            elif result:
                results.add(result)
            tok = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "tokenizer"), None)
            if not (isinstance(tok, ast.Name) and tok.id in _tokenizers(ctx)):
                out.append(self.violation(call, "evaluate_bpb gets a tokenizer other than Tokenizer.from_directory()'s",
                                          "pass the tokenizer prepare built, unchanged"))
        prepare_funcs = {local for local, full in ctx.names.aliases.items()
                         if full in ("prepare.evaluate_bpb", "prepare.make_dataloader")}
        callees = ctx.callees
        stores: dict[str, int] = {}
        for node in ctx.of(ast.Name):
            if node.id in prepare_funcs and id(node) not in callees and isinstance(node.ctx, ast.Load):
                out.append(self.violation(node, f"{node.id} is used other than by a direct call",
                                          f"call {node.id}(...) directly"))
            elif node.id in results and not isinstance(node.ctx, ast.Load):
                stores[node.id] = stores.get(node.id, 0) + 1
        for name, count in stores.items():
            if count > 1:
                out.append(self.violation(tree, f"{name}, the result of evaluate_bpb, is re-bound",
                                          "keep evaluate_bpb's result as it is"))
        legit: set[int] = set()
        for call, name in ctx.names.calls:
            if name == "prepare.make_dataloader":
                split = call.args[3] if len(call.args) > 3 else next((k.value for k in call.keywords if k.arg == "split"), None)
                if const_str(split) != "train":
                    out.append(self.violation(call, "make_dataloader on a split other than a literal \"train\"",
                                              "train only on the train split; the validation split is the metric's"))
            elif name == "print":
                found = self._forged_print(call, results)
                out += found
                if not found and any("val_bpb" in _literal_text(a) for a in call.args):
                    legit |= {id(n) for a in call.args for n in ast.walk(a)}
        for node in ctx.strings:
            text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            if "bpb" in text.lower() and id(node) not in legit:
                out.append(self.violation(node, "a string mentioning bpb outside the val_bpb summary line",
                                          "print val_bpb only as f\"val_bpb: {val_bpb:.6f}\" with evaluate_bpb's result"))
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


def _placement(ctx: Context, call: ast.Call) -> tuple[tuple[str, str] | None, str | None]:
    """((where, hint) when the call is badly placed, else None; the name its result is bound to)."""
    path = _path_to(ctx.ast_tree.body, call)
    for stmt in path[:-1]:
        if isinstance(stmt, TRIES):
            return ("inside try", "let an evaluation error crash the run"), None
        if isinstance(stmt, LOOPS):
            return ("inside a loop", "call it once, after the training loop"), None
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return ("inside a function", "call it once at module level, after training"), None
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            if not all(_torch_context(ctx, item.context_expr) for item in stmt.items):
                return ("inside a context manager that may swallow its errors",
                        "use only torch context managers (autocast, no_grad) around it"), None
        elif not isinstance(stmt, ast.ExceptHandler):
            return (f"inside {type(stmt).__name__.lower()}", "call it unconditionally at module level"), None
    last = path[-1] if path else None
    if isinstance(last, ast.ExceptHandler):
        return ("inside try", "let an evaluation error crash the run"), None
    if not (isinstance(last, ast.Assign) and last.value is call and len(last.targets) == 1
            and isinstance(last.targets[0], ast.Name)):
        return ("other than as `val_bpb = evaluate_bpb(...)`",
                "assign its result to a name in a statement of its own"), None
    return None, last.targets[0].id


def _path_to(body: list, node: ast.AST) -> list:
    """The statements from the module body down to the innermost one containing ``node``."""
    for stmt in body:
        if _contains(stmt, node):
            for field in _CHILD_BODIES:
                inner = getattr(stmt, field, None)
                if inner:
                    sub = _path_to(inner, node)
                    if sub:
                        return [stmt, *sub]
            return [stmt]
    return []


def _torch_context(ctx: Context, expr, depth: int = 0) -> bool:
    """A context manager that cannot swallow an error: ``torch.x(...)``, ``contextlib.nullcontext()``,
    ``a if cond else b`` of two such, or a name every assignment of which binds one."""
    if depth > 8:
        return False
    if isinstance(expr, ast.Call):
        name = ctx.names.qualname(expr.func) or ""
        return name.startswith("torch.") or name == "contextlib.nullcontext"
    if isinstance(expr, ast.IfExp):
        return _torch_context(ctx, expr.body, depth + 1) and _torch_context(ctx, expr.orelse, depth + 1)
    if isinstance(expr, ast.Name):
        values = [n.value for n in ctx.of(ast.Assign) for t in n.targets if isinstance(t, ast.Name) and t.id == expr.id]
        return bool(values) and all(isinstance(v, (ast.Call, ast.IfExp)) and _torch_context(ctx, v, depth + 1)
                                    for v in values)
    return False


def _tokenizers(ctx: Context) -> set[str]:
    """Names bound exactly once, to ``Tokenizer.<constructor>(...)`` from prepare."""
    bound: dict[str, list] = {}
    for node in ctx.of(ast.Assign):
        for t in node.targets:
            if isinstance(t, ast.Name):
                bound.setdefault(t.id, []).append(node.value)
    return {name for name, values in bound.items() if len(values) == 1 and isinstance(values[0], ast.Call)
            and (ctx.names.qualname(values[0].func) or "").startswith("prepare.Tokenizer")}


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
