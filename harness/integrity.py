"""Integrity of the sandbox around a run: what the experiment must not have changed.

Before a run the harness fingerprints the files an experiment has no business touching
(``prepare.py``, ``program.md``, ``harness.toml``, ``.gitignore``, ``.git/config`` and every
``.git/hooks`` file), and after it compares again and checks that no tracked file differs from the
experiment's commit. Any difference makes the run an ``integrity_violation`` (discarded, and the
reset restores the tracked files). SHA-256 over file bytes; a missing file hashes as ``None``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WATCHED = ("prepare.py", "program.md", "harness.toml", ".gitignore", ".git/config")


def _sha256(path: Path):
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError):
        return None


def fingerprint(sandbox: Path) -> dict[str, str | None]:
    """Path (relative to ``sandbox``) -> SHA-256 of the watched files and every ``.git/hooks`` file."""
    sandbox = Path(sandbox)
    paths = list(WATCHED)
    hooks = sandbox / ".git" / "hooks"
    if hooks.is_dir():
        paths += sorted(str(p.relative_to(sandbox)) for p in hooks.rglob("*") if p.is_file())
    return {p: _sha256(sandbox / p) for p in paths}


def changes(before: dict, after: dict) -> list[str]:
    """Paths whose hash differs between two fingerprints (added, removed or modified)."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def check_after_run(sandbox, before: dict) -> str:
    """Return "" when the run left the sandbox intact, else one line naming what changed. Hook
    files that appeared during the run are deleted.

    Args:
        sandbox: a :class:`harness.sandbox.Sandbox` (its work tree is compared with HEAD too).
        before: :func:`fingerprint` taken before the run.
    """
    changed = changes(before, fingerprint(sandbox.path))
    for path in changed:  # a hook planted by the run is removed; the harness never runs hooks anyway
        if path.startswith(".git/hooks/") and before.get(path) is None:
            (sandbox.path / path).unlink(missing_ok=True)
    dirty = [line[3:] for line in sandbox.git.status("--porcelain", "--untracked-files=no").splitlines()]
    problems = changed + [f"{p} (tracked, modified during the run)" for p in dirty if p not in changed]
    return "files changed by the run: " + ", ".join(problems) if problems else ""
