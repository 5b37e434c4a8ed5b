"""The sandbox's ``harness.toml``: what the harness may edit, how it runs an experiment, which agent.

Read with :mod:`tomllib` (Python 3.11+; the ``tomli`` backport on 3.10). ``harness init`` writes
the file from :func:`render`; the human may edit it afterwards.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from .decisions import POLICIES, PolicySettings

CONFIG_NAME = "harness.toml"
#: a Hugging Face repository id, ``owner/name`` (``[rails] kernel_repos``)
_REPO_ID = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+")


class ConfigError(Exception):
    """harness.toml (or prepare.py's constants) is missing, malformed or inconsistent.

    The message says what is wrong and which file to edit.
    """


@dataclass(frozen=True)
class HarnessConfig:
    """Settings of one sandbox.

    Attributes:
        tag: run tag; experiments are committed on branch ``autoresearch/<tag>``.
        editable_files: paths (relative to the sandbox) an agent may change.
        command: argv of one experiment; a leading ``"python"`` means the harness's interpreter.
        time_budget_s: training time budget in seconds (must equal ``TIME_BUDGET`` in prepare.py).
        allowance_s: extra wall-clock seconds for start-up and evaluation; the hard kill comes at
            ``time_budget_s + allowance_s``.
        over_budget_tolerance_s: trained seconds beyond the budget tolerated before a run is
            ``over_budget``.
        agent: agent spec used when ``harness start`` gets no ``--agent``.
        policy: ``[policy]``, the keep policy and its settings (:class:`harness.decisions.PolicySettings`):
            ``noise`` (default: confirmation runs, keep only beyond the measured noise) or
            ``greedy`` (keep when val_bpb beats the best so far, Karpathy's rule).
        allowed_imports: ``[rails] allowed_imports``: the complete import allowlist of the rails,
            or ``None`` for their default one.
        allowed_imports_extra: ``[rails] allowed_imports_extra``: modules allowed on top of it
            (e.g. ``("kernels",)`` for an adopted autoresearch checkout).
        kernel_repos: ``[rails] kernel_repos``: the Hugging Face kernel repositories (``"owner/name"``)
            train.py may load with ``kernels.get_kernel``; empty: none.
        protected_names: ``[rails] protected_names``: names from prepare that train.py must not
            rebind, or ``None`` for the rails' default.
        checkpoints: ``[run] checkpoints``: ``kept``, ``none`` or ``all`` (:mod:`harness.checkpoints`).
        usd_per_kwh: ``[report] electricity_usd_per_kwh``: the price of a kWh for the cost line of
            status and the report, or None (no cost shown).
        mlflow_uri: ``[tracking] mlflow_uri``: an MLflow tracking URI every experiment is logged
            to (:mod:`harness.tracking`), or None.
        data_cache: ``[run] data_cache``: the absolute folder ``harness init`` prepared the data
            into (:mod:`harness.datacache`), or None.
        pipeline: ``[run] pipeline``: ``auto``, ``on`` or ``off``: ask the agent for the next
            proposal while a run trains (:mod:`harness.pipeline`).
        smoke_each: ``[run] smoke_each``: a smoke run of a few seconds before each proposal's full
            run; a failing one ends the experiment at once (:func:`harness.preflight.smoke_run`).
        evaluation: ``[run] evaluation``: ``prepare`` (the harness's prepare.py writes the trusted
            result) or ``capture`` (a prepare.py the harness did not write, e.g. an adopted
            autoresearch checkout: :mod:`harness.evalguard` records evaluate_bpb's return value);
            ``capture`` needs a ``python SCRIPT.py`` command.
        data_home: ``[run] data_home``: the HOME every run gets, for an adopted checkout whose
            prepare.py keeps its data under ``~`` (``~/.cache/autoresearch``), or None (the
            caller's HOME).
    """

    tag: str
    editable_files: tuple[str, ...] = ("train.py",)
    command: tuple[str, ...] = ("python", "train.py")
    time_budget_s: int = 60
    allowance_s: float = 120.0
    over_budget_tolerance_s: float = 10.0
    agent: str = "hybrid"
    policy: PolicySettings = field(default_factory=PolicySettings)
    allowed_imports: tuple[str, ...] | None = None
    allowed_imports_extra: tuple[str, ...] = ()
    kernel_repos: tuple[str, ...] = ()
    protected_names: tuple[str, ...] | None = None
    checkpoints: str = "kept"
    usd_per_kwh: float | None = None
    mlflow_uri: str | None = None
    data_cache: str | None = None
    pipeline: str = "auto"
    smoke_each: bool = False
    evaluation: str = "prepare"
    data_home: str | None = None

    def rail_settings(self) -> dict:
        """Keyword arguments for ``rails.RailConfig`` from this sandbox's settings (defaults of
        RailConfig where harness.toml sets nothing): ``RailConfig(**cfg.rail_settings())``."""
        out: dict = {"editable_files": self.editable_files, "allowed_imports": self.allowed_imports,
                     "allowed_imports_extra": self.allowed_imports_extra, "kernel_repos": self.kernel_repos}
        if self.protected_names is not None:
            out["protected_names"] = self.protected_names
        return out

    @property
    def branch(self) -> str:
        """The experiment branch, ``autoresearch/<tag>``."""
        return f"autoresearch/{self.tag}"

    @property
    def hard_limit_s(self) -> float:
        """Wall-clock seconds after which an experiment's whole process group is killed."""
        return self.time_budget_s + self.allowance_s


def render(cfg: HarnessConfig) -> str:
    """Return the text of a ``harness.toml`` holding ``cfg``, with a comment on each setting."""
    files = ", ".join(f'"{f}"' for f in cfg.editable_files)
    extra = ", ".join(f'"{m}"' for m in cfg.allowed_imports_extra)
    kernel_repos = ", ".join(f'"{r}"' for r in cfg.kernel_repos)
    command = ", ".join(f'"{c}"' for c in cfg.command)
    p = cfg.policy
    return f"""# autoresearch-harness settings for this sandbox (see the README).

[sandbox]
tag = "{cfg.tag}"                    # experiments go on branch autoresearch/<tag>
editable_files = [{files}]   # the only files an agent may change

[run]
command = [{command}]   # "python" means the harness's own interpreter
time_budget_s = {cfg.time_budget_s}              # training seconds; must equal TIME_BUDGET in prepare.py
allowance_s = {cfg.allowance_s:g}              # extra seconds for start-up and evaluation before the hard kill
over_budget_tolerance_s = {cfg.over_budget_tolerance_s:g}   # trained seconds past the budget before a run is over_budget
checkpoints = "{cfg.checkpoints}"          # weights in runs/<n>/model.pt: kept (the newest 3 kept experiments) | all | none
pipeline = "{cfg.pipeline}"            # propose the next experiment while one trains: auto (on with a GPU or an API agent) | on | off
smoke_each = {str(cfg.smoke_each).lower()}           # a 3 s smoke run before each proposal's full run (catches late crashes early; README "Keeping the accelerator busy")
{'' if cfg.data_cache else '# '}data_cache = "{cfg.data_cache or ''}"   # where the prepared data is, whoever runs the harness ($AUTORESEARCH_CACHE wins)
evaluation = "{cfg.evaluation}"         # prepare: prepare.py writes the trusted result | capture: the harness records evaluate_bpb's value (adopted checkouts)
{'' if cfg.data_home else '# '}data_home = "{cfg.data_home or ''}"   # HOME of every run (an adopted checkout's prepare.py finds its data under ~)

[agent]
spec = "{cfg.agent}"                 # local | hybrid | optuna | optuna:cmaes | scripted:FILE | anthropic:MODEL | openai:MODEL (see the README)

[policy]   # how a change is kept (README "How a decision is made")
keep = "{p.keep}"                 # noise: confirm and keep only beyond the measured noise; greedy: any lower val_bpb
baseline_runs = {p.baseline_runs}              # runs of the unmodified baseline before the first proposal (measure the noise)
confirm_runs = {p.confirm_runs}               # extra runs (other seeds) a promising candidate needs before it can be kept
max_confirm_runs = {p.max_confirm_runs}           # ... and at most this many while it stays promising but not yet significant
z_promising = {p.z_promising:g}              # a first run this many noise units better than the best gets confirmation runs
alpha = {p.alpha:g}                  # keep when a one-sided t-test of the mean against the best's gives p < alpha
remeasure_every = {p.remeasure_every}           # re-measure the best after this many experiments (drift); 0: never
throughput_drift = {p.throughput_drift:g}        # ... and when tokens/s of a repeated file moved by more than this share
futility_power = {p.futility_power:g}          # stop confirming a candidate whose chance to be kept (if its mean held) is below this; 0: never
surrogate = {str(p.surrogate).lower()}             # also keep a knob-only change on a Gaussian-process model of all runs of the same code (pooled evidence); false: the t-test alone

[rails]
allowed_imports_extra = [{extra}]   # modules train.py may import beyond the default allowlist, e.g. "kernels"
kernel_repos = [{kernel_repos}]   # Hugging Face kernel repositories train.py may load with kernels.get_kernel (adopted checkouts)
# allowed_imports = ["torch", "math", ...]   # replaces the default allowlist entirely
# protected_names = ["MAX_SEQ_LEN", "TIME_BUDGET", ...]   # names from prepare train.py must not rebind

[report]   # progress.png and report.html, rewritten after every experiment
# electricity_usd_per_kwh = 0.15   # adds a cost line to the energy figures

[tracking]
# mlflow_uri = "file:///path/to/mlruns"   # log every experiment to MLflow (pip install 'autoresearch-harness[tracking]')
"""


def load(sandbox: Path) -> HarnessConfig:
    """Read ``<sandbox>/harness.toml`` and check it against ``prepare.py``.

    Raises:
        ConfigError: the file is missing or malformed, a value has the wrong type, or
            ``time_budget_s`` differs from ``TIME_BUDGET`` in prepare.py.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(sandbox) / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found: this is not a harness sandbox. Create one with `harness init DIR`."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}. Fix the file and start again.") from None
    sandbox_t, run, agent, policy, rails, report, tracking = (
        data.get(k, {}) for k in ("sandbox", "run", "agent", "policy", "rails", "report", "tracking"))
    try:
        cfg = HarnessConfig(
            tag=str(sandbox_t["tag"]),
            editable_files=tuple(str(f) for f in sandbox_t.get("editable_files", ["train.py"])),
            command=tuple(str(c) for c in run.get("command", ["python", "train.py"])),
            time_budget_s=int(run.get("time_budget_s", 60)),
            allowance_s=float(run.get("allowance_s", 120.0)),
            over_budget_tolerance_s=float(run.get("over_budget_tolerance_s", 10.0)),
            agent=str(agent.get("spec", "hybrid")),
            policy=_policy(policy),
            allowed_imports=_names(rails, "allowed_imports"),
            allowed_imports_extra=_names(rails, "allowed_imports_extra") or (),
            kernel_repos=_repos(rails, "kernel_repos"),
            protected_names=_names(rails, "protected_names"),
            checkpoints=str(run.get("checkpoints", "kept")),
            usd_per_kwh=None if report.get("electricity_usd_per_kwh") is None
            else float(report["electricity_usd_per_kwh"]),
            mlflow_uri=None if tracking.get("mlflow_uri") is None else str(tracking["mlflow_uri"]),
            data_cache=None if run.get("data_cache") is None else str(run["data_cache"]),
            pipeline=str(run.get("pipeline", "auto")),
            smoke_each=_flag(run, "smoke_each", False),
            evaluation=str(run.get("evaluation", "prepare")),
            data_home=None if run.get("data_home") is None else str(run["data_home"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: bad or missing setting ({exc}). Compare with the README.") from None
    if cfg.checkpoints not in ("kept", "none", "all"):
        raise ConfigError(f"{path}: [run] checkpoints = {cfg.checkpoints!r}; use \"kept\", \"none\" or \"all\".")
    if cfg.evaluation not in ("prepare", "capture"):
        raise ConfigError(f"{path}: [run] evaluation = {cfg.evaluation!r}; use \"prepare\" or \"capture\".")
    if cfg.evaluation == "capture" and not (len(cfg.command) >= 2 and cfg.command[0] in ("python", "python3")
                                            and cfg.command[1].endswith(".py")):
        raise ConfigError(f"{path}: [run] evaluation = \"capture\" needs command = [\"python\", \"SCRIPT.py\", ...] "
                          f"(the harness starts the script itself to capture evaluate_bpb), got {list(cfg.command)}.")
    if cfg.pipeline not in ("auto", "on", "off"):
        raise ConfigError(f"{path}: [run] pipeline = {cfg.pipeline!r}; use \"auto\", \"on\" or \"off\".")
    p = cfg.policy
    if p.keep not in POLICIES:
        raise ConfigError(f"{path}: [policy] keep = {p.keep!r} is not a policy; use one of {', '.join(POLICIES)}.")
    if not 0 <= p.futility_power < 1:
        raise ConfigError(f"{path}: [policy] futility_power = {p.futility_power:g}; use a chance from 0 (never stop "
                          "confirming for that reason) to below 1.")
    if p.baseline_runs < 1 or not 0 <= p.confirm_runs <= p.max_confirm_runs or (p.keep == "noise" and p.baseline_runs < 2):
        raise ConfigError(f"{path}: [policy] needs baseline_runs >= 1 (>= 2 for keep = \"noise\", to measure the "
                          f"noise) and 0 <= confirm_runs <= max_confirm_runs; got {p.baseline_runs}, {p.confirm_runs} "
                          f"and {p.max_confirm_runs}.")
    budget = read_constant(Path(sandbox) / "prepare.py", "TIME_BUDGET")
    if budget is not None and int(budget) != cfg.time_budget_s:
        raise ConfigError(
            f"time budget mismatch: {CONFIG_NAME} says time_budget_s = {cfg.time_budget_s}, "
            f"prepare.py says TIME_BUDGET = {budget}. Make them equal (prepare.py is what train.py uses)."
        )
    return cfg


def _policy(table: dict) -> PolicySettings:
    """``[policy]`` as :class:`PolicySettings` (defaults for what it leaves out).

    Raises:
        ValueError: an unknown key or a value of the wrong type.
    """
    defaults = PolicySettings()
    unknown = set(table) - set(defaults.__dataclass_fields__)
    if unknown:
        raise ValueError(f"[policy] has unknown setting(s) {', '.join(sorted(unknown))}")
    values = {}
    for name, default in vars(defaults).items():
        if name in table:
            value = table[name]
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            else:
                ok = not isinstance(value, bool) and isinstance(
                    value, (float, int) if isinstance(default, float) else type(default))
            if not ok:
                raise ValueError(f"[policy] {name} must be {type(default).__name__}, got {value!r}")
            values[name] = type(default)(value)
    return PolicySettings(**values)


def _flag(table: dict, key: str, default: bool) -> bool:
    """A boolean setting (TOML ``true``/``false``).

    Raises:
        TypeError: the value is not a boolean.
    """
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false, not {value!r}")
    return value


def _names(table: dict, key: str) -> tuple[str, ...] | None:
    """``table[key]`` as a tuple of identifiers (module or variable names), or None when absent.

    Raises:
        ValueError: the value is not a list of strings of dotted identifiers.
    """
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, list) or not all(
            isinstance(v, str) and v and all(p.isidentifier() for p in v.split(".")) for v in value):
        raise ValueError(f"[rails] {key} must be a list of module or variable names, got {value!r}")
    return tuple(value)


def _repos(table: dict, key: str) -> tuple[str, ...]:
    """``table[key]`` as a tuple of Hugging Face repository ids (``"owner/name"``), or ``()`` when absent.

    Raises:
        ValueError: the value is not a list of strings of the form ``owner/name``.
    """
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and _REPO_ID.fullmatch(v) for v in value):
        raise ValueError(f"[rails] {key} must be a list of Hugging Face repositories like \"owner/name\", "
                         f"got {value!r}")
    return tuple(value)


def read_constant(path: Path, name: str):
    """Return the literal value of the module-level assignment ``name = <literal>`` in ``path``.

    Returns None when the file or the assignment is absent. Uses :mod:`ast` (no code is run).
    """
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None
