"""The sandbox's git repository, through GitPython: commit before a run, keep or discard after.

Invariants the loop relies on:
- the code that ran is always a commit (the experiment is committed before it runs);
- a kept experiment is where branch ``autoresearch/<tag>`` points;
- a discarded experiment is reachable under ``refs/autoresearch/discarded/<n>`` and the branch is
  reset (``git reset --hard``) to its parent, so no tried diff is lost.

Commit messages carry git trailers (``Experiment:``, ``Status:``, ``Val-Bpb:`` ...) in the form
``git interpret-trailers`` reads, so ``git log`` alone tells the story of a run.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import git
from gitdb import IStream

from .faults import point

DISCARDED_PREFIX = "refs/autoresearch/discarded"
#: an experiment of several runners in flight: its ``Status: running`` commit (see :mod:`harness.runners`)
RUNNING_PREFIX = "refs/autoresearch/running"
HARNESS_IDENTITY = ("autoresearch-harness", "harness@autoresearch.invalid")


class SandboxError(Exception):
    """The sandbox's git state is not what the harness needs; the message says how to fix it."""


def commit_message(subject: str, trailers: dict[str, object]) -> str:
    """Build a commit message: one subject line, a blank line, then ``Key: value`` trailers.

    Newlines in ``subject`` are folded to spaces and it is cut to 200 characters.
    """
    subject = " ".join(subject.split())[:200] or "(no description)"
    body = "\n".join(f"{k}: {v}" for k, v in trailers.items() if v is not None)
    return f"{subject}\n\n{body}\n"


def parse_trailers(message: str) -> dict[str, str]:
    """Return the ``Key: value`` trailers of the last paragraph of a commit message."""
    paragraph = message.strip().split("\n\n")[-1]
    out = {}
    for line in paragraph.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key and " " not in key:
            out[key] = value.strip()
    return out


class Sandbox:
    """A sandbox repository on its experiment branch.

    Args:
        path: the sandbox folder (a git work tree).
        branch: the experiment branch, e.g. ``autoresearch/nov21``.

    Raises:
        SandboxError: ``path`` is not a git repository.
    """

    def __init__(self, path: Path, branch: str):
        self.path = Path(path)
        self.branch = branch
        try:
            self.repo = git.Repo(self.path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise SandboxError(f"{self.path} is not a git repository; create a sandbox with `harness init`.") from None
        self.git = self.repo.git
        # no hook ever runs for the harness's own git commands (an experiment could plant one)
        self.git.update_environment(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="core.hooksPath",
                                    GIT_CONFIG_VALUE_0=os.devnull)

    # --- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, branch: str, message: str) -> "Sandbox":
        """``git init`` in ``path``, commit every file there on ``main``, then create and check
        out ``branch``. The harness's identity is set in the repository's own config so commits
        work on machines without a global git identity."""
        repo = git.Repo.init(path, initial_branch="main")
        with repo.config_writer() as cw:
            cw.set_value("user", "name", HARNESS_IDENTITY[0])
            cw.set_value("user", "email", HARNESS_IDENTITY[1])
        repo.git.add("--all")
        repo.git.commit("-m", message, "--no-verify")
        repo.git.checkout("-b", branch)
        return cls(path, branch)

    # --- reading ----------------------------------------------------------------------------
    def head(self) -> str:
        """The full sha of HEAD."""
        return self.repo.head.commit.hexsha

    def head_message(self) -> str:
        """The message of the HEAD commit."""
        return self.repo.head.commit.message

    def read(self, name: str, rev: str = "HEAD") -> str:
        """Text of file ``name`` at ``rev`` (UTF-8)."""
        return self.git.show(f"{rev}:{name}", strip_newline_in_stdout=False)

    def is_clean(self) -> bool:
        """True when tracked files match HEAD and no untracked, unignored file exists."""
        return not self.repo.is_dirty(untracked_files=True)

    def ensure_on_branch(self) -> None:
        """Check out the experiment branch (it must exist).

        Raises:
            SandboxError: the branch does not exist or tracked files have uncommitted changes.
        """
        if self.repo.is_dirty(untracked_files=False):
            raise SandboxError(
                f"{self.path} has uncommitted changes to tracked files; commit or discard them "
                "(`git status`) before starting: the harness commits every experiment itself."
            )
        if self.branch not in [h.name for h in self.repo.heads]:
            raise SandboxError(f"branch {self.branch} not found in {self.path}; check the tag in harness.toml.")
        if self.repo.head.is_detached or self.repo.active_branch.name != self.branch:
            self.git.checkout(self.branch)

    # --- writing ----------------------------------------------------------------------------
    def commit_files(self, files: dict[str, str], message: str) -> str:
        """Write ``files`` (name -> text) into the work tree, commit them, return the new sha.

        With no files this makes an empty commit (used to record the baseline). No git hook runs
        for any of the harness's git commands (``core.hooksPath`` is set to the null device).
        """
        for name, text in files.items():
            (self.path / name).write_text(text, encoding="utf-8")
        if files:
            self.git.add("--", *files)
        self.git.commit("-m", message, "--no-verify", "--allow-empty")
        return self.head()

    def amend_message(self, message: str) -> str:
        """Replace HEAD's message (the tree is unchanged); return the new sha."""
        self.git.commit("--amend", "-m", message, "--no-verify", "--allow-empty")
        return self.head()

    def discard(self, experiment: int, parent: str) -> None:
        """Keep HEAD under ``refs/autoresearch/discarded/<experiment>``, then ``git reset --hard``
        to ``parent``."""
        self.git.update_ref(f"{DISCARDED_PREFIX}/{experiment}", self.head())
        point("after_discard_ref")
        self.reset_hard(parent)

    def reset_hard(self, rev: str) -> None:
        """``git reset --hard rev``: tracked files back to ``rev``; untracked files stay."""
        self.git.reset("--hard", rev)

    def discarded_refs(self) -> dict[int, str]:
        """Experiment number -> sha of every ref under ``refs/autoresearch/discarded/``."""
        return self._numbered_refs(DISCARDED_PREFIX)

    def running_refs(self) -> dict[int, str]:
        """Experiment number -> sha of every ref under ``refs/autoresearch/running/`` (experiments
        of several runners in flight)."""
        return self._numbered_refs(RUNNING_PREFIX)

    def _numbered_refs(self, prefix: str) -> dict[int, str]:
        out = {}
        for line in self.git.for_each_ref("--format=%(refname) %(objectname)", prefix).splitlines():
            ref, sha = line.split()
            out[int(ref.rsplit("/", 1)[1])] = sha
        return out

    # --- several runners: experiments off the branch, in worktrees ---------------------------
    def commit_off_branch(self, files: dict[str, str], parent: str, message: str, experiment: int) -> str:
        """Commit ``files`` (name -> text) on top of ``parent`` without moving the branch or
        touching the work tree (a temporary index, ``git commit-tree``), and point
        ``refs/autoresearch/running/<experiment>`` at it. Returns the new sha."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="harness-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.git.read_tree(parent, env=env)
            for name, text in files.items():
                data = text.encode("utf-8")
                blob = self.repo.odb.store(IStream("blob", len(data), io.BytesIO(data))).hexsha.decode()
                self.git.update_index("--add", "--cacheinfo", f"100644,{blob},{name}", env=env)
            tree = self.git.write_tree(env=env)
        commit = self.git.commit_tree(tree, "-p", parent, "-m", message)
        self.git.update_ref(f"{RUNNING_PREFIX}/{experiment}", commit)
        return commit

    def recommit(self, commit: str, message: str) -> str:
        """A new commit with ``commit``'s tree and parents and ``message`` (the final trailers of
        an experiment that ran off the branch); returns its sha. Nothing else moves."""
        c = self.repo.commit(commit)
        parents = [a for p in c.parents for a in ("-p", p.hexsha)]
        return self.git.commit_tree(c.tree.hexsha, *parents, "-m", message)

    def delete_ref(self, ref: str) -> None:
        """Delete ``ref`` (a full ref name); nothing when it does not exist."""
        if self.git.for_each_ref(ref):
            self.git.update_ref("-d", ref)

    def drop_running(self, experiment: int, folder: Path) -> None:
        """Remove what an experiment of several runners had in flight: its linked work tree at
        ``folder`` and ``refs/autoresearch/running/<experiment>`` (each only if still there)."""
        self.remove_worktree(folder)
        self.delete_ref(f"{RUNNING_PREFIX}/{experiment}")

    def add_worktree(self, folder: Path, rev: str) -> Path:
        """Check ``rev`` out, detached, in a new linked work tree at ``folder`` (``git worktree
        add``); an old one there is removed first. Returns ``folder``."""
        self.remove_worktree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.git.worktree("add", "--detach", "--force", str(folder), rev)
        return folder

    def remove_worktree(self, folder: Path) -> None:
        """Remove the linked work tree at ``folder`` (and what the run left in it), if any."""
        import shutil

        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        self.git.worktree("prune")
