"""``harness init --adopt PATH [DIR]``: turn an existing autoresearch checkout into a sandbox.

An autoresearch checkout (karpathy/autoresearch or a fork: macOS/MPS, MLX, Windows) keeps its own
``train.py``, ``prepare.py`` (with ``evaluate_bpb`` and ``TIME_BUDGET``), ``program.md`` and data
cache (``~/.cache/autoresearch``); adoption leaves all of them as they are and adds:

- ``harness.toml``: ``python train.py`` with ``[run] evaluation = "capture"`` (the trusted start-up,
  :mod:`harness.evalguard`, records evaluate_bpb's return value; the printed val_bpb is never
  read), the time budget from prepare.py, ``data_cache``/``data_home`` where the data was found
  (every run gets that HOME, whoever starts the harness), ``kernels`` allowed with the kernel
  repositories the unmodified train.py loads as the allowlist, no checkpoints (a foreign
  prepare.py cannot save them), and a budget tolerance of a quarter of the budget (autoresearch's
  loop leaves its first, compiling steps out of its own clock; the harness counts from the first
  optimizer step);
- the harness's ignore lines in ``.gitignore`` and the files for agent CLIs; files the harness
  writes (``progress.png``, which karpathy/autoresearch tracks) are untracked on the branch;
- ``imported.jsonl``: the rows of the checkout's ``results.tsv`` (commit, val_bpb, memory_gb,
  status, description), each with the file key of its train.py where git still has the commit,
  so that re-proposing a file already tried is refused as a ``duplicate``; the original
  results.tsv is kept as ``results.autoresearch.tsv`` (the harness writes its own results.tsv);
- a commit of those files on branch ``autoresearch/<tag>`` (the checkout's current
  ``autoresearch/<tag>`` branch is continued).

With DIR the checkout is cloned there first (``git clone``; its results.tsv copied), else it is
adopted in place, which needs a clean work tree.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .config import HarnessConfig, render
from .init import InitError, default_tag

IMPORTED_NAME = "imported.jsonl"
ORIGINAL_RESULTS = "results.autoresearch.tsv"
#: where autoresearch's prepare.py keeps its data, under HOME
AUTORESEARCH_CACHE = Path(".cache") / "autoresearch"
_REPO = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+")
#: files the harness writes in a sandbox that a checkout may track (karpathy/autoresearch tracks progress.png)
HARNESS_WRITES = ("results.tsv", "trajectory.jsonl", "notes.md", "progress.png", "report.html")


@dataclass(frozen=True)
class Adopted:
    """What adoption did: the sandbox, its settings, the rows imported from results.tsv (and how
    many of them still have their train.py in git), and notes for the user (one line each)."""

    path: Path
    cfg: HarnessConfig
    imported: int
    with_files: int
    notes: tuple[str, ...]


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InitError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _literal(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None


def _check_shape(src: Path) -> tuple[ast.Module, ast.Module]:
    """The parsed prepare.py and train.py of an autoresearch checkout.

    Raises:
        InitError: a file is missing or does not parse, prepare.py has no ``evaluate_bpb`` or no
            literal ``TIME_BUDGET``.
    """
    trees = []
    for name in ("prepare.py", "train.py"):
        try:
            trees.append(ast.parse((src / name).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InitError(f"{src} is not an autoresearch checkout: it has no {name}") from None
        except (SyntaxError, UnicodeDecodeError) as exc:
            raise InitError(f"{src / name} does not parse ({exc}); fix it before adopting") from None
    prepare, train = trees
    if not any(isinstance(n, ast.FunctionDef) and n.name == "evaluate_bpb" for n in prepare.body):
        raise InitError(f"{src / 'prepare.py'} defines no evaluate_bpb: the harness scores runs with it")
    if not isinstance(_literal(prepare, "TIME_BUDGET"), int):
        raise InitError(f"{src / 'prepare.py'} has no `TIME_BUDGET = <seconds>` line")
    return prepare, train


def kernel_repos(train: ast.Module) -> tuple[str, ...]:
    """Hugging Face repositories (``owner/name`` string literals) that ``train.py`` may pass to
    ``get_kernel``: the literal argument, or the literals (also in ``a if c else b``) assigned to
    the name passed. Sorted, without repeats."""
    assigned: dict[str, list[ast.expr]] = {}
    for node in ast.walk(train):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    assigned.setdefault(t.id, []).append(node.value)
    found: set[str] = set()

    def strings(expr):
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str) and _REPO.fullmatch(expr.value):
            found.add(expr.value)
        elif isinstance(expr, ast.IfExp):
            strings(expr.body)
            strings(expr.orelse)
        elif isinstance(expr, ast.Name):
            for value in assigned.get(expr.id, []):
                strings(value)

    for node in ast.walk(train):
        if isinstance(node, ast.Call) and node.args and (
                getattr(node.func, "id", None) == "get_kernel" or getattr(node.func, "attr", None) == "get_kernel"):
            strings(node.args[0])
    return tuple(sorted(found))


def _imports(train: ast.Module, module: str) -> bool:
    for node in ast.walk(train):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == module for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module:
            return True
    return False


def read_results(text: str) -> list[dict]:
    """Rows of an autoresearch ``results.tsv`` (header ``commit val_bpb memory_gb status
    description``, tab-separated) as dicts; val_bpb and memory_gb as floats (None when not a
    number). Rows with too few columns are skipped."""
    rows = []
    reader = csv.reader(io.StringIO(text), delimiter="\t")
    header = next(reader, None)
    if not header or [h.strip() for h in header[:2]] != ["commit", "val_bpb"]:
        return []
    for cells in reader:
        if len(cells) >= 4:
            rows.append({"commit": cells[0].strip(), "val_bpb": _number(cells[1]), "memory_gb": _number(cells[2]),
                         "status": cells[3].strip(), "description": "\t".join(cells[4:]).strip()})
    return rows


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def _import_results(dest: Path, original: Path) -> tuple[int, int]:
    """Write ``imported.jsonl`` from ``original`` (a results.tsv), with the file key of each row's
    train.py where git has the commit; returns (rows, rows with a file key)."""
    from .decisions import file_key

    rows = read_results(original.read_text(encoding="utf-8", errors="replace"))
    with_files = 0
    for row in rows:
        try:
            text = _git(dest, "show", f"{row['commit']}:train.py")
        except InitError:
            continue
        row["file_key"] = file_key({"train.py": text})
        with_files += 1
    (dest / IMPORTED_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows), with_files


def _gitignore(dest: Path) -> None:
    from .package_data import SANDBOX, template

    ours = (template(SANDBOX) / ".gitignore").read_text(encoding="utf-8").splitlines()
    path = dest / ".gitignore"
    have = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    missing = [line for line in ours + [IMPORTED_NAME, ORIGINAL_RESULTS]
               if line and not line.startswith("#") and line not in have]
    if missing:
        text = "\n".join(have) + ("\n" if have else "") + "# autoresearch-harness\n" + "\n".join(missing) + "\n"
        path.write_text(text, encoding="utf-8")


def adopt(src: Path, dest: Optional[Path] = None, tag: Optional[str] = None,
          home: Optional[Path] = None) -> Adopted:
    """Adopt the autoresearch checkout ``src`` (in place, or cloned into ``dest``); see the module
    docstring.

    Args:
        src: the checkout (a git repository, or a plain folder, which gets ``git init``).
        dest: a new folder to clone into, or None to adopt in place.
        tag: run tag (default: the checkout's current ``autoresearch/<tag>`` branch, else today).
        home: the HOME under which its data is (default: this process's HOME).

    Raises:
        InitError: not an autoresearch checkout, already a sandbox, ``dest`` not empty, uncommitted
            changes to tracked files (in place), or git failed; nothing is changed then, except
            a clone made into ``dest``.
    """
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise InitError(f"{src} is not a folder")
    if (src / "harness.toml").exists():
        raise InitError(f"{src} is already a sandbox: continue with `harness start {src}`")
    prepare, train = _check_shape(src)
    is_repo = (src / ".git").exists()
    if dest is not None:
        dest = Path(dest).expanduser().resolve()
        if dest.exists() and any(dest.iterdir()):
            raise InitError(f"{dest} exists and is not empty")
        if is_repo:
            _git(src.parent, "clone", "--quiet", "--no-hardlinks", str(src), str(dest))
        else:
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__"), dirs_exist_ok=True)
        if (src / "results.tsv").is_file() and not (dest / "results.tsv").exists():
            shutil.copy2(src / "results.tsv", dest / "results.tsv")
    else:
        dest = src
        if is_repo and _git(dest, "status", "--porcelain", "--untracked-files=no"):
            raise InitError(f"{dest} has uncommitted changes to tracked files: commit or stash them first "
                            "(adoption commits its own files on the experiment branch)")
    notes = []
    if not (dest / ".git").exists():
        _git(dest, "init", "--quiet", "--initial-branch=main")
        _set_identity(dest)
        _git(dest, "add", "--all")
        _git(dest, "commit", "--quiet", "--no-verify", "-m", "autoresearch checkout before adoption")
    _set_identity(dest)
    current = _git(dest, "rev-parse", "--abbrev-ref", "HEAD")
    if tag is None:
        tag = current.split("/", 1)[1] if current.startswith("autoresearch/") else default_tag()
    if not re.fullmatch(r"[A-Za-z0-9._-]+", tag):
        raise InitError(f"tag {tag!r} must be letters, digits, '.', '_' or '-'")
    branch = f"autoresearch/{tag}"
    if current != branch:
        exists = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=dest,
                                capture_output=True).returncode == 0
        if exists:
            raise InitError(f"branch {branch} exists but is not checked out: check it out to continue it, or pass "
                            "another --tag")
        _git(dest, "checkout", "--quiet", "-b", branch)

    imported = with_files = 0
    if (dest / "results.tsv").is_file():
        os.replace(dest / "results.tsv", dest / ORIGINAL_RESULTS)
        imported, with_files = _import_results(dest, dest / ORIGINAL_RESULTS)
        notes.append(f"imported {imported} rows of results.tsv ({with_files} with their train.py still in git) into "
                     f"{IMPORTED_NAME}; the original is kept as {ORIGINAL_RESULTS}")

    home = Path(home or os.path.expanduser("~")).resolve()
    data = home / AUTORESEARCH_CACHE
    if not (data.is_dir() and any(data.iterdir())):
        notes.append(f"no data in {data} yet: run `cd {dest} && python prepare.py` (the checkout's own data "
                     "preparation) before `harness start`")
    budget = int(_literal(prepare, "TIME_BUDGET"))
    uses_kernels = _imports(train, "kernels")
    cfg = HarnessConfig(
        tag=tag, time_budget_s=budget, allowance_s=float(max(120, budget)),
        over_budget_tolerance_s=float(max(10, budget // 4)), checkpoints="none", evaluation="capture",
        data_cache=str(data), data_home=str(home),
        allowed_imports_extra=("kernels",) if uses_kernels else (),
        kernel_repos=kernel_repos(train) if uses_kernels else ())
    if uses_kernels:
        notes.append(f"train.py loads kernels: allowed from {', '.join(cfg.kernel_repos) or 'no repository'} "
                     "([rails] kernel_repos)")
    (dest / "harness.toml").write_text(render(cfg), encoding="utf-8")
    _gitignore(dest)
    tracked = [name for name in HARNESS_WRITES if _git(dest, "ls-files", name)]
    if tracked:  # the harness rewrites them; on the experiment branch they stay on disk, untracked
        _git(dest, "rm", "--cached", "--quiet", *tracked)
        notes.append(f"untracked on {branch} (the harness writes them): {', '.join(tracked)}")
    from .agent_files import write_agent_files

    write_agent_files(dest, cfg.editable_files)
    _git(dest, "add", "--all")
    _git(dest, "commit", "--quiet", "--no-verify", "-m", "Adopt this autoresearch checkout into autoresearch-harness")
    return Adopted(dest, cfg, imported, with_files, tuple(notes))


def _set_identity(dest: Path) -> None:
    """Give the repository the harness's git identity when it has none (a machine without a
    global one); a user's own identity stays."""
    from .sandbox import HARNESS_IDENTITY

    if subprocess.run(["git", "config", "user.email"], cwd=dest, capture_output=True).returncode != 0:
        _git(dest, "config", "user.name", HARNESS_IDENTITY[0])
        _git(dest, "config", "user.email", HARNESS_IDENTITY[1])


def imported_rows(sandbox: Path) -> list[dict]:
    """The rows :func:`adopt` imported from the checkout's results.tsv (``imported.jsonl``), or []
    for a sandbox that was not adopted; malformed lines are skipped."""
    try:
        lines = (Path(sandbox) / IMPORTED_NAME).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
