"""The harness as a user installs it: a wheel built from the source tree, installed non-editable in
a fresh venv, run from an unrelated folder (``harness init``, ``harness start``, ``harness mcp``),
and a wheel that carries every file of its packages (a data file dropped from package-data fails).

The fresh venv gets the wheel alone (``--no-deps``); its dependencies (torch, llama-cpp-python ...)
come from the running interpreter's site-packages through a ``.pth`` line, so nothing is downloaded
or compiled. A ``.pth`` line adds a folder to ``sys.path`` without running that folder's own
``.pth`` files, so the dev venv's editable finder never shadows the wheel's ``harness``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

SOURCE = Path(__file__).resolve().parents[1]
#: the folders whose every tracked file the wheel must carry (pyproject's packages and package-data)
PACKAGES = ("harness", "rails", "tools")


def source_files(root: Path = SOURCE) -> list[str]:
    """The files of the source tree as a clone would have them plus files not yet committed
    (git's tracked and untracked-but-not-ignored files that exist), relative to ``root``."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    return sorted(p for p in out.split("\0") if p and (root / p).is_file())


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the source tree (tracked and new files), so that no ``build/`` or ``*.egg-info``
    left in the checkout can bring back a file the source no longer has."""
    tree = tmp_path_factory.mktemp("src")
    for rel in source_files():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SOURCE / rel, tree / rel)
    return tree


@pytest.fixture(scope="module")
def wheel(tree, tmp_path_factory) -> Path:
    """The wheel of ``tree`` (``pip wheel --no-deps --no-build-isolation``: no download)."""
    dist = tmp_path_factory.mktemp("dist")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(dist), str(tree)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    (built,) = dist.glob("autoresearch_harness-*.whl")
    return built


def package_files() -> set[str]:
    """The source files the wheel and the sdist must carry: every file under the packages."""
    return {p for p in source_files() if p.split("/")[0] in PACKAGES and "__pycache__" not in p}


def test_the_wheel_carries_every_file_of_the_packages_and_the_templates(wheel):
    expected = package_files()
    assert any(p.startswith("harness/templates/sandbox/") for p in expected)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    missing = sorted(expected - names)
    assert not missing, f"files of the source tree missing from the wheel (add them to pyproject.toml): {missing}"
    for name in ("harness/templates/program.md", "harness/templates/program_mcp.md",
                 "harness/templates/sandbox/.gitignore", "harness/templates/agent/guard.py"):
        assert name in names
    assert "harness = harness.cli:main" in entry_points


def test_the_sdist_carries_every_file_of_the_packages_and_the_templates(tree, tmp_path):
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"
    res = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    name = res.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as tf:
        top = name.removesuffix(".tar.gz")
        names = {m.name.removeprefix(top + "/") for m in tf.getmembers() if m.isfile()}
    missing = sorted(package_files() - names)
    assert not missing, f"files of the source tree missing from the sdist (add them to pyproject.toml): {missing}"
    assert {"pyproject.toml", "README.md"} <= names


def fresh_venv(root: Path, wheel: Path) -> tuple[Path, dict]:
    """A venv at ``root`` with ``wheel`` installed non-editable and without its dependencies, which
    it finds through a ``.pth`` line naming this interpreter's site-packages; returns its bin folder
    and an environment for its commands."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                          "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(site) / "zz_dev_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return root / "bin", env


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_inits_starts_and_serves_mcp_from_any_folder(wheel, tmp_path, corpus_dir):
    bin_dir, env = fresh_venv(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def harness(*args, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / "harness"), *map(str, args)], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=timeout)

    where = subprocess.run([str(bin_dir / "python"), "-c", "import harness; print(harness.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    version = harness("--version")
    assert version.returncode == 0 and "version 0." in version.stdout

    sandbox = tmp_path / "box"
    res = harness("init", sandbox, "--corpus", corpus_dir, "--time-budget", 2, "--tag", "pkg")
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("prepare.py", "train.py", ".gitignore", "program.md", "program_mcp.md", "AGENTS.md",
                 ".claude/hooks/guard.py", ".mcp.json"):
        assert (sandbox / name).is_file(), name
    assert "val_bpb" in (sandbox / "program.md").read_text()

    res = harness("start", sandbox, "--max-experiments", 2, "--agent", "optuna")
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    assert "done: 2 experiments" in res.stdout
    rows = (sandbox / "results.tsv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all("crash" not in r for r in rows), rows

    async def mcp_session():
        params = StdioServerParameters(command=str(bin_dir / "harness"), args=["mcp", str(sandbox)], env=env,
                                       cwd=str(elsewhere))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = {t.name for t in (await session.list_tools()).tools}
                program = await session.call_tool("read_file", {"path": "program.md"})
                return init.server_info.name, tools, program

    name, tools, program = anyio.run(mcp_session)
    assert name == "autoresearch" and {"read_file", "run_experiment", "list_experiments"} <= tools
    assert not program.is_error and "val_bpb" in program.content[0].text


def test_a_missing_template_says_the_installation_is_incomplete_and_how_to_repair(tmp_path):
    from harness.package_data import PackageDataError, copy_template, template

    with pytest.raises(PackageDataError, match="missing from the installed autoresearch-harness package; reinstall"):
        template("sandbox/no-such-file.py")
    written = copy_template("sandbox", tmp_path / "box")
    assert sorted(p.name for p in written) == [".gitignore", "prepare.py", "train.py"]
