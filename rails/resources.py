"""Rail ``resources``: no resource exhaustion that can be seen without running the code.

What it blocks:
- loops that cannot end: ``while True``/``while 1 == 1``/``while not False`` (any test made of
  literals only) and ``for`` over ``itertools.count()``/``cycle``/one-argument ``repeat``/
  two-argument ``iter``, with no ``break``, ``return`` or ``raise`` in their body; ``for`` over a
  ``range`` of more than `MAX_ITERATIONS` with no ``break``;
- huge allocations whose size is a constant expression (module-level constants are folded in):
  torch/numpy factories (``torch.empty(10**12)``, ``torch.zeros(100000, 100000, 64)``) above
  `MAX_ELEMENTS` elements; ``'x' * 10**10``, ``[0] * (1 << 40)``, ``bytearray(2**40)`` above
  `MAX_BYTES`;
- constants that are themselves too big to compute (``2 ** 10 ** 10``);
- ``time.sleep`` of more than an hour, ``torch.set_num_threads`` above `MAX_THREADS`.
Fork bombs need ``os.fork`` or a process module, which the ``system-access`` and ``imports`` rails
refuse.

Why: such a run only ends at the hard wall-clock kill or by exhausting the machine's memory, which
can take down the harness and other runs with it; the slot is wasted either way.

Benign example it must allow::

    while True:            # the training loop ends with a break on TIME_BUDGET
        ...
        if training_seconds >= TIME_BUDGET:
            break
    emb = torch.zeros(50304, 768)
"""

from __future__ import annotations

import ast
import math

from rails.base import AstRail, Context, Violation

MAX_ELEMENTS = 2**33  # elements in one tensor (32 GiB of float32)
MAX_BYTES = 2**31  # characters, items or bytes in one repeated sequence
MAX_ITERATIONS = 10**10
MAX_THREADS = 1024
MAX_SLEEP_S = 3600
_BIG = math.inf  # a folded value that is too large to compute
FACTORIES = frozenset(f"{m}.{f}" for m in ("torch", "numpy") for f in ("empty", "zeros", "ones", "full", "rand", "randn",
                                                                       "arange", "empty_like", "ones_like"))
ENDLESS = ("itertools.count", "itertools.cycle")


class ResourcesRail(AstRail):
    """Refuse endless loops, huge constant allocations and other statically visible exhaustion."""

    id = "resources"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """One violation per endless loop, huge allocation or oversized constant."""
        env = _module_constants(ctx)
        out = []
        for loop in ctx.of(ast.While):
            if _literal_truth(loop.test) and not _exits(loop.body):
                out.append(self.violation(loop, "this loop never ends (a constant test and no break)",
                                          "bound the loop: break on TIME_BUDGET or a step count"))
        for loop in ctx.of(ast.For):
            it = loop.iter
            name = ctx.names.qualname(it.func) if isinstance(it, ast.Call) else None
            endless = (name in ENDLESS or (name == "itertools.repeat" and len(it.args) == 1)
                       or (name == "iter" and len(it.args) == 2))
            huge = name == "range" and any(_fold(a, env) > MAX_ITERATIONS for a in it.args)
            if (endless or huge) and not _exits(loop.body):
                out.append(self.violation(loop, f"this loop runs {'forever' if endless else 'for over 1e10 steps'}",
                                          "bound the loop: break on TIME_BUDGET or a step count"))
        for call, name in ctx.names.calls:
            out += self._call(call, name, env)
        for node in ctx.of(ast.BinOp):
            if isinstance(node.op, ast.Mult):
                for seq, n in ((node.left, node.right), (node.right, node.left)):
                    length = _literal_len(seq)
                    if length and _fold(n, env) * length > MAX_BYTES:
                        out.append(self.violation(node, "a repeated sequence of more than 2**31 items",
                                                  "allocate what the model needs; use tensors for data"))
                        break
            elif isinstance(node.op, (ast.Pow, ast.LShift)) and _fold(node, env) == _BIG:
                out.append(self.violation(node, "a constant too large to compute",
                                          "use a float (1e30) or a smaller exponent"))
        return out

    def _call(self, call: ast.Call, name: str | None, env: dict) -> list[Violation]:
        args = call.args
        if name in FACTORIES or (isinstance(call.func, ast.Attribute) and call.func.attr in
                                 ("new_empty", "new_zeros", "new_ones", "new_full")):
            dims = args[0].elts if args and isinstance(args[0], (ast.Tuple, ast.List)) else args
            if name in ("torch.full", "numpy.full") or (isinstance(call.func, ast.Attribute) and call.func.attr == "new_full"):
                dims = args[0].elts if args and isinstance(args[0], (ast.Tuple, ast.List)) else args[:1]
            if name and name.endswith("arange"):
                dims = args[1:2] if len(args) > 1 else args[:1]
            size = 1
            for d in dims:
                n = _fold(d, env)
                size *= 1 if n == -1 else max(0, n)
            if size > MAX_ELEMENTS:
                return [self.violation(call, f"{name or call.func.attr}() of more than 2**33 elements",
                                       "size tensors for the GPU's memory; shrink the dimensions")]
        elif name in ("bytearray", "bytes") and args and _fold(args[0], env) > MAX_BYTES:
            return [self.violation(call, f"{name}() of more than 2**31 bytes", "allocate what the model needs")]
        elif name == "time.sleep" and args and _fold(args[0], env) > MAX_SLEEP_S:
            return [self.violation(call, "sleeping for more than an hour wastes the run", "remove the sleep")]
        elif name in ("torch.set_num_threads", "torch.set_num_interop_threads") and args and \
                _fold(args[0], env) > MAX_THREADS:
            return [self.violation(call, f"{name}() with more than {MAX_THREADS} threads",
                                   "use at most the machine's core count (os.cpu_count())")]
        return []


def _literal_truth(test) -> bool:
    """True when ``test`` contains no names, calls or attributes and is truthy."""
    if any(isinstance(n, (ast.Name, ast.Call, ast.Attribute, ast.Subscript, ast.NamedExpr, ast.Await))
           for n in ast.walk(test)):
        return False
    try:
        return bool(_const_eval(test))
    except (ValueError, TypeError, ArithmeticError):
        return False


def _const_eval(node):
    """Evaluate a small expression of literals (no names, no calls); raises ValueError otherwise."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _const_eval(node.operand)
    if isinstance(node, ast.BoolOp):
        values = [_const_eval(v) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        a, b = _const_eval(node.left), _const_eval(node.comparators[0])
        ops = {ast.Eq: a == b, ast.NotEq: a != b, ast.Is: a is b, ast.IsNot: a is not b}
        if type(node.ops[0]) in ops:
            return ops[type(node.ops[0])]
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return {ast.Lt: a < b, ast.LtE: a <= b, ast.Gt: a > b, ast.GtE: a >= b}.get(type(node.ops[0]), True)
    if isinstance(node, ast.BinOp) or isinstance(node, ast.UnaryOp):
        value = _fold(node, {})
        if value not in (-1, _BIG):
            return value
    raise ValueError("not a literal expression")


def _exits(body: list) -> bool:
    """True when ``body`` (a loop's) contains a break of this loop, a return or a raise."""
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Break, ast.Return, ast.Raise)):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.For, ast.While, ast.AsyncFor)):
                stack.extend(n for n in ast.walk(child) if isinstance(n, (ast.Return, ast.Raise)))
                continue  # its breaks end the inner loop only
            stack.append(child)
    return False


def _module_constants(ctx: Context) -> dict[str, float]:
    """Module-level ``NAME = <constant expression>`` assignments, folded."""
    env: dict[str, float] = {}
    for node in ctx.ast_tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _fold(node.value, env)
            if value != -1:
                env[node.targets[0].id] = value
    return env


def _fold(node, env: dict) -> float:
    """The value of an integer/float constant expression, `_BIG` when it is too large to compute,
    -1 when it is not a constant expression (names fold through ``env``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id, -1)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -1  # negative sizes are not allocations
    if not isinstance(node, ast.BinOp):
        return -1
    a, b = _fold(node.left, env), _fold(node.right, env)
    if a == -1 or b == -1:
        return -1
    if _BIG in (a, b):
        return _BIG
    op = node.op
    try:
        if isinstance(op, ast.Pow):
            if a > 1 and b * math.log2(a) > 4096:
                return _BIG
            value = a ** b
        elif isinstance(op, ast.LShift):
            if b > 4096:
                return _BIG
            value = int(a) << int(b)
        elif isinstance(op, ast.Mult):
            value = a * b
        elif isinstance(op, ast.Add):
            value = a + b
        elif isinstance(op, ast.Sub):
            value = a - b
        elif isinstance(op, (ast.FloorDiv, ast.Div)):
            value = a // b if isinstance(op, ast.FloorDiv) else a / b
        else:
            return -1
    except (ArithmeticError, ValueError, TypeError):
        return -1
    return value if not isinstance(value, complex) and value >= 0 else -1


def _literal_len(node) -> int:
    """Length of a str/bytes literal or a list/tuple display, else 0."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return len(node.value)
    if isinstance(node, (ast.List, ast.Tuple)):
        return len(node.elts)
    return 0
