"""read_file and write_notes: the agent's window on the sandbox's files, and its notebook.

Only four names can be read (program.md, the editable files, prepare.py, notes.md); a path with a
folder, ``..`` or any other name is refused with the list of what can be read. The editable files
are read from the current best commit's text that the caller passes in, so what the agent reads is
exactly what its diff must apply to.
"""

from __future__ import annotations

from pathlib import Path

NOTES_NAME = "notes.md"
#: most characters one write_notes call may append
MAX_NOTE_CHARS = 4000


class ToolError(Exception):
    """A tool call was refused; the message tells the model what it may do instead."""


def readable_names(editable: tuple[str, ...]) -> tuple[str, ...]:
    """The file names read_file serves: program.md, the editable files, prepare.py, notes.md."""
    return tuple(dict.fromkeys(("program.md", *editable, "prepare.py", NOTES_NAME)))


def read_file(sandbox: Path | None, path: str, files: dict[str, str], extra: dict[str, str] | None = None) -> str:
    """Text of one readable file.

    Args:
        sandbox: the sandbox folder (None: only ``files`` and ``extra`` can be served).
        path: the name asked for (``train.py``, ``./train.py`` and ``a/train.py`` are the same).
        files: editable file name -> text on the current best commit.
        extra: texts already in memory for the other names (program.md, notes.md).

    Raises:
        ToolError: the name is not readable, or the file cannot be read.
    """
    name = str(path).strip().strip("'\"")
    for prefix in ("./", "a/", "b/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    allowed = readable_names(tuple(files))
    if name not in allowed:
        raise ToolError(f"cannot read {path!r}: only {', '.join(allowed)} can be read (no other files, "
                        "no folders, nothing outside the sandbox)")
    if name in files:
        return files[name]
    if extra and name in extra:
        return extra[name] or f"({name} is empty)"
    if sandbox is None:
        raise ToolError(f"{name} is not available in this session")
    try:
        return (Path(sandbox) / name).read_text(encoding="utf-8")
    except FileNotFoundError:
        if name == NOTES_NAME:
            return "(notes.md is empty: nothing written yet)"
        raise ToolError(f"{name} does not exist in this sandbox") from None


def write_notes(sandbox: Path | None, text: str, experiment: int | None = None) -> str:
    """Append ``text`` to ``<sandbox>/notes.md`` under a heading naming ``experiment``.

    Returns a one-line confirmation with the new size of notes.md in characters.

    Raises:
        ToolError: empty or too long text (> :data:`MAX_NOTE_CHARS`), or no sandbox to write to.
    """
    text = str(text).strip()
    if not text:
        raise ToolError("write_notes needs some text")
    if len(text) > MAX_NOTE_CHARS:
        raise ToolError(f"a note may have at most {MAX_NOTE_CHARS} characters (this one has {len(text)}); shorten it")
    if sandbox is None:
        raise ToolError("notes cannot be written in this session")
    path = Path(sandbox) / NOTES_NAME
    heading = f"\n## before experiment {experiment}\n" if experiment is not None else "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{heading}{text}\n")
    return f"appended {len(text)} characters to notes.md (now {path.stat().st_size} bytes)"
