"""The files ``harness init`` writes so that an agent CLI opened in the sandbox (Claude Code,
Codex, a GLM-backed CLI) works through the harness:

- ``.mcp.json`` (Claude Code) and ``.codex/config.toml`` (Codex, in a trusted project): register
  ``harness mcp <sandbox>`` as the MCP server ``autoresearch``;
- ``CLAUDE.md`` and ``AGENTS.md``: read program_mcp.md, run every experiment through run_experiment;
- ``program_mcp.md``: the research program with the mechanics replaced by the tools;
- ``.claude/settings.json``: permission rules and a ``PreToolUse`` hook running
  ``.claude/hooks/guard.py`` with the harness's interpreter: the edit tools may change only the
  editable files (train.py), and never while an experiment runs.

They go into the sandbox's first commit, so an edit of any of them shows in ``git status`` and
the harness refuses to run on a dirty tree.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from .package_data import PROGRAM_MCP, copy_template, read_template

SERVER = "autoresearch"
TOOLS = ("read_file", "list_experiments", "show_experiment", "training_curve", "ask_optimiser", "write_notes",
         "run_experiment")
#: Claude Code's per-user local settings: never committed
IGNORED = (".claude/settings.local.json",)


def mcp_command(sandbox: Path) -> list[str]:
    """The command line that serves ``sandbox`` over MCP with this installation's interpreter."""
    return [sys.executable, "-m", "harness", "mcp", str(Path(sandbox).resolve())]


def claude_settings(sandbox: Path, editable: tuple[str, ...] = ("train.py",)) -> dict:
    """``.claude/settings.json``: the MCP tools, read-only commands and edits of the ``editable``
    files allowed, training runs and history rewrites denied, and the guard hook (which refuses
    edits of every other file) on every edit and shell command."""
    guard = Path(sandbox).resolve() / ".claude" / "hooks" / "guard.py"
    edits = [f"{tool}(./{name})" for name in editable for tool in ("Edit", "Write", "MultiEdit")]
    return {
        "enableAllProjectMcpServers": True,
        "enabledMcpjsonServers": [SERVER],
        "permissions": {
            "allow": [f"mcp__{SERVER}__{t}" for t in TOOLS] + [
                "Read", "Grep", "Glob", "Bash(git log:*)", "Bash(git show:*)", "Bash(git diff:*)",
                "Bash(git status:*)", "Bash(harness status:*)", "Bash(harness log:*)", *edits],
            "deny": ["NotebookEdit", "Bash(python train.py:*)",
                     "Bash(git reset:*)", "Bash(git rebase:*)", "Bash(git push:*)", "Bash(git commit:*)"],
        },
        "hooks": {
            "PreToolUse": [{
                "matcher": "Edit|Write|MultiEdit|NotebookEdit|Bash",
                "hooks": [{"type": "command", "command": shlex.join([sys.executable, str(guard), *editable]),
                           "timeout": 10}],
            }],
        },
    }


def codex_config(command: list[str]) -> str:
    """``.codex/config.toml``: the server as Codex's ``[mcp_servers.NAME]`` table (JSON string
    escapes are valid TOML basic strings)."""
    args = ", ".join(json.dumps(a) for a in command[1:])
    return (f"# written by harness init: the harness's MCP server for this sandbox\n[mcp_servers.{SERVER}]\n"
            f"command = {json.dumps(command[0])}\nargs = [{args}]\n")


def write_agent_files(sandbox: Path, editable: tuple[str, ...] = ("train.py",)) -> list[str]:
    """Write the agent files into ``sandbox`` (before its first commit) for a sandbox whose
    ``editable`` files are those named; returns the paths written.

    Raises:
        harness.package_data.PackageDataError: a template file is missing from the installed package.
        OSError: the sandbox cannot be written.
    """
    sandbox = Path(sandbox)
    hooks = sandbox / ".claude" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    copy_template("agent/guard.py", hooks / "guard.py")
    agents = read_template("agent/AGENTS.md")
    (sandbox / "AGENTS.md").write_text(agents, encoding="utf-8")
    (sandbox / "CLAUDE.md").write_text(agents, encoding="utf-8")
    copy_template(PROGRAM_MCP, sandbox / "program_mcp.md")
    command = mcp_command(sandbox)
    mcp = {"mcpServers": {SERVER: {"type": "stdio", "command": command[0], "args": command[1:]}}}
    (sandbox / ".mcp.json").write_text(json.dumps(mcp, indent=2) + "\n", encoding="utf-8")
    (sandbox / ".codex").mkdir(exist_ok=True)
    (sandbox / ".codex" / "config.toml").write_text(codex_config(command), encoding="utf-8")
    settings = json.dumps(claude_settings(sandbox, tuple(editable)), indent=2) + "\n"
    (sandbox / ".claude" / "settings.json").write_text(settings, encoding="utf-8")
    ignore = sandbox / ".gitignore"
    text = ignore.read_text(encoding="utf-8") if ignore.exists() else ""
    missing = [p for p in IGNORED if p not in text.split("\n")]
    if missing:
        ignore.write_text(text.rstrip("\n") + "\n# agent CLIs' local state\n" + "\n".join(missing) + "\n", encoding="utf-8")
    return [".mcp.json", ".codex/config.toml", "AGENTS.md", "CLAUDE.md", "program_mcp.md", ".claude/settings.json", ".claude/hooks/guard.py"]
