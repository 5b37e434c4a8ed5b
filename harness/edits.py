"""Edit formats other than the unified diff, turned into one: SEARCH/REPLACE blocks, a whole file,
and a diff or blocks found in a plain-text model reply.

Everything here ends in :func:`harness.patch.make_unified_diff`, so the rest of the harness sees
one format. A SEARCH block applies only where it matches one clear place in the file (exactly, or
line by line with trailing whitespace ignored); anything else is a :class:`harness.patch.PatchError`
that shows the model the closest region of the file.

SEARCH/REPLACE syntax (one or more blocks)::

    <<<<<<< SEARCH
    LEARNING_RATE = 3e-3  # peak AdamW learning rate
    =======
    LEARNING_RATE = 2e-3  # peak AdamW learning rate
    >>>>>>> REPLACE
"""

from __future__ import annotations

import re

from .patch import PatchError, closest_region, make_unified_diff

_SEARCH, _SPLIT, _REPLACE = re.compile(r"^<{5,9} ?SEARCH\s*$"), re.compile(r"^={5,9}\s*$"), re.compile(r"^>{5,9} ?REPLACE\s*$")
_FENCED = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1\s*$", re.S | re.M)
_BLOCKS_HINT = ("write each edit as '<<<<<<< SEARCH', the exact current lines, '=======', the new lines, "
                "'>>>>>>> REPLACE', each marker on its own line")


def parse_search_replace(text: str) -> list[tuple[str, str]]:
    """Split ``text`` into ``(search, replace)`` pairs (each a block of whole lines, no final newline).

    Raises:
        PatchError: ``malformed`` when there is no block or a block is not closed.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        try:
            mid = next(j for j in range(i + 1, len(lines)) if _SPLIT.match(lines[j]))
            end = next(j for j in range(mid + 1, len(lines)) if _REPLACE.match(lines[j]))
        except StopIteration:
            raise PatchError("malformed", f"the SEARCH block starting at line {i + 1} is not closed",
                             _BLOCKS_HINT) from None
        blocks.append(("\n".join(lines[i + 1:mid]), "\n".join(lines[mid + 1:end])))
        i = end + 1
    if not blocks:
        raise PatchError("malformed", "no SEARCH/REPLACE block found", _BLOCKS_HINT)
    return blocks


def apply_search_replace(text: str, blocks: list[tuple[str, str]], path: str = "train.py") -> str:
    """Apply ``blocks`` to ``text`` in order and return the new text.

    A block's search lines must match exactly one place (after the previous block's edits), first
    as they are, then with trailing whitespace ignored on every line.

    Raises:
        PatchError: ``empty`` (a block with no search text), ``does_not_apply`` (no match, or
        several), with the closest region of the file in the message.
    """
    for k, (search, replace) in enumerate(blocks, 1):
        if not search.strip():
            raise PatchError("empty", f"SEARCH block {k} is empty",
                             "put the exact current lines to replace between SEARCH and =======")
        lines = text.split("\n")
        want = [line.rstrip() for line in search.split("\n")]
        have = [line.rstrip() for line in lines]
        hits = [i for i in range(len(lines) - len(want) + 1) if have[i:i + len(want)] == want]
        if len(hits) != 1:
            _refuse(k, path, lines, want, hits)
        at = hits[0]
        lines[at:at + len(want)] = replace.split("\n") if replace else []
        text = "\n".join(lines)
    return text


def search_replace_diff(old: str, blocks_text: str, path: str = "train.py") -> str:
    """The unified diff that SEARCH/REPLACE ``blocks_text`` makes of ``old`` (``""``: no change).

    Raises:
        PatchError: the blocks are malformed or do not apply (see :func:`apply_search_replace`).
    """
    return make_unified_diff(old, apply_search_replace(old, parse_search_replace(blocks_text), path), path)


def whole_file_diff(old: str, new: str, path: str = "train.py") -> str:
    """The unified diff from ``old`` to the whole new file ``new`` (a Markdown fence around it is
    removed; a missing final newline is added when ``old`` has one)."""
    fenced = _FENCED.search(new)
    if fenced and not new[:fenced.start()].strip():
        new = fenced.group(2)
    if old.endswith("\n") and new and not new.endswith("\n"):
        new += "\n"
    return make_unified_diff(old, new, path)


def edit_from_text(reply: str) -> tuple[str, str] | None:
    """Find an edit in a plain-text model reply: ``("diff", text)`` for a fenced (or bare) unified
    diff, ``("search_replace", text)`` for SEARCH/REPLACE blocks, None when there is neither."""
    if any(_SEARCH.match(line) for line in reply.splitlines()):
        return "search_replace", reply
    for match in _FENCED.finditer(reply):
        if re.search(r"^@@ -\d+", match.group(2), re.M):
            return "diff", match.group(2)
    hunk = re.search(r"^@@ -\d+", reply, re.M)
    if hunk:
        header = re.search(r"^--- ", reply[:hunk.start()], re.M)
        return "diff", reply[header.start() if header else hunk.start():]
    return None


def _refuse(k: int, path: str, lines: list[str], want: list[str], hits: list[int]):
    if hits:
        where = ", ".join(str(i + 1) for i in hits[:6])
        raise PatchError("does_not_apply", f"SEARCH block {k} matches {len(hits)} places in {path} (lines {where})",
                         "add neighbouring lines to the SEARCH text so it matches exactly one place")
    region, missing = closest_region(path, lines, want)
    detail = f"\nthis SEARCH line is not in {path}: {missing.strip()!r}" if missing else ""
    raise PatchError("does_not_apply", f"SEARCH block {k} does not match {path}.{detail}\n{region}",
                     f"copy the SEARCH lines exactly from the current {path}")
