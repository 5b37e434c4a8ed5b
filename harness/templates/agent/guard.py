"""PreToolUse hook of Claude Code for an autoresearch-harness sandbox (written by ``harness init``).

Claude Code sends the tool call as JSON on stdin (``tool_name``, ``tool_input``, ``cwd``). Exit 0
lets the call go on through the usual permission rules; exit 2 blocks it and the text on stderr is
shown to the model. Run as ``python guard.py EDITABLE...`` (``harness init`` writes the sandbox's
editable files, ``train.py`` by default, into the command).

Allowed: the edit tools on an editable file, except while an experiment is running (the run would
be voided, since the harness checks that no tracked file changes under a run); the edit is then
run by ``run_experiment`` called without a diff. Blocked: the edit tools on any other file, shell
writes onto the sandbox's files (redirections, in-place editors, copies and moves onto them),
running train.py or prepare.py, and git commands that move the branch or rewrite history, each
with a message naming the tool to use instead. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

EDIT_TOOLS = ("Edit", "Write", "MultiEdit", "NotebookEdit")
#: the sandbox: this file is <sandbox>/.claude/hooks/guard.py
SANDBOX = Path(__file__).resolve().parents[2]
EDIT_MESSAGE = (
    "Blocked by autoresearch-harness: {path} is not edited directly in this sandbox. Change train.py with the "
    "Edit or Write tool (or pass a unified diff), then call the MCP tool run_experiment(description, diff): the "
    "harness checks, commits, trains, scores and keeps or discards it. Use write_notes for notes.md; prepare.py, "
    "program.md and harness.toml are read-only.")
RUNNING_MESSAGE = (
    "Blocked by autoresearch-harness: experiment {n} is running, and a change to {path} during a run voids it. "
    "Wait for run_experiment's answer, then edit.")
RUN_MESSAGE = (
    "Blocked by autoresearch-harness: do not run {script} yourself. Every training run goes through the MCP tool "
    "run_experiment(description, diff), which applies the time budget and records the result; read past runs "
    "with list_experiments and show_experiment.")
GIT_MESSAGE = (
    "Blocked by autoresearch-harness: `git {sub}` would change the sandbox's branch or history, which the harness "
    "owns. run_experiment commits each experiment and resets discarded ones itself; read history with git log, "
    "git show, git diff, or the MCP tools list_experiments / show_experiment.")

#: git subcommands that commit, move refs or rewrite the tree or history
GIT_WRITES = {"reset", "rebase", "commit", "filter-branch", "filter-repo", "update-ref", "checkout", "switch",
              "restore", "stash", "clean", "reflog", "gc", "replace", "am", "cherry-pick", "revert", "merge",
              "pull", "rm", "mv", "apply", "symbolic-ref"}
#: git global options that take a value (skipped to find the subcommand)
GIT_VALUE_OPTIONS = {"-C", "-c", "--git-dir", "--work-tree", "--namespace"}
#: shell writes into the sandbox's own files: redirections, in-place editors, copies and moves onto them
PROTECTED = r"(train\.py|prepare\.py|program(_mcp)?\.md|notes\.md|harness\.toml|results\.tsv|trajectory\.jsonl|\.gitignore)"
SHELL_WRITE = re.compile(r"(>>?|\b(tee|truncate|rm|dd|patch)\b[^|;&]*?|\bsed\b[^|;&]*?\s-i\S*[^|;&]*?|"
                         r"\bperl\s+-\S*i\S*[^|;&]*?)\s*(of=)?\S*?(?<![\w.])" + PROTECTED + r"(?![\w.])")
RUNNERS = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|uv|torchrun|accelerate|nohup|timeout|env|exec|bash|sh|time)$")


def check(event: dict, editable: tuple[str, ...] = ("train.py",)) -> str | None:
    """The reason to block this PreToolUse ``event``, or None to let it through. ``editable``:
    the sandbox's editable files, relative to the sandbox."""
    tool = event.get("tool_name", "")
    args = event.get("tool_input") or {}
    if tool in EDIT_TOOLS:
        return check_edit(str(args.get("file_path") or args.get("notebook_path") or ""),
                          str(event.get("cwd") or SANDBOX), editable)
    if tool == "Bash":
        return check_command(str(args.get("command", "")))
    return None


def check_edit(file_path: str, cwd: str, editable: tuple[str, ...]) -> str | None:
    """Let an edit tool write an editable file of the sandbox while no experiment runs."""
    target = Path(os.path.realpath(os.path.join(cwd, os.path.expanduser(file_path))))  # symlinks resolved, as SANDBOX
    try:
        rel = target.relative_to(SANDBOX).as_posix()
    except ValueError:
        rel = None
    if rel not in editable:
        return EDIT_MESSAGE.format(path=file_path or "this file")
    running = _running_experiment()
    return RUNNING_MESSAGE.format(n=running, path=rel) if running is not None else None


def _running_experiment():
    """The number of the experiment the harness is running now, or None (from .harness/state.json)."""
    try:
        state = json.loads((SANDBOX / ".harness" / "state.json").read_text(encoding="utf-8"))
        if state.get("phase") != "running":
            return None
        os.kill(int(state["pid"]), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return state.get("experiment", "?")


def check_command(command: str) -> str | None:
    """The reason to block a shell command line, or None."""
    match = SHELL_WRITE.search(command)
    if match:
        return EDIT_MESSAGE.format(path=re.search(PROTECTED, match.group(0)).group(0))
    for part in re.split(r"&&|\|\||[;|&\n]|\$\(|`", command):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]  # VAR=value prefixes
        if not words:
            continue
        reason = _check_words(words)
        if reason:
            return reason
    return None


def _check_words(words: list[str]) -> str | None:
    prog = words[0].rsplit("/", 1)[-1]
    targets = [w for w in words[1:] if not w.startswith("-")]
    if prog in ("cp", "mv", "install", "ln") and targets and re.fullmatch(PROTECTED, targets[-1].rsplit("/", 1)[-1]):
        return EDIT_MESSAGE.format(path=targets[-1])
    if prog == "git":
        return _check_git(words[1:])
    if prog in ("train.py", "prepare.py"):
        return RUN_MESSAGE.format(script=prog)
    if RUNNERS.match(prog):
        for w in words[1:]:
            name = w.rsplit("/", 1)[-1]
            if name in ("train.py", "prepare.py") or w in ("train", "prepare"):
                return RUN_MESSAGE.format(script=name if name.endswith(".py") else name + ".py")
    return None


def _check_git(args: list[str]) -> str | None:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in GIT_VALUE_OPTIONS else 1
    if i >= len(args):
        return None
    sub, rest = args[i], args[i + 1:]
    if sub in GIT_WRITES:
        return GIT_MESSAGE.format(sub=" ".join([sub, *rest[:2]]).strip())
    if sub == "push" and any(r in ("-f", "--force", "--force-with-lease", "--mirror", "--delete", "-d") or
                             r.startswith(("--force", "+")) for r in rest):
        return GIT_MESSAGE.format(sub="push " + " ".join(rest))
    if sub in ("branch", "tag") and any(r in ("-D", "-d", "--delete", "-f", "--force", "-M", "-m", "--move")
                                        for r in rest):
        return GIT_MESSAGE.format(sub=" ".join([sub, *rest]))
    return None


def main() -> int:
    """Read one hook event from stdin; exit 2 with the reason on stderr to block it."""
    try:
        event = json.load(sys.stdin)
    except ValueError:
        return 0
    reason = check(event, tuple(sys.argv[1:]) or ("train.py",)) if isinstance(event, dict) else None
    if reason:
        print(reason, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
