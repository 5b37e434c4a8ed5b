"""Where a sandbox's prepared data lives, whoever runs the harness and wherever the sandbox is.

prepare.py keeps the prepared corpus (text, tokenizer, token ids) under a cache root, by default
``~/.cache/autoresearch-harness``: a harness started under another HOME (a container, another user,
sudo, an agent CLI with its own environment) or a sandbox copied to another machine would look in
the wrong place. So ``harness init`` records the absolute root it prepared into as ``[run]
data_cache`` in harness.toml, and every run gets ``AUTORESEARCH_CACHE`` set to :func:`root`:

1. ``$AUTORESEARCH_CACHE`` of the harness's environment, when set (the user's explicit choice);
2. else the recorded ``data_cache``, when the corpus is prepared there;
3. else ``~/.cache/autoresearch-harness`` of the current HOME, when the corpus is prepared there;
4. else the recorded root (or the HOME one without a record): :func:`ensure_prepared` prepares the
   corpus there once (offline for shakespeare, pystdlib and local paths that exist) before a run.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

DEFAULT_ROOT = "~/.cache/autoresearch-harness"
ENV = "AUTORESEARCH_CACHE"
BUILTIN_CORPORA = ("shakespeare", "tinystories", "pystdlib")
_CORPUS_LINE = re.compile(r"""^CORPUS = (["'])(.*?)\1""", re.M)
_BASE_MODEL_LINE = re.compile(r"""^BASE_MODEL = (["'])(.*?)\1""", re.M)
_DATA_CACHE_LINE = re.compile(r"""^data_cache\s*=\s*"(.*?)"\s*(#.*)?$""", re.M)
_DATA_HOME_LINE = re.compile(r"""^data_home\s*=\s*"(.*?)"\s*(#.*)?$""", re.M)


def corpus_of(sandbox: Path) -> Optional[str]:
    """The corpus prepare.py names in its ``CORPUS = "..."`` line, or None."""
    try:
        m = _CORPUS_LINE.search((Path(sandbox) / "prepare.py").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return m.group(2) if m else None


def corpus_dir(sandbox: Path, root: Path) -> Optional[Path]:
    """The folder of ``sandbox``'s corpus under ``root`` (prepare.py's ``corpus_dir`` layout:
    ``root/<name>``, or ``root/local-<name>-<sha256[:12]>`` of a local path; ``--<model slug>``
    appended when prepare.py fine-tunes a ``BASE_MODEL``), or None when prepare.py names no corpus."""
    corpus = corpus_of(sandbox)
    if corpus is None:
        return None
    if corpus in BUILTIN_CORPORA:
        name = corpus
    else:
        resolved = str((Path(sandbox).resolve() / Path(corpus).expanduser()).resolve())
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(resolved).name)[:40]
        name = f"local-{slug}-{hashlib.sha256(resolved.encode()).hexdigest()[:12]}"
    try:
        base = _BASE_MODEL_LINE.search((Path(sandbox) / "prepare.py").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        base = None
    if base:
        name += "--" + re.sub(r"[^A-Za-z0-9_.-]+", "_", base.group(2))[-60:]
    return root / name


def recorded_root(sandbox: Path) -> Optional[Path]:
    """``[run] data_cache`` of the sandbox's harness.toml, or None (read with a pattern, so that it
    works on a harness.toml the full loader would refuse)."""
    try:
        m = _DATA_CACHE_LINE.search((Path(sandbox) / "harness.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return Path(m.group(1)).expanduser() if m and m.group(1) else None


def data_home(sandbox: Path) -> Optional[str]:
    """``[run] data_home`` of the sandbox's harness.toml (the HOME its runs get: an adopted
    checkout's prepare.py keeps its data under ``~``), or None."""
    try:
        m = _DATA_HOME_LINE.search((Path(sandbox) / "harness.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return m.group(1) if m and m.group(1) else None


def _prepared(sandbox: Path, root: Path) -> bool:
    folder = corpus_dir(sandbox, root)
    return folder is not None and (folder / "meta.json").is_file()


def root(sandbox: Path) -> Path:
    """The cache root the runs of ``sandbox`` use (the order of the module docstring)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    recorded, home = recorded_root(sandbox), Path(DEFAULT_ROOT).expanduser()
    for candidate in (recorded, home):
        if candidate is not None and _prepared(sandbox, candidate):
            return candidate
    return recorded or home


def ensure_prepared(sandbox: Path, timeout_s: float = 3600) -> Optional[str]:
    """Prepare ``sandbox``'s corpus under :func:`root` when it is not there (``python prepare.py``
    with ``AUTORESEARCH_CACHE`` set); returns a line saying so, or None when it was ready.

    Raises:
        OSError: preparation failed (the message has the end of its output and what to do).
    """
    where = root(sandbox)
    if corpus_of(sandbox) is None:  # an adopted checkout: its own prepare.py, its own data folder
        recorded = recorded_root(sandbox)
        if recorded is not None and not (recorded.is_dir() and any(recorded.iterdir())):
            home = data_home(sandbox)
            raise OSError(f"the data of this adopted checkout is not in {recorded}: run "
                          f"`cd {Path(sandbox).resolve()} && {'HOME=' + home + ' ' if home else ''}python prepare.py` "
                          "(its own data preparation), then start again.")
        return None
    if _prepared(sandbox, where):
        return None
    try:
        proc = subprocess.run([sys.executable, "prepare.py"], cwd=sandbox, capture_output=True, text=True,
                              timeout=timeout_s, env={**os.environ, ENV: str(where)})
    except subprocess.TimeoutExpired:
        raise OSError(f"preparing the corpus into {where} took more than {timeout_s:.0f} s; run "
                      f"`cd {sandbox} && AUTORESEARCH_CACHE={where} python prepare.py` by hand") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise OSError(f"the corpus {corpus_of(sandbox)!r} is not prepared in {where} and preparing it failed:\n{tail}\n"
                      f"Set AUTORESEARCH_CACHE to the folder that holds it, or fix the cause and run "
                      f"`cd {sandbox} && python prepare.py`.")
    return f"the corpus {corpus_of(sandbox)!r} was not prepared in {where} (this HOME or machine differs from the one " \
           f"`harness init` ran on): prepared it there"
