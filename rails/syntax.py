"""Rail ``syntax``: the proposed file must be UTF-8 text that parses as Python 3.

What it blocks: bytes that are not valid UTF-8 (e.g. a stray ``0xff`` or a Latin-1 ``é``), NUL
bytes, and anything ``libcst.parse_module`` rejects (unclosed brackets, bad indentation,
Python 2 ``print "x"``, a diff pasted into the file, ...).

Why: every later rail reads the libcst tree of the file, and a file that does not parse would only
fail seconds later in the runner, wasting an experiment slot; the agent gets the line and the
parser's message at once instead. Undecodable input fails closed: we never guess an encoding.

Benign example it must allow (any valid module, including non-ASCII text in strings or comments):

    LEARNING_RATE = 3e-4  # η, the step size
    print(f"val_bpb: {0.99:.6f}")
"""

from __future__ import annotations

import ast
import re

from rails.base import Context, ContextRail, Violation

_HINT = "fix the syntax error at line {line}; the file must parse as Python 3"
_LIBCST_POSITION = re.compile(r"error at (\d+):(\d+)")


class SyntaxRail(ContextRail):
    """Refuse files that are not UTF-8 or do not parse with libcst (rule id ``syntax``).

    Accepts ``bytes`` (decoded strictly as UTF-8) or ``str``. Returns at most one violation.
    Later rails need the parse tree, so ``check_source`` stops after a failure here.
    """

    id = "syntax"
    stops_on_failure = True

    def check_context(self, ctx: Context) -> list[Violation]:
        """Decode and parse ``ctx``'s new file once (cached on ``ctx`` for later rails)."""
        try:
            text = ctx.new_text
        except UnicodeDecodeError as exc:
            return [_decode_violation(ctx.raw_new, exc)]
        if "\x00" in text:
            line = text.count("\n", 0, text.index("\x00")) + 1
            return [
                Violation(
                    self.id,
                    line,
                    "file contains a NUL byte; it is not Python source text",
                    f"remove the NUL character at line {line}; the file must be plain UTF-8 text",
                )
            ]
        import libcst

        try:
            ctx.module
        except libcst.ParserSyntaxError as exc:
            return [_parse_violation(text, exc)]
        return []


def _decode_violation(raw: bytes | str, exc: UnicodeDecodeError) -> Violation:
    """Locate the first undecodable byte as a line and column in the raw bytes."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    bad = data[exc.start : exc.end].hex(" ")
    return Violation(
        SyntaxRail.id,
        line,
        f"file is not valid UTF-8: byte(s) 0x{bad} at line {line}, column {column} ({exc.reason})",
        f"rewrite line {line} as UTF-8 text (replace or remove the undecodable bytes)",
    )


def _parse_violation(text: str, exc: Exception) -> Violation:
    """Turn a libcst parse error into a violation.

    libcst's native parser sometimes reports the position of the token *after* the mistake; when
    CPython also rejects the file, its line number (the one a traceback would show) is used.
    """
    libcst_message = " ".join(str(getattr(exc, "message", exc)).split())
    found = _LIBCST_POSITION.search(libcst_message)
    line = int(found.group(1)) if found else int(getattr(exc, "raw_line", 0) or 0)
    message = f"invalid syntax: {_shorten(libcst_message)}"
    try:
        ast.parse(text, "train.py")
    except SyntaxError as py_exc:
        if py_exc.lineno:
            line = py_exc.lineno
        detail = "" if py_exc.msg == "invalid syntax" else f": {py_exc.msg}"
        message = f"invalid syntax{detail} (libcst: {_shorten(libcst_message)})"
    except (ValueError, MemoryError, RecursionError):
        pass
    return Violation(SyntaxRail.id, line, message, _HINT.format(line=line))


def _shorten(text: str, limit: int = 160) -> str:
    """Cut long parser messages (libcst lists every expected token) to one readable line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
