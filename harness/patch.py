"""Parse, validate and apply a unified diff proposed by an agent; make one with difflib.

Agents (LLMs) write diffs with small slips: a Markdown fence around them, no ``a/`` ``b/``
prefixes, wrong hunk line counts or positions, trailing whitespace stripped from context lines.
`apply_unified_diff` tolerates those, like ``git apply --recount`` and GNU ``patch``'s offset
search, but it never guesses: a hunk applies only where its old lines (context and removed)
match one clear place in the file. Every refusal is a `PatchError` whose message shows the agent
what to fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import NoReturn

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_FENCE = re.compile(r"^(```|~~~)")
_NO_NEWLINE = "\\ No newline at end of file"
#: a unique match at most this many lines from the hunk header's position is taken
NEAR_LINES = 20


class PatchError(Exception):
    """A proposed diff was refused.

    Attributes:
        reason: short code: ``malformed``, ``wrong_file``, ``does_not_apply``, ``empty`` or
            ``create_or_delete``.
        message: what went wrong (may span several lines, e.g. the closest region of the file).
        hint: what the agent should do instead, in one line.
    """

    def __init__(self, reason: str, message: str, hint: str):
        super().__init__(reason, message, hint)
        self.reason, self.message, self.hint = reason, message, hint

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}\nhint: {self.hint}"


def apply_unified_diff(diff_text: str, files: dict[str, str], editable: Iterable[str]) -> dict[str, str]:
    """Apply ``diff_text`` to ``files`` and return the new contents of the files it touches.

    Args:
        diff_text: a unified diff (``---``/``+++`` headers with or without ``a/`` ``b/``
            prefixes, ``@@`` hunks), optionally wrapped in a Markdown ``` fence. Hunk line counts
            are recounted from the body; the header's start line is only where the search begins.
        files: current contents by repository-relative path (e.g. ``{"train.py": text}``).
        editable: the paths the diff may touch.

    Returns:
        ``{path: new_text}`` for each touched file; the trailing-newline state of each file is
        kept unless the diff says otherwise with ``\\ No newline at end of file``.

    Raises:
        PatchError: ``empty`` (no text, or no change), ``malformed`` (not a parseable diff, or a
        binary diff), ``wrong_file`` (a path outside ``editable`` or absent from ``files``),
        ``create_or_delete`` (file creation, deletion or rename), ``does_not_apply`` (a hunk's old
        lines match nowhere, or in several places far from its header).
    """
    import unidiff

    editable = tuple(editable)
    text = _normalize(diff_text, editable)
    try:
        patch = unidiff.PatchSet(text)
    except unidiff.UnidiffParseError as exc:
        raise PatchError("malformed", f"the diff does not parse: {exc}", _FORMAT_HINT) from None
    if not len(patch):
        raise PatchError("malformed", "no file headers or hunks found in the diff", _FORMAT_HINT)

    results: dict[str, str] = {}
    for patched in patch:
        path = _checked_path(patched, files, editable)
        current = results.get(path, files[path])
        results[path] = _apply_file(path, current, patched)
    if all(results[path] == files[path] for path in results):
        raise PatchError("empty", "the diff changes nothing", "propose a diff that adds or removes lines")
    return results


def make_unified_diff(old: str, new: str, path: str = "train.py") -> str:
    """A unified diff from ``old`` to ``new`` (headers ``--- a/PATH`` / ``+++ b/PATH``, 3 lines of
    context), accepted by `apply_unified_diff` and by ``git apply``; ``""`` when they are equal.

    A last line without a newline gets git's ``\\ No newline at end of file`` marker.
    """
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}", n=3
    )
    return "".join(line if line.endswith("\n") else f"{line}\n{_NO_NEWLINE}\n" for line in lines)


_FORMAT_HINT = (
    "send one unified diff: '--- a/train.py', '+++ b/train.py', then '@@ -start,count +start,count @@' "
    "hunks whose lines start with ' ', '-' or '+'"
)


def merge_files(base: dict[str, str], ours: dict[str, str], theirs: dict[str, str]) -> dict[str, str] | None:
    """Three-way merge of two edits of the same files (name -> text): ``ours`` and ``theirs``
    both started from ``base`` (``git merge-file``, line by line, as git merges a branch). Where
    git calls edits of adjacent lines a conflict (two knobs on neighbouring lines), ``theirs`` is
    taken when each of its changes replaces or deletes lines of ``base`` that appear exactly once,
    unchanged, in ``ours`` (:func:`_replace_blocks`).

    Returns:
        name -> merged text for every file of ``ours``, or None when an edit conflicts (both
        changed the same lines) or git cannot be run.
    """
    import subprocess
    import tempfile
    from pathlib import Path

    out = {}
    with tempfile.TemporaryDirectory(prefix="harness-merge-") as tmp:
        for name, mine in ours.items():
            old, other = base.get(name, ""), theirs.get(name, base.get(name, ""))
            if other == old or other == mine:
                out[name] = mine
                continue
            if mine == old:
                out[name] = other
                continue
            paths = [Path(tmp) / f"{i}" for i in range(3)]
            for path, text in zip(paths, (mine, old, other)):
                path.write_text(text, encoding="utf-8")
            try:
                proc = subprocess.run(["git", "merge-file", "-p", "-q", *map(str, paths)], capture_output=True,
                                      timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                return None
            merged = proc.stdout.decode("utf-8") if proc.returncode == 0 else _replace_blocks(old, mine, other)
            if merged is None:
                return None
            out[name] = merged
    return out


def _replace_blocks(base: str, ours: str, theirs: str) -> str | None:
    """``ours`` with each change from ``base`` to ``theirs`` made again, when every change
    replaces or deletes a block of ``base`` lines found exactly once in ``ours``; else None."""
    old, mine, new = base.splitlines(keepends=True), ours.splitlines(keepends=True), theirs.splitlines(keepends=True)
    edits = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i1 == i2:
            return None  # a pure insertion: no line of ours to anchor it
        block = old[i1:i2]
        at = [k for k in range(len(mine) - len(block) + 1) if mine[k:k + len(block)] == block]
        if len(at) != 1:
            return None
        edits.append((at[0], at[0] + len(block), new[j1:j2]))
    edits.sort()
    if any(a[1] > b[0] for a, b in zip(edits, edits[1:])):
        return None
    for start, end, lines in reversed(edits):
        mine[start:end] = lines
    return "".join(mine)


def _normalize(diff_text: str, editable: tuple[str, ...]) -> str:
    """Unwrap a fence, add missing file headers, recount hunk lengths and end with a newline."""
    lines = diff_text.replace("\r\n", "\n").split("\n")
    fences = [i for i, line in enumerate(lines) if _FENCE.match(line)]
    blocks = [lines[start + 1 : end] for start, end in zip(fences[::2], fences[1::2] + [len(lines)])]
    if blocks:  # the first fenced block with a hunk in it, else the first block
        lines = next((b for b in blocks if any(_HUNK_HEADER.match(line) for line in b)), blocks[0])
    if not "".join(lines).strip():
        raise PatchError("empty", "the diff is empty", "propose a unified diff against train.py")
    has_headers = any(line.startswith("--- ") or line.startswith("diff --git ") for line in lines)
    if not has_headers and len(editable) == 1 and any(_HUNK_HEADER.match(line) for line in lines):
        lines = [f"--- a/{editable[0]}", f"+++ b/{editable[0]}"] + lines
    return "\n".join(_recount(lines)).rstrip("\n") + "\n"


def _recount(lines: list[str]) -> list[str]:
    """Rewrite each hunk header's line counts from its body (what ``git apply --recount`` does).

    Inside a hunk an empty line is a blank context line (agents strip its single space); empty
    lines at the end of a hunk are dropped. A hunk ends at the next header or non-diff line.
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = _HUNK_HEADER.match(lines[i])
        if not header and lines[i].startswith("@@"):
            raise PatchError(
                "malformed",
                f"hunk header {lines[i]!r} has no line numbers",
                "write hunk headers as '@@ -START,COUNT +START,COUNT @@' (START: the line in the current file)",
            )
        if not header:
            out.append(lines[i])
            i += 1
            continue
        body: list[str] = []
        i += 1
        while i < len(lines):
            line = lines[i]
            if _HUNK_HEADER.match(line) or line.startswith("diff --git "):
                break
            if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
                break
            if line and line[0] not in " +-\\":
                break
            body.append(line if line else " ")
            i += 1
        while body and body[-1] == " " and lines[i - 1] == "":
            body.pop()
            i -= 1
        old = sum(1 for line in body if line[0] in " -")
        new = sum(1 for line in body if line[0] in " +")
        out.append(f"@@ -{header.group(1)},{old} +{header.group(3)},{new} @@{header.group(5)}")
        out.extend(body)
    return out


def _clean_path(name: str | None) -> str:
    name = (name or "").strip().strip('"')
    if name.startswith(("a/", "b/")):
        name = name[2:]
    return name[2:] if name.startswith("./") else name


def _checked_path(patched, files: dict[str, str], editable: tuple[str, ...]) -> str:
    """Refuse binary diffs, creation/deletion/renames and files outside ``editable``."""
    if patched.is_binary_file:
        raise PatchError("malformed", f"binary diff for {patched.path}", "edit text files only")
    source, target = patched.source_file, patched.target_file
    if source == "/dev/null" or target == "/dev/null":
        kind = "creates" if source == "/dev/null" else "deletes"
        raise PatchError(
            "create_or_delete",
            f"the diff {kind} {_clean_path(target if kind == 'creates' else source)}",
            f"modify an existing editable file instead ({', '.join(editable)})",
        )
    path, target_path = _clean_path(source), _clean_path(target)
    if path != target_path:
        raise PatchError(
            "create_or_delete",
            f"the diff renames {path} to {target_path}",
            f"keep the file name; modify {', '.join(editable)} in place",
        )
    if path not in editable:
        raise PatchError(
            "wrong_file",
            f"the diff touches {path}, which is not editable (editable files: {', '.join(editable)})",
            f"only change {', '.join(editable)}",
        )
    if path not in files:
        raise PatchError("wrong_file", f"{path} is editable but does not exist", "diff an existing file")
    if not len(patched):
        raise PatchError("empty", f"the diff for {path} has no hunks", "add @@ hunks with the change")
    return path


def _apply_file(path: str, text: str, patched) -> str:
    """Locate every hunk in ``text`` (in order, without overlap), then splice them in."""
    lines = text.split("\n")
    ends_with_newline = text.endswith("\n") or not text  # an empty file gains normal lines
    eol_mark = "\r" if text.count("\r\n") * 2 > text.count("\n") else ""  # added lines follow CRLF files
    if ends_with_newline:
        lines.pop()
    plan: list[tuple[int, list[tuple[str, str]]]] = []
    floor = 0
    for hunk in patched:
        ops, eol = _ops(hunk)
        if eol is not None:
            ends_with_newline = eol
        old = [value for kind, value in ops if kind != "+"]
        start = _locate(path, lines, old, hunk, floor)
        plan.append((start, ops))
        floor = start + len(old)
    for start, ops in reversed(plan):  # context lines keep the file's own text (whitespace)
        at, new = start, []
        for kind, value in ops:
            if kind == "+":
                new.append(value + eol_mark)
                continue
            if kind == " ":
                new.append(lines[at])
            at += 1
        lines[start:at] = new
    result = "\n".join(lines)
    return result + "\n" if ends_with_newline and lines else result


def _ops(hunk) -> tuple[list[tuple[str, str]], bool | None]:
    """The hunk as ``(" "|"-"|"+", text)`` pairs, and the new trailing-newline state if a
    ``\\ No newline at end of file`` marker sets it (after a ``-`` line: the new side has one)."""
    ops: list[tuple[str, str]] = []
    eol: bool | None = None
    for line in hunk:
        if line.line_type == "\\" and ops:
            eol = ops[-1][0] == "-"
        elif line.line_type in (" ", "-", "+"):
            ops.append((line.line_type, line.value[:-1] if line.value.endswith("\n") else line.value))
    return ops, eol


def _locate(path: str, lines: list[str], old: list[str], hunk, floor: int) -> int:
    """Index where ``old`` matches ``lines`` at or after ``floor`` (trailing whitespace ignored).

    Prefer the header's position; else the only match, or the only one within `NEAR_LINES` of it.
    """
    expected = hunk.source_start - 1 if old else hunk.source_start
    expected = max(expected, floor)
    if not old:
        if expected <= len(lines):
            return expected
        _refuse(path, lines, old, hunk, "its insertion point is past the end of the file", floor)
    wanted = [line.rstrip() for line in old]
    stripped = [line.rstrip() for line in lines]
    n = len(wanted)
    matches = [i for i in range(floor, len(lines) - n + 1) if stripped[i : i + n] == wanted]
    if expected in matches:
        return expected
    near = [i for i in matches if abs(i - expected) <= NEAR_LINES]
    if len(matches) == 1:
        return matches[0]
    if len(near) == 1:
        return near[0]
    if not matches:
        _refuse(path, lines, old, hunk, "its context and removed lines do not match the file", floor)
    where = ", ".join(str(i + 1) for i in matches[:6])
    _refuse(path, lines, old, hunk, f"its old lines match in {len(matches)} places (lines {where})", floor)


def _refuse(path: str, lines: list[str], old: list[str], hunk, why: str, floor: int) -> NoReturn:
    """Raise ``does_not_apply`` with the hunk header and the closest region of the file."""
    header = f"@@ -{hunk.source_start},{hunk.source_length} +{hunk.target_start},{hunk.target_length} @@"
    region, missing = closest_region(path, lines, old, near=hunk.source_start - 1)
    detail = f"\nthis line of the hunk is not in {path}: {missing.strip()!r}" if missing else ""
    after = f" (searched after line {floor}, where the previous hunk ends)" if floor else ""
    raise PatchError(
        "does_not_apply",
        f"hunk {header} does not apply to {path}: {why}{after}.{detail}\n{region}",
        f"copy the context and removed lines exactly from the current {path}, with enough context "
        "to match one place, or send a fresh diff",
    )


def closest_region(path: str, lines: list[str], old: list[str], near: int | None = None) -> tuple[str, str | None]:
    """Where ``old`` (lines that do not match) comes closest in ``lines``, for a refusal message.

    Returns ``(region, missing)``: ``region`` is "closest region of PATH (lines a-b):" followed by
    the numbered window of ``len(old)`` lines (plus one either side) holding most of ``old``'s
    stripped lines; ``missing`` is the first line of ``old`` that is nowhere in the file (None
    when each is somewhere). Ties go to the window nearest the 0-based line ``near`` when given
    (and with no line in common the window is at ``near``), else to the first.
    """
    wanted = {line.strip() for line in old if line.strip()}
    size = max(len(old), 1)
    scores = [sum(1 for line in lines[i : i + size] if line.strip() in wanted) for i in range(len(lines))]
    if near is None:
        best = max(range(len(lines)), key=lambda i: scores[i], default=0)
    else:
        best = max(range(len(lines)), key=lambda i: (scores[i], -abs(i - near)), default=0)
        if scores and scores[best] == 0:
            best = min(max(near, 0), max(len(lines) - 1, 0))
    first, last = max(best - 1, 0), min(best + size + 1, len(lines))
    region = "\n".join(f"{i + 1:>5} | {lines[i]}" for i in range(first, last))
    present = {line.strip() for line in lines}
    missing = next((line for line in old if line.strip() and line.strip() not in present), None)
    return f"closest region of {path} (lines {first + 1}-{last}):\n{region}", missing
