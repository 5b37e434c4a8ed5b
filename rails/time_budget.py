"""Rail ``time-budget``: training stops when the wall-clock training time reaches TIME_BUDGET.

What it blocks, for the plain forms a reader can check:
- no comparison of an elapsed-time variable with ``TIME_BUDGET`` at all (training unbounded, or
  bounded by an alias such as ``budget = TIME_BUDGET * 3``);
- a comparison that stretches the budget (``>= TIME_BUDGET * 2``, ``>= TIME_BUDGET + 120``) or
  shrinks the elapsed side (``training_seconds / 2 >= TIME_BUDGET``); shrinking the budget
  (``TIME_BUDGET * 0.9``, ``TIME_BUDGET - 5``) stays allowed;
- an elapsed-time accumulator that is reset (``training_seconds = 0`` inside the loop), scaled
  (``+= dt * 0.5``) or fed anything but a wall-clock difference (``dt = time.perf_counter() - t0``;
  ``time.time``/``monotonic``/``perf_counter`` and their ``_ns`` forms; not ``process_time`` or
  ``thread_time``, and not ``(now - t0) / 2``);
- skipping more than `MAX_WARMUP_STEPS` steps before counting (``if step > 5000: total += dt``).

Why: the score compares runs at equal training time; a script that counts its own time generously
trains longer than its rivals. The harness also measures training time itself at run time
(``over_budget``); this rail refuses the visible cases before an experiment slot is spent.

Benign example it must allow (the template's and autoresearch's loops)::

    dt = time.perf_counter() - t0
    if step > 10:
        total_training_time += dt
    if step > 10 and total_training_time >= TIME_BUDGET:
        break
"""

from __future__ import annotations

import ast

from rails.base import AstRail, Context, Violation

WALL_CLOCKS = frozenset(f"time.{n}{s}" for n in ("perf_counter", "time", "monotonic") for s in ("", "_ns"))
MAX_WARMUP_STEPS = 20
_HINT = "count wall-clock training time (dt = time.perf_counter() - t0; total += dt) and stop at TIME_BUDGET"


class TimeBudgetRail(AstRail):
    """Refuse training loops whose time accounting or stop condition departs from TIME_BUDGET."""

    id = "time-budget"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """Violations for the budget comparisons, the accumulators and the durations they add."""
        budget_names = {local for local, full in ctx.names.aliases.items() if full == "prepare.TIME_BUDGET"}
        if not budget_names:
            return []  # no TIME_BUDGET imported: nothing to bound against (the evaluation rail needs prepare)
        out, accumulators = [], set()
        for cmp in ctx.of(ast.Compare):
            operands = [cmp.left, *cmp.comparators]
            for a, b in zip(operands, operands[1:]):
                for budget, elapsed in ((a, b), (b, a)):
                    if not _mentions(budget, budget_names):
                        continue
                    if not _budget_ok(budget, budget_names):
                        out.append(self.violation(cmp, "the comparison stretches TIME_BUDGET", _HINT))
                    elif isinstance(elapsed, ast.Name):
                        accumulators.add(elapsed.id)
                    elif not _mentions(elapsed, budget_names):
                        out.append(self.violation(cmp, "TIME_BUDGET is compared with a computed elapsed time",
                                                  "compare a plain elapsed-seconds variable with TIME_BUDGET"))
        if not accumulators and not out:
            return [self.violation(ctx.ast_tree, "no elapsed-time variable is compared with TIME_BUDGET", _HINT)]
        return out + self._accounting(ctx, accumulators)

    def _accounting(self, ctx: Context, accumulators: set[str]) -> list[Violation]:
        out, durations = [], set()
        guards = {id(s): node for node in ctx.of(ast.If) for s in node.body}
        top = {id(s) for s in ctx.ast_tree.body}
        for node in ctx.of(ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.NamedExpr):
            for target, value in _pairs(node):
                if not (isinstance(target, ast.Name) and target.id in accumulators):
                    continue
                if isinstance(node, ast.AugAssign):
                    if not isinstance(node.op, ast.Add) or not (isinstance(value, ast.Name) or _is_duration(ctx, value)):
                        out.append(self.violation(node, f"{target.id} is increased by something other than a "
                                                  "wall-clock duration", _HINT))
                    elif isinstance(value, ast.Name):
                        durations.add(value.id)
                    guard = guards.get(id(node))
                    if guard is not None and _skips_too_many(guard.test):
                        out.append(self.violation(guard, f"more than {MAX_WARMUP_STEPS} steps are left out of "
                                                  "the training time", "skip at most a few warm-up steps"))
                elif isinstance(node, ast.Assign) and (_is_duration(ctx, value) or (
                        id(node) in top and isinstance(value, ast.Constant) and isinstance(value.value, (int, float)))):
                    continue  # initialised once at module level, or recomputed as now - start
                else:
                    out.append(self.violation(node, f"the elapsed-time variable {target.id} is reset or rebound",
                                              _HINT))
        for node in ctx.of(ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.NamedExpr):
            for target, value in _pairs(node):
                if isinstance(target, ast.Name) and target.id in durations and not (
                        isinstance(node, ast.Assign) and _is_duration(ctx, value)):
                    out.append(self.violation(node, f"the duration {target.id} is not a plain wall-clock difference",
                                              _HINT))
        return out


def _pairs(node):
    """(target, value) pairs bound by an assignment-like node; value None when not known."""
    if isinstance(node, ast.Assign):
        for t in node.targets:
            if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple) and len(t.elts) == len(node.value.elts):
                yield from zip(t.elts, node.value.elts)
            elif isinstance(t, (ast.Tuple, ast.List)):
                for e in t.elts:
                    yield e, None
            else:
                yield t, node.value
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        yield node.target, node.value
    elif isinstance(node, ast.NamedExpr):
        yield node.target, node.value
    elif isinstance(node, ast.For):
        for t in ast.walk(node.target):
            yield t, None


def _mentions(node, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _number(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) else None


def _budget_ok(node, names: set[str]) -> bool:
    """TIME_BUDGET itself, or the budget shrunk: ``* c``/``c *`` with 0 < c <= 1, ``- c`` with c >= 0."""
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        for side, other in ((node.left, node.right), (node.right, node.left)):
            if isinstance(side, ast.Name) and side.id in names:
                c = _number(other)
                return c is not None and 0 < c <= 1
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and isinstance(node.left, ast.Name):
        c = _number(node.right)
        return node.left.id in names and c is not None and c >= 0
    return False


def _clock_call(ctx: Context, node) -> bool:
    return isinstance(node, ast.Call) and ctx.names.qualname(node.func) in WALL_CLOCKS


def _clock_name(ctx: Context, node) -> bool:
    """A name every binding of which is a wall-clock reading (``t0 = time.perf_counter()``)."""
    if not isinstance(node, ast.Name):
        return False
    values = [value for n in ctx.of(ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.NamedExpr)
              for target, value in _pairs(n) if isinstance(target, ast.Name) and target.id == node.id]
    return bool(values) and all(_clock_call(ctx, v) for v in values)


def _is_duration(ctx: Context, node) -> bool:
    """``clock() - t0`` or ``t1 - t0`` where the t's are wall-clock readings."""
    return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub)
            and (_clock_call(ctx, node.left) or _clock_name(ctx, node.left)) and _clock_name(ctx, node.right))


def _skips_too_many(test) -> bool:
    """True when an ``if`` guarding the accumulation compares with a literal above the warm-up limit."""
    return any(isinstance(n, ast.Compare) and any((_number(c) or 0) > MAX_WARMUP_STEPS for c in n.comparators)
               for n in ast.walk(test))
