"""The shared vocabulary of the rails: violations, configuration, the `Rail` protocol, and the
`Context` that lets every rail reuse one parse of the proposed file.

A rail is a static check on a proposed version of an editable file (``train.py``). It never runs
the code. It returns a list of `Violation`s; an empty list means the file passes that rail.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # libcst is imported lazily so `import rails` stays cheap
    import ast

    import libcst
    from libcst.metadata import MetadataWrapper


@dataclass(frozen=True)
class Violation:
    """One reason a proposed file is refused.

    Attributes:
        rule: the id of the rail that found it (e.g. ``"syntax"``); one rail, one id.
        line: 1-based line number in the proposed file; 0 when the problem is the whole file.
        message: what is wrong, in one line.
        hint: what to do instead, in one line, addressed to the agent that wrote the file.
    """

    rule: str
    line: int
    message: str
    hint: str

    def format(self, path: str = "train.py") -> str:
        """One line in the ``path:line: [rule] message (hint: ...)`` style of compilers and linters."""
        where = f"{path}:{self.line}:" if self.line > 0 else f"{path}:"
        return f"{where} [{self.rule}] {self.message} (hint: {self.hint})"

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True)
class RailConfig:
    """What the rails need to know about the sandbox (from ``harness.toml``).

    Attributes:
        editable_files: repository-relative paths the agent may change.
        allowed_imports: top-level module names ``train.py`` may import; ``None`` means no
            import allow-list is enforced.
        allowed_imports_extra: top-level modules allowed on top of ``allowed_imports`` (or of the
            default allowlist), e.g. ``("kernels",)`` for an adopted autoresearch checkout.
        kernel_repos: the Hugging Face kernel repositories (``"owner/name"``) that
            ``kernels.get_kernel`` may load; empty means none (every ``get_kernel`` call is refused).
        protected_names: names imported from ``prepare.py`` (the fixed evaluation contract) that
            ``train.py`` must not redefine or shadow.
    """

    editable_files: tuple[str, ...] = ("train.py",)
    allowed_imports: tuple[str, ...] | None = None
    allowed_imports_extra: tuple[str, ...] = ()
    kernel_repos: tuple[str, ...] = ()
    protected_names: tuple[str, ...] = (
        "MAX_SEQ_LEN",
        "TIME_BUDGET",
        "EVAL_TOKENS",
        "Tokenizer",
        "make_dataloader",
        "evaluate_bpb",
        "load_base_model",
    )


class Context:
    """Everything a rail may look at, with the expensive parts computed once and shared.

    ``check_source`` builds one `Context` per proposed file and hands it to every rail, so the
    libcst parse (and any metadata such as positions) is paid for once, not once per rail.

    Args:
        old_source: the parent version of the file (the current best), or ``None`` for a new file.
        new_source: the proposed version, as text or as raw bytes (decoded strictly as UTF-8).
        config: the sandbox's rail configuration.

    The properties `new_text`, `module` and `wrapper` raise on undecodable bytes
    (``UnicodeDecodeError``) or a syntax error (``libcst.ParserSyntaxError``); the syntax rail runs
    first and turns those into violations, so later rails may use them freely.

    Budget (all rails < 100 ms on a 630-line train.py): the libcst parse costs about 45 ms there,
    resolving ``PositionProvider`` on `wrapper` about 75 ms more, ``ast.parse`` about 4 ms. Rails
    that only need line numbers should read them from `ast_tree` rather than libcst metadata.
    """

    def __init__(self, old_source: str | bytes | None, new_source: str | bytes, config: RailConfig):
        self.old_source = (
            old_source.decode("utf-8", errors="replace") if isinstance(old_source, bytes) else old_source
        )
        self.raw_new = new_source
        self.config = config

    @cached_property
    def new_text(self) -> str:
        """The proposed file as text; raises ``UnicodeDecodeError`` on bytes that are not UTF-8."""
        if isinstance(self.raw_new, bytes):
            return self.raw_new.decode("utf-8", errors="strict")
        return self.raw_new

    @cached_property
    def module(self) -> "libcst.Module":
        """The libcst tree of the proposed file; raises ``libcst.ParserSyntaxError``."""
        import libcst

        return libcst.parse_module(self.new_text)

    @cached_property
    def wrapper(self) -> "MetadataWrapper":
        """A metadata wrapper over `module` (no copy), for rails that need positions or scopes."""
        from libcst.metadata import MetadataWrapper

        return MetadataWrapper(self.module, unsafe_skip_copy=True)

    @cached_property
    def ast_tree(self) -> "ast.Module | None":
        """The stdlib ``ast`` of the proposed file (cheap line numbers), or ``None`` if the running
        CPython cannot parse it (newer syntax that libcst accepts)."""
        import ast

        try:
            return ast.parse(self.new_text)
        except (SyntaxError, ValueError):
            return None

    @cached_property
    def nodes(self) -> list:
        """Every node of `ast_tree` (``ast.walk`` order), listed once and shared by the rails."""
        import ast

        return list(ast.walk(self.ast_tree))

    @cached_property
    def by_type(self) -> dict:
        """`nodes` grouped by exact node type (one pass), so a rail visits only what it needs."""
        out: dict = {}
        for node in self.nodes:
            out.setdefault(type(node), []).append(node)
        return out

    def of(self, *types) -> list:
        """Every node of `ast_tree` whose exact type is one of ``types``."""
        if len(types) == 1:
            return self.by_type.get(types[0], [])
        return [n for t in types for n in self.by_type.get(t, ())]

    @cached_property
    def callees(self) -> set[int]:
        """ids of the nodes that are the called expression of some call (``f`` in ``f(x)``)."""
        import ast

        return {id(c.func) for c in self.of(ast.Call)}

    @cached_property
    def strings(self) -> list:
        """String and bytes literal nodes that are not docstrings or other bare expression
        statements (those have no effect); f-string parts included."""
        import ast

        bare = {id(n.value) for n in self.of(ast.Expr) if isinstance(n.value, ast.Constant)}
        return [n for n in self.of(ast.Constant) if isinstance(n.value, (str, bytes)) and id(n) not in bare]

    @cached_property
    def old_tree(self) -> "ast.Module | None":
        """The stdlib ``ast`` of the parent file, or ``None`` when absent or unparseable. Parses
        are cached by the parent's text (the parent is checked against many proposals)."""
        return None if self.old_source is None else parse_parent(self.old_source)

    @cached_property
    def names(self):
        """Import aliases and a dotted-name resolver over `ast_tree` (:class:`rails.names.Names`)."""
        from rails.names import Names

        return Names(self.nodes)

    @cached_property
    def old_module(self) -> "libcst.Module | None":
        """The libcst tree of the parent file, or ``None`` when absent or unparseable."""
        if self.old_source is None:
            return None
        import libcst

        try:
            return libcst.parse_module(self.old_source)
        except libcst.ParserSyntaxError:
            return None


@lru_cache(maxsize=8)
def parse_parent(text: str) -> "ast.Module | None":
    """``ast.parse(text)`` cached by text, or ``None`` on a syntax error. Only for parent files:
    callers must not mutate the tree."""
    import ast

    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


@runtime_checkable
class Rail(Protocol):
    """A static check on a proposed file. One rule per module in ``rails/``.

    ``check`` returns an empty list when the file passes. It must not raise on bad input: a file it
    cannot understand is a violation (rails fail closed).
    """

    id: str

    def check(
        self, old_source: str | None, new_source: str, config: RailConfig
    ) -> list[Violation]: ...


class ContextRail:
    """Convenience base for rails that work on a shared `Context`.

    Subclasses set ``id`` and implement ``check_context``; ``check`` (the `Rail` protocol) builds a
    throw-away `Context`, while ``rails.check_source`` calls ``check_context`` with a shared one.
    """

    id: str = ""
    #: when True and this rail finds a violation, ``check_source`` runs no further rails
    stops_on_failure: bool = False

    def check_context(self, ctx: Context) -> list[Violation]:  # pragma: no cover - abstract
        """Return the violations found in ``ctx``; subclasses override this."""
        raise NotImplementedError

    def check(
        self, old_source: str | bytes | None, new_source: str | bytes, config: RailConfig
    ) -> list[Violation]:
        """Run this rail alone on one proposed file (see `Rail.check`)."""
        return self.check_context(Context(old_source, new_source, config))


class AstRail(ContextRail):
    """Base for rails that read the stdlib ``ast`` (``ctx.ast_tree``, ``ctx.names``).

    Subclasses implement ``check_tree``. A file the running CPython cannot parse fails closed with
    one violation, since such a file cannot be analysed.
    """

    def check_context(self, ctx: Context) -> list[Violation]:
        """Run ``check_tree`` on the parsed file, or refuse a file ``ast`` cannot parse."""
        if ctx.ast_tree is None:
            return [Violation(self.id, 0, "the file cannot be analysed by this Python's parser",
                              "use syntax this Python version understands")]
        return self.check_tree(ctx)

    def check_tree(self, ctx: Context) -> list[Violation]:  # pragma: no cover - abstract
        """Return the violations found in ``ctx.ast_tree``; subclasses override this."""
        raise NotImplementedError

    def violation(self, node, message: str, hint: str) -> Violation:
        """A violation of this rail at ``node``'s line (0 when it has none)."""
        return Violation(self.id, getattr(node, "lineno", 0), message, hint)
