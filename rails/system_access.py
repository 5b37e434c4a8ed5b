"""Rail ``system-access``: no processes, signals, environment reads, file access beyond reading
sandbox files, network, native code or early exits.

What it blocks:
- ``os`` beyond an allowlist (`OS_ALLOWED`: ``os.path``, ``os.cpu_count``, ``os.getpid``, ...):
  so no ``system``/``popen``/``fork``/``exec*``/``spawn*``/``kill``/``_exit``/``dup2``/
  ``register_at_fork``/file operations; ``sys`` beyond `SYS_ALLOWED` (no ``sys.modules``,
  ``settrace``, ``exc_info``, ``_getframe``, hooks; ``sys.stdout``/``sys.stderr`` only to write and
  flush);
- the environment: reading ``os.environ`` (``dict(os.environ)``, a computed key, any key but the
  torch/CUDA/thread settings below); reading (``os.environ["K"]``, ``os.environ.get("K")``,
  ``os.getenv("K")``) and setting a variable stay allowed for literal keys of torch/CUDA/thread
  settings (`ENV_KEYS`, e.g. ``CUDA_VISIBLE_DEVICES``, ``PYTORCH_CUDA_ALLOC_CONF``), never
  ``LD_PRELOAD``, paths or cache directories;
- files: ``open()`` of a computed path, an absolute or home path, ``..``, a dot-file (``.env``,
  ``.git/...``) or in a writing mode; string literals naming ``/proc``, ``/etc``, ``~/``, ``.ssh``,
  ``.netrc``, ``.pth`` files and the like anywhere; ``torch.save``, ``np.save*``, ``.tofile``,
  ``.save(...)``/``.dump(...)`` methods, ``torch.from_file``, numpy's file readers;
- unsafe deserialisation: ``torch.load`` without ``weights_only=True``, ``torch.serialization``,
  ``torch.jit.load``, ``np.load(allow_pickle=True)``;
- torch and numpy members that download, spawn or load native code (`TORCH_FORBIDDEN`,
  `NUMPY_FORBIDDEN`: ``torch.hub``, ``torch.utils.cpp_extension``, ``torch.distributed``,
  ``torch.multiprocessing``, ``torch.ops.load_library``, ``np.ctypeslib``, ``np.DataSource``, ...),
  any ``torch.utils`` module but ``checkpoint``, ``data`` and ``flop_counter``, and DataLoader
  worker processes (``num_workers`` other than 0);
- exits with status 0: ``sys.exit()``, ``sys.exit(0)``, ``exit(None)``, ``raise SystemExit``, a
  status that is not a literal (``sys.exit(1 - 1)``), and ``exit``/``sys.exit`` passed around as values.
Also ``getattr(sys, "modules")`` and the like are judged as ``sys.modules``.

Why: each of these lets the edited script act outside the experiment (read a secret, persist in
``.git/hooks`` or a ``.pth`` file, rewrite results.tsv or prepare.py, exit "successfully" before
the evaluation) — things the harness must be able to rule out before the run.

Benign example it must allow::

    os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    print(os.environ.get("CUDA_VISIBLE_DEVICES"))
    print(f"lr {lr:.2e}", file=sys.stderr)
    if not math.isfinite(loss.item()):
        print("FAIL: loss is nan"); sys.exit(1)
"""

from __future__ import annotations

import ast
import re

from rails.base import AstRail, Context, Violation
from rails.imports import denied_module
from rails.names import const_str, matches

OS_ALLOWED = tuple(f"os.{n}" for n in (
    "path", "cpu_count", "process_cpu_count", "sched_getaffinity", "getpid", "getcwd", "sep", "pathsep", "linesep",
    "name", "curdir", "fspath", "PathLike", "get_terminal_size", "environ"))
SYS_ALLOWED = tuple(f"sys.{n}" for n in (
    "exit", "argv", "version", "version_info", "platform", "maxsize", "float_info", "int_info", "byteorder",
    "getsizeof", "implementation", "hexversion", "executable", "getrecursionlimit",
    "stdout.write", "stdout.flush", "stderr.write", "stderr.flush", "stdout.isatty", "stderr.isatty"))
#: torch members reached by attribute (downloads, native code, processes, files, unpickling)
TORCH_FORBIDDEN = ("torch.hub", "torch.utils.cpp_extension", "torch.multiprocessing", "torch.distributed",
                   "torch.package", "torch.ops.load_library", "torch.classes.load_library", "torch.save",
                   "torch.serialization", "torch.jit.load", "torch.jit.save", "torch.export.save", "torch.export.load",
                   "torch.onnx", "torch.from_file", "torch.UntypedStorage.from_file", "torch.TypedStorage.from_file",
                   "torch.cuda.memory._dump_snapshot", "torch.ops.import_module")
NUMPY_FORBIDDEN = tuple(f"numpy.{n}" for n in (
    "save", "savez", "savez_compressed", "savetxt", "fromfile", "loadtxt", "genfromtxt", "memmap", "fromregex",
    "DataSource", "lib", "f2py", "ctypeslib", "distutils", "testing", "tofile", "load"))
#: methods that write files whatever object they are called on
WRITING_METHODS = frozenset(("save", "tofile", "dump", "to_csv", "savefig", "write_text", "write_bytes",
                             "export_chrome_trace", "from_file"))
ENV_KEYS = re.compile(r"^(PYTORCH_|TORCH_|CUDA_|CUBLAS_|CUDNN_|NCCL_|OMP_|MKL_|TOKENIZERS_|HF_HUB_DISABLE_|"
                      r"NVIDIA_TF32_OVERRIDE$)")
ENV_KEYS_DENIED = re.compile(r"DIR|PATH|CACHE|HOME|FILE|LOG|PRELOAD|LIBRARY|URL|ENDPOINT|HOST|PORT|ADDR")
SENSITIVE_PATH = re.compile(
    r"^/(proc|etc|dev|sys|home|root|tmp|var|usr|opt|mnt|run|bin|sbin|lib|lib64|boot|srv|Users|private|Volumes)(/|$)"
    r"|^~|/proc/|/etc/|\.ssh\b|\.netrc|\.aws\b|\.git(/|$)|\.pth$|id_rsa|id_ed25519|(^|/)\.env$|credentials"
    r"|site-packages|usercustomize|sitecustomize")
WRITE_MODES = set("wax+")
WATCHED = ("os", "sys", "torch", "numpy")
_EXIT_HINT = "let the script reach evaluate_bpb; to fail, sys.exit(1) or sys.exit('FAIL: ...')"
CHECKPOINT_HINT = ("train.py may not write files; the harness saves the weights itself after scoring: "
                   "[run] checkpoints = \"kept\" (the default) or \"all\" in harness.toml puts them in runs/<n>/model.pt")


class SystemAccessRail(AstRail):
    """Refuse process, environment, file-system, network and interpreter access, and status-0 exits."""

    id = "system-access"

    def check_tree(self, ctx: Context) -> list[Violation]:
        """One violation per offending expression."""
        out = []
        env_allowed = self._env_writes(ctx, out) | self._env_reads(ctx)
        inner = {id(n.value) for n in ctx.of(ast.Attribute)}
        watched = {local for local, full in ctx.names.aliases.items() if full.split(".")[0] in WATCHED} | {"os", "sys"}
        callees = ctx.callees
        for node in ctx.of(ast.Attribute, ast.Name):
            if id(node) in inner:
                continue  # judge each chain once, by its longest form (``from os import system`` too)
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in watched:
                name = ctx.names.qualname(node)
                if id(node) in env_allowed:
                    continue
                out += self._judge(node, name, id(node) in callees)
            if isinstance(node, ast.Name) and node.id in ("exit", "quit", "SystemExit") and id(node) not in callees:
                out.append(self.violation(node, f"{node.id} is used as a value", _EXIT_HINT))
            elif isinstance(node, ast.Attribute) and node.attr in WRITING_METHODS and id(node) in callees:
                out.append(self.violation(node, f".{node.attr}() writes or maps a file",
                                          CHECKPOINT_HINT if node.attr == "save" else "experiments may not persist files"))
        for call, name in ctx.names.calls:
            out += self._call(ctx, call, name)
        for node in ctx.of(ast.Raise):
            if isinstance(node.exc, ast.Name) and node.exc.id == "SystemExit":
                out.append(self.violation(node, "raise SystemExit ends the run with status 0", _EXIT_HINT))
        for node in ctx.strings:
            value = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            if len(value) < 256 and SENSITIVE_PATH.search(value):
                out.append(self.violation(node, f"the path {value!r} lies outside the sandbox or holds secrets",
                                          "read only the sandbox's own files, by relative literal paths"))
        return out

    def _judge(self, node, name: str | None, called: bool) -> list[Violation]:
        """Violations for one outermost use of a watched module's member (``name`` resolved)."""
        if name is None:
            return []
        top = name.split(".")[0]
        if top == "os" and not matches(name, OS_ALLOWED):
            return [self.violation(node, f"use of {name}", "experiments may not touch processes, files or "
                                   "the environment; remove it")]
        if matches(name, ("os.environ",)):
            return [self.violation(node, "reading os.environ", "the environment is off limits; put settings in "
                                   "train.py's constants")]
        if top == "sys":
            if name == "sys.exit" and not called:
                return [self.violation(node, "sys.exit is used as a value", _EXIT_HINT)]
            if not (matches(name, SYS_ALLOWED) or name in ("sys.stdout", "sys.stderr")):
                return [self.violation(node, f"use of {name}", "the interpreter's state is off limits")]
        if name == "torch.save":
            return [self.violation(node, "torch.save writes a file", CHECKPOINT_HINT)]
        if top == "torch" and (matches(name, TORCH_FORBIDDEN) or denied_module(name)):
            return [self.violation(node, f"use of {name}", "experiments run without network, files, native "
                                   "extensions or extra processes; write it in torch")]
        if top == "numpy" and matches(name, NUMPY_FORBIDDEN) and name != "numpy.load":
            return [self.violation(node, f"use of {name}", "numpy may compute, not read, write or download")]
        return []

    def _call(self, ctx: Context, call: ast.Call, name) -> list[Violation]:
        if name in ("exit", "quit", "sys.exit", "SystemExit"):
            return self._exit(call, name)
        if name in ("getattr", "hasattr") and len(call.args) > 1 and const_str(call.args[1]):
            base = ctx.names.qualname(call.args[0])
            if base and base.split(".")[0] in WATCHED:
                return self._judge(call, f"{base}.{const_str(call.args[1])}", False)
        if name == "open":
            return self._open(call)
        kw = {k.arg: k.value for k in call.keywords}
        if name == "torch.load":
            weights_only = kw.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                return [self.violation(call, "torch.load without weights_only=True unpickles arbitrary code",
                                       "pass weights_only=True")]
        if name == "numpy.load" and not (isinstance(kw.get("allow_pickle"), ast.Constant)
                                         and kw["allow_pickle"].value is False) and "allow_pickle" in kw:
            return [self.violation(call, "np.load with allow_pickle unpickles arbitrary code", "leave allow_pickle off")]
        workers = kw.get("num_workers")
        if workers is not None and not (isinstance(workers, ast.Constant) and workers.value == 0):
            return [self.violation(call, "num_workers starts worker processes", "use prepare's make_dataloader")]
        return []

    def _exit(self, call: ast.Call, name: str) -> list[Violation]:
        arg = call.args[0] if call.args else None
        ok = isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.Constant) and (
            isinstance(arg.value, str) or (type(arg.value) is int and arg.value != 0)))
        if not ok:
            return [self.violation(call, f"{name}() without a literal non-zero status ends the run as a success",
                                   _EXIT_HINT)]
        return []

    def _open(self, call: ast.Call) -> list[Violation]:
        path = const_str(call.args[0]) if call.args else None
        mode_node = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
        mode = const_str(mode_node) if mode_node is not None else "r"
        if path is None:
            return [self.violation(call, "open() of a computed path", "experiments may only read literal relative paths")]
        if mode is None or WRITE_MODES & set(mode):
            return [self.violation(call, f"open({path!r}) for writing", "experiments may not write files")]
        parts = path.replace("\\", "/").split("/")
        if path.startswith(("/", "~")) or any(p == ".." or (p.startswith(".") and p != ".") for p in parts):
            return [self.violation(call, f"open({path!r}) reaches outside the sandbox or into hidden files",
                                   "read only the sandbox's own files")]
        return []

    def _env_reads(self, ctx: Context) -> set[int]:
        """ids of the nodes of allowed reads: ``os.environ["KEY"]`` (the ``os.environ`` node),
        ``os.environ.get("KEY"[, default])`` and ``os.getenv("KEY"[, default])`` (the callee), for a
        literal KEY of :data:`ENV_KEYS` (a device or thread setting, never a path)."""
        ids = set()
        for node in ctx.of(ast.Subscript):
            if isinstance(node.ctx, ast.Load) and ctx.names.qualname(node.value) == "os.environ" \
                    and _allowed_key(const_str(node.slice)):
                ids.add(id(node.value))
        for call, name in ctx.names.calls:
            if name in ("os.environ.get", "os.getenv") and call.args and _allowed_key(const_str(call.args[0])):
                ids.add(id(call.func))
        return ids

    def _env_writes(self, ctx: Context, out: list) -> set[int]:
        """ids of ``os.environ`` nodes that are the base of an allowed ``os.environ["KEY"] = "value"``;
        appends violations for refused keys or values to ``out``."""
        ids = set()
        for node in ctx.of(ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Subscript) and ctx.names.qualname(t.value) == "os.environ":
                    key, value = const_str(t.slice), const_str(node.value)
                    if key is None:
                        continue  # a computed key: reported as a read of os.environ
                    ids.add(id(t.value))
                    if not _allowed_key(key) or value is None:
                        out.append(self.violation(node, f"setting the environment variable {key!r}",
                                                  "only literal torch/CUDA/thread settings (PYTORCH_*, CUDA_*, "
                                                  "OMP_*, ...) may be set, never paths or loaders"))
        return ids


def _allowed_key(key: str | None) -> bool:
    """A literal environment key of a torch/CUDA/thread setting (:data:`ENV_KEYS`), not a path."""
    return key is not None and bool(ENV_KEYS.match(key)) and not ENV_KEYS_DENIED.search(key)
