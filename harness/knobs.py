"""The knob menu: small local models change one hyperparameter instead of writing a diff.

A knob is a module-level ``NAME = <literal>`` in ``train.py`` whose NAME is ALL_CAPS and whose
value is an int, float or bool literal, the convention of karpathy/autoresearch (hyperparameters
are commented ALL_CAPS constants near the top of the file)::

    DEPTH = 8               # number of transformer layers
    MATRIX_LR = 0.04        # learning rate for the Muon-optimized matrices
    WARMUP_FRAC = 0.0       # fraction of the time budget spent warming up
    USE_QK_NORM = True      # normalize queries and keys

An agent picks ``{knob, action}`` from a menu (`actions_for`); `apply_action` rewrites only that
literal with libcst (comments and formatting elsewhere untouched) and describes the change, e.g.
``MATRIX_LR 0.04 -> 0.028 (x0.7)``. The harness then turns the new source into a diff.
No torch here: the menu is built before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

_KNOB_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
#: every action, in menu order; `actions_for` says which apply to a given knob
ACTIONS: tuple[str, ...] = ("halve", "x0.7", "x1.4", "double", "-1", "+1", "toggle")
_FACTORS = {"halve": 0.5, "x0.7": 0.7, "x1.4": 1.4, "double": 2.0}
_STEPS = {"-1": -1, "+1": 1}
_FRACTION_WORDS = {"FRAC", "FRACTION", "RATIO", "PROB", "PROBABILITY", "P", "DROPOUT", "MOMENTUM"}
_FRACTION_MAX = 0.99  # fractions and probabilities stay in [0, 1)
_BETA_MAX = 0.9999  # Adam betas stay in [0, 0.9999]


#: knobs with one of these words in their name (words split at ``_``) do not change what the model
#: learns (seeds: noise; logging, evaluation and compilation settings): agents do not search them
NOT_SEARCHED = ("SEED", "LOG", "EVAL", "COMPILE")


def searchable(name: str) -> bool:
    """Whether an agent should move knob ``name``: no word of :data:`NOT_SEARCHED` in it
    (``LOG_EVERY``, ``EVAL_BATCH_SIZE``, ``DATA_SEED`` are not; ``LOGIT_SOFTCAP`` is)."""
    return not set(name.upper().split("_")) & set(NOT_SEARCHED)


class KnobError(ValueError):
    """A knob request that cannot be carried out: unknown knob, action not valid for the knob's
    kind, an action that would leave the value unchanged, or a source that does not parse.
    The message says what to pick instead."""


@dataclass(frozen=True)
class Knob:
    """One tunable constant of ``train.py``.

    Attributes:
        name: the ALL_CAPS name, e.g. ``"MATRIX_LR"``.
        value: its current value.
        kind: ``"int"``, ``"float"`` or ``"bool"``.
        line: 1-based line of the assignment.
        comment: the trailing ``# comment`` on that line without the ``#``, or ``""``.
    """

    name: str
    value: int | float | bool
    kind: str
    line: int
    comment: str


def find_knobs(source: str) -> list[Knob]:
    """All knobs of ``source`` in file order (a name assigned twice appears twice).

    Only module-level simple statements count (not assignments in functions, classes, ``if`` or
    ``with`` blocks); tuple targets, chained assignments and non-literal values are skipped;
    annotated assignments (``LR: float = 0.1``) count. Raises `KnobError` if ``source`` does not
    parse.
    """
    return [knob for knob, _, _ in _collect(_parse(source))]


def actions_for(knob: Knob) -> list[str]:
    """The actions of `ACTIONS` that would change ``knob`` (clamping can rule some out).

    Numbers: ``halve``, ``x0.7``, ``x1.4``, ``double``, and for ints also ``-1``, ``+1``;
    bools: ``toggle``.
    """
    valid = []
    for action in ACTIONS:
        try:
            _new_value(knob, action)
        except KnobError:
            continue
        valid.append(action)
    return valid


def apply_action(source: str, knob_name: str, action: str) -> tuple[str, str]:
    """Apply ``action`` to the knob ``knob_name`` in ``source``.

    Returns ``(new_source, description)``, e.g. ``("...", "LEARNING_RATE 0.003 -> 0.0021 (x0.7)")``.
    Only the knob's literal is rewritten. Value rules: ints stay ints (a positive int stays >= 1;
    an int > 8 that is a multiple of 8 stays a multiple of 8 under the multiplicative actions;
    when rounding would undo a multiplicative action, the int moves by one instead: 1 x1.4 -> 2);
    floats keep 3 significant digits; fractions and probabilities (``*_FRAC``, ``*DROPOUT``,
    ``*MOMENTUM``, ...) stay within [0, 0.99] and Adam betas (``*BETA1``, ``*BETA2``) within
    [0, 0.9999], unless already above that cap, in which case they cannot grow.

    Raises:
        KnobError: unknown knob, knob assigned more than once, unknown action, action not valid
            for the knob's kind, or an action that would not change the value.
    """
    module = _parse(source)
    knobs = _collect(module)
    found = [(knob, node, line) for knob, node, line in knobs if knob.name == knob_name]
    if not found:
        names = ", ".join(knob.name for knob, _, _ in knobs) or "none"
        raise KnobError(f"unknown knob {knob_name!r}; knobs in train.py: {names}")
    if len(found) > 1:
        lines = ", ".join(str(knob.line) for knob, _, _ in found)
        raise KnobError(f"knob {knob_name} is assigned {len(found)} times (lines {lines}); edit it with a diff")
    return _rewrite(module, *found[0], action)


def all_moves(source: str) -> list[tuple[str, str, str, str]]:
    """Every valid change of every knob, from one parse of ``source``.

    Returns ``(knob_name, action, new_source, description)`` tuples in file order, as
    :func:`apply_action` would give them; knobs assigned more than once are left out.

    Raises:
        KnobError: ``source`` does not parse.
    """
    module = _parse(source)
    knobs = _collect(module)
    counts: dict[str, int] = {}
    for knob, _, _ in knobs:
        counts[knob.name] = counts.get(knob.name, 0) + 1
    return [
        (knob.name, action, *_rewrite(module, knob, node, statement, action))
        for knob, node, statement in knobs if counts[knob.name] == 1
        for action in actions_for(knob)
    ]


def set_knobs(source: str, values: dict) -> tuple[str, list[str]]:
    """Set several knobs of ``source`` at once to the given values (the optimiser's trials).

    Only the knobs' literals are rewritten, in the style of the old literal; a value equal to the
    current one is left alone. ``values`` maps knob name -> int, float or bool (an int knob gets
    ``int(value)``, a float knob ``float(value)``).

    Returns:
        ``(new_source, descriptions)``, one ``"NAME old -> new"`` per changed knob, in file order.

    Raises:
        KnobError: ``source`` does not parse, or a name is not a knob assigned exactly once.
    """
    module = _parse(source)
    knobs = _collect(module)
    by_name: dict[str, list] = {}
    for entry in knobs:
        by_name.setdefault(entry[0].name, []).append(entry)
    for name in values:
        if len(by_name.get(name, ())) != 1:
            raise KnobError(f"{name} is not a knob assigned exactly once in train.py")
    body, changed = list(module.body), []
    for knob, node, statement in knobs:
        if knob.name not in values:
            continue
        kind = knob.kind
        value = bool(values[knob.name]) if kind == "bool" else int(values[knob.name]) if kind == "int" else float(values[knob.name])
        if value == knob.value:
            continue
        new_statement, old_text, new_text = _replace_literal(module, knob, node, statement, value)
        body = [new_statement if stmt is statement else stmt for stmt in body]
        changed.append(f"{knob.name} {old_text} -> {new_text}")
    return module.with_changes(body=body).code, changed


def _replace_literal(module: cst.Module, knob: Knob, node, statement, value) -> tuple[cst.SimpleStatementLine, str, str]:
    """The knob's statement line with its literal replaced by ``value``; old and new literal text."""
    old_text = module.code_for_node(node.with_changes(lpar=[], rpar=[]))
    new_text = _literal_text(value, knob.kind, old_text)
    new_node = cst.parse_expression(new_text).with_changes(lpar=node.lpar, rpar=node.rpar)
    return _keep_comment_column(statement.deep_replace(node, new_node), len(new_text) - len(old_text)), old_text, new_text


def _rewrite(module: cst.Module, knob: Knob, node, statement, action: str) -> tuple[str, str]:
    value, note = _new_value(knob, action)
    new_statement, old_text, new_text = _replace_literal(module, knob, node, statement, value)
    # knobs are top-level statements: swapping one body entry is far cheaper than deep_replace
    body = [new_statement if stmt is statement else stmt for stmt in module.body]
    new_source = module.with_changes(body=body).code
    return new_source, f"{knob.name} {old_text} -> {new_text} ({action}{note})"


def _parse(source: str) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise KnobError(f"train.py does not parse, so its knobs cannot be read: {exc.message}") from None


def _collect(module: cst.Module) -> list[tuple[Knob, cst.BaseExpression, cst.SimpleStatementLine]]:
    """Knobs with the libcst nodes of their value and statement line, in file order."""
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    knobs = []
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        comment = statement.trailing_whitespace.comment
        comment_text = comment.value.lstrip("#").strip() if comment else ""
        for small in statement.body:
            if isinstance(small, cst.Assign) and len(small.targets) == 1:
                target, value = small.targets[0].target, small.value
            elif isinstance(small, cst.AnnAssign) and small.value is not None:
                target, value = small.target, small.value
            else:
                continue
            literal = _literal_value(value)
            if not isinstance(target, cst.Name) or not _KNOB_NAME.match(target.value) or literal is None:
                continue
            line = positions[small].start.line
            knobs.append((Knob(target.value, literal[0], literal[1], line, comment_text), value, statement))
    return knobs


def _keep_comment_column(statement: cst.SimpleStatementLine, growth: int) -> cst.SimpleStatementLine:
    """Keep an aligned trailing comment in its column when the literal grew or shrank by
    ``growth`` characters (never fewer than 2 spaces before ``#`` once there were 2)."""
    trailing = statement.trailing_whitespace
    spaces = trailing.whitespace.value
    if trailing.comment is None or not growth or spaces.strip(" "):
        return statement
    width = max(len(spaces) - growth, min(len(spaces), 2))
    return statement.with_changes(trailing_whitespace=trailing.with_changes(whitespace=cst.SimpleWhitespace(" " * width)))


def _literal_value(node: cst.BaseExpression) -> tuple[int | float | bool, str] | None:
    """``(value, kind)`` of an int/float/bool literal (with an optional unary minus), else None."""
    if isinstance(node, cst.Name) and node.value in ("True", "False"):
        return node.value == "True", "bool"
    sign = 1
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        sign, node = -1, node.expression
    if isinstance(node, cst.Integer):
        return sign * int(node.evaluated_value), "int"
    if isinstance(node, cst.Float):
        return sign * float(node.evaluated_value), "float"
    return None


def _new_value(knob: Knob, action: str) -> tuple[int | float | bool, str]:
    """The knob's value after ``action`` and a note on clamping (``""`` if none); see `apply_action`."""
    if action not in ACTIONS:
        raise KnobError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    valid = "toggle" if knob.kind == "bool" else ", ".join(a for a in ACTIONS if _fits(a, knob.kind))
    if not _fits(action, knob.kind):
        raise KnobError(f"action {action!r} does not apply to {knob.kind} knob {knob.name}; use: {valid}")
    note, value = "", knob.value
    if knob.kind == "bool":
        new: int | float | bool = not value
    elif action in _STEPS:
        new = value + _STEPS[action]
        new = max(new, 1) if value > 0 else new
    elif knob.kind == "int":
        raw = value * _FACTORS[action]
        new = max(8, round(raw / 8) * 8) if value > 8 and value % 8 == 0 else round(raw)
        if new == value and value != 0:  # rounding undid the change: move one unit its way
            new = value + (1 if (_FACTORS[action] > 1) == (value > 0) else -1)
        new = max(new, 1) if value > 0 else min(new, -1) if value < 0 else new
    else:
        new = float(f"{value * _FACTORS[action]:.3g}")
        cap = _cap(knob)
        if cap is not None and new > max(cap, value):
            new, note = max(cap, value), f", clamped to <= {max(cap, value)!r}"
    if new == value:
        raise KnobError(f"{action} leaves {knob.name} at {value!r}; choose another action or knob")
    return new, note


def _fits(action: str, kind: str) -> bool:
    if kind == "bool":
        return action == "toggle"
    return action in _FACTORS or (action in _STEPS and kind == "int")


def _cap(knob: Knob) -> float | None:
    """Upper bound for fraction-like floats: Adam betas, dropout, ``*_FRAC``, probabilities."""
    name = knob.name
    if name.endswith(("BETA1", "BETA2")):
        return _BETA_MAX
    if name.endswith(("_FRAC", "DROPOUT")):
        return _FRACTION_MAX
    if 0 <= knob.value <= 1 and _FRACTION_WORDS & set(name.split("_")):
        return _FRACTION_MAX
    return None


def _literal_text(value: int | float | bool, kind: str, old_text: str) -> str:
    """Source text for ``value``, in the style of the old literal (``1_024``, ``3e-4``)."""
    if kind == "bool":
        return repr(bool(value))
    if kind == "int":
        return f"{int(value):_}" if "_" in old_text else str(int(value))
    if "e" in old_text.lower() and value != 0:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return repr(float(value))
