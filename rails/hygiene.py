"""Rail ``source-hygiene``: what the reviewer sees is what Python runs.

What it blocks: bidirectional-control characters anywhere (U+202A–U+202E, U+2066–U+2069,
U+200E, U+200F, U+061C: "Trojan Source", CVE-2021-42574), a coding cookie other than UTF-8
(``# -*- coding: utf-7 -*-`` makes Python decode the file differently from every reader), and
non-ASCII identifiers (Python applies NFKC to identifiers, so ``ｅｖａｌ`` *is* ``eval`` and
``ᵀIME_BUDGET``-style look-alikes can shadow protected names; libcst keeps the raw spelling, so
the rails would otherwise disagree with the interpreter).

Why: every other rail assumes the text it reads is the program that runs.

Benign example it must allow (non-ASCII in comments and strings is fine)::

    LEARNING_RATE = 3e-4  # η
    print("température")
"""

from __future__ import annotations

import io
import re
import tokenize

from rails.base import Context, ContextRail, Violation

BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
COOKIE = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.M)


class HygieneRail(ContextRail):
    """Refuse bidi controls, non-UTF-8 coding cookies and non-ASCII identifiers."""

    id = "source-hygiene"

    def check_context(self, ctx: Context) -> list[Violation]:
        """Scan the text and its tokens (the file has already parsed)."""
        text, out = ctx.new_text, []
        for m in BIDI.finditer(text):
            out.append(Violation(self.id, text.count("\n", 0, m.start()) + 1,
                                 f"bidirectional control character U+{ord(m.group()):04X}",
                                 "remove it: it makes the code read differently from how it runs"))
        for m in COOKIE.finditer("\n".join(text.splitlines()[:2])):
            if m.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
                out.append(Violation(self.id, text.count("\n", 0, m.start()) + 1,
                                     f"coding cookie {m.group(1)!r}", "files are UTF-8; remove the cookie"))
        if text.isascii():
            return out  # no identifier can be non-ASCII
        try:
            for tok in tokenize.generate_tokens(io.StringIO(text).readline):
                if tok.type == tokenize.NAME and not tok.string.isascii():
                    out.append(Violation(self.id, tok.start[0], f"non-ASCII identifier {tok.string!r}",
                                         "use ASCII names (Python folds look-alike letters into other names)"))
        except (tokenize.TokenError, SyntaxError) as exc:
            out.append(Violation(self.id, 0, f"the file cannot be tokenized: {exc}", "fix the syntax"))
        return out
