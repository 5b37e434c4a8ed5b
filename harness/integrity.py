"""Integrity of the sandbox around a run: what the experiment must not have changed.

Before a run the harness fingerprints the files an experiment has no business touching
(``prepare.py``, ``program.md``, ``harness.toml``, ``.gitignore``, ``.git/config`` and every
``.git/hooks`` file), and after it compares again and checks that no tracked file differs from the
experiment's commit. Any difference makes the run an ``integrity_violation`` (discarded, and the
reset restores the tracked files). SHA-256 over file bytes; a missing file hashes as ``None``.

The prepared data and tokenizer of the sandbox's corpus live outside the sandbox (prepare.py's
the root of :mod:`harness.datacache`, e.g. ``~/.cache/autoresearch-harness/<corpus>``; for an adopted checkout the data folder recorded
at adoption, e.g. ``~/.cache/autoresearch``); every file under that folder is watched too, under
the key ``cache:<path relative to it>``. Their SHA-256 is computed once per process and
reused while the file's size, inode, mtime and ctime are unchanged (ctime cannot be set back by an
unprivileged process), so a fingerprint costs a few ``stat`` calls after the first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WATCHED = ("prepare.py", "program.md", "harness.toml", ".gitignore", ".git/config")
_sha_cache: dict[tuple, str] = {}
_first_seen: dict[str, str | None] = {}  # cache file -> digest at its first fingerprint in this process


def _sha256(path: Path):
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # ``.git`` is a file in a linked work tree
        return None


def _sha256_cached(path: Path):
    """SHA-256 of a file, reused while (size, inode, mtime, ctime) are unchanged; None if missing."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _sha_cache:
        digest = _sha256(path)
        if digest is None:
            return None
        _sha_cache[key] = digest
    return _sha_cache[key]


def corpus_cache_dir(sandbox: Path) -> Path | None:
    """The cache folder holding the prepared corpus of ``sandbox`` under the root its runs use
    (:func:`harness.datacache.root`), or None when prepare.py names no corpus."""
    from .datacache import corpus_dir, corpus_of, recorded_root, root

    if corpus_of(sandbox) is None:  # an adopted checkout: the data folder recorded at adoption
        return recorded_root(sandbox)
    return corpus_dir(sandbox, root(sandbox))


def _cache_fingerprint(sandbox: Path) -> dict[str, str | None]:
    folder = corpus_cache_dir(sandbox)
    if folder is None or not folder.is_dir():
        return {}
    digests = {str(p): _sha256_cached(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    for path, digest in digests.items():
        _first_seen.setdefault(path, digest)
    return {f"cache:{Path(p).relative_to(folder).as_posix()}": d for p, d in digests.items()}


def cache_drift(sandbox: Path) -> list[str]:
    """Cache files of ``sandbox``'s corpus whose content differs from the first time this process
    fingerprinted them (a corrupted cache would otherwise be the baseline of every later run)."""
    folder = corpus_cache_dir(sandbox)
    if folder is None:
        return []
    return sorted(f"cache:{Path(p).relative_to(folder).as_posix()}" for p, d in _first_seen.items()
                  if folder in Path(p).parents and _sha256_cached(Path(p)) != d)


def fingerprint(sandbox: Path) -> dict[str, str | None]:
    """Path (relative to ``sandbox``) -> SHA-256 of the watched files and every ``.git/hooks`` file,
    plus ``cache:<name>`` -> SHA-256 of each file of the corpus's prepared-data folder."""
    sandbox = Path(sandbox)
    paths = list(WATCHED)
    hooks = sandbox / ".git" / "hooks"
    if hooks.is_dir():
        paths += sorted(str(p.relative_to(sandbox)) for p in hooks.rglob("*") if p.is_file())
    return {**{p: _sha256(sandbox / p) for p in paths}, **_cache_fingerprint(sandbox)}


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
    drift = [p for p in cache_drift(sandbox.path) if p not in changed]
    if drift:
        problems.append(f"{', '.join(drift)} (the data cache {corpus_cache_dir(sandbox.path)} changed since the "
                        "harness started: delete that folder and run `python prepare.py`)")
    return "files changed by the run: " + ", ".join(problems) if problems else ""
