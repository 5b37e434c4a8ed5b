"""The optimiser: a model-based search over train.py's knobs, rebuilt from the ledger.

**Search space** (:func:`search_space`): every knob of the baseline's train.py
(:mod:`harness.knobs`) except those that cannot change what the model learns
(:func:`harness.knobs.searchable`: names with the word ``SEED``, ``LOG``, ``EVAL`` or ``COMPILE``),
each around its baseline value ``v``:

- bools: ``False`` / ``True``;
- fractions and probabilities (``*_FRAC``, ``*DROPOUT``, ``*_RATIO`` in [0, 1], ...): uniform in
  ``[0, min(cap, max(0.5, 2 v))]``; Adam betas: uniform in ``[min(v, 0.8), 0.9999]``;
- other positive floats (learning rates, weight decay, clipping, RoPE base): log-uniform in
  ``[v / 10, 10 v]``;
- positive ints (sizes): log-uniform integers in ``[max(1, v / 4), 4 v]``, multiples of 8 kept
  for multiples of 8 above 8 (widths); zero ints: ``[0, 8]``;
- floats at zero: uniform in ``[0, 0.5]`` for fractions, ``[0, 1]`` otherwise;
- negative values: not searched.

A value a past experiment used outside these bounds widens them, so every experiment of the
ledger fits the space. Floats are rounded to 3 significant digits, as the knob menu does.

**Trials** (:func:`trials`): every file of the ledger with the same code as the current best
(its "skeleton": the AST with the knobs' values blanked, so a kept code change starts a new
objective) is a trial; its value is the mean val_bpb of all its scored runs (confirmations and
re-measures included: the decision policy's figure); a file whose runs all failed (crash, OOM,
``nan``, timeout, over budget) is a penalised trial, scored worse than the worst scored trial by
the spread of the scored ones (at least 0.01 bits per byte), so the sampler learns to avoid
that region. Refusals never trained and are not trials.

**Samplers**: ``tpe`` (Optuna's multivariate TPE, through its ask-and-tell interface on a study
rebuilt from the trials; its first ``startup`` trials, before it can model, are random
one-exchange neighbours of the incumbent: the best trial so far with one knob, chosen at random,
drawn at random from its range, as the local search of ParamILS and SMAC moves (Hutter et al.,
JAIR 2009 and LION 2011), through Optuna's PartialFixedSampler over its RandomSampler; Optuna's
own start-up draws every knob at random, which from a good default rarely scores well),
``cmaes`` (CMA-ES of the ``cmaes`` package, the library behind Optuna's CmaEsSampler, on the
unit cube of the space; its state is replayed from the trials in ledger order, one generation
per population), ``random`` (uniform over the space, Optuna's RandomSampler). Everything is a
function of the ledger and the seed, so a harness killed and started again continues the same
search, with the earlier experiments counted as trials.

Source of the comparison that motivates it: Ferreira et al., arXiv 2603.24647 (CMA-ES and TPE
ahead of random search and of an LLM alone on autoresearch's train.py).
"""

from __future__ import annotations

import ast
import functools
import math
import statistics
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .decisions import SCORED
from .knobs import searchable

SAMPLERS = ("tpe", "cmaes", "random")
#: outcomes of a run that failed in a way that says something about its knob values
FAILED = ("crash", "oom", "nan", "timeout", "over_budget", "missing_metric")
_FRACTION_WORDS = {"FRAC", "FRACTION", "RATIO", "PROB", "PROBABILITY", "P", "DROPOUT", "MOMENTUM"}


class OptimiserError(Exception):
    """The optimiser cannot suggest anything: train.py has no searchable knob, or every
    suggestion it tried had already run. The message says what to do."""


@dataclass(frozen=True)
class Dimension:
    """One searched knob.

    Attributes:
        name: the knob's name.
        kind: ``"int"``, ``"float"`` or ``"bool"``.
        low, high: bounds (inclusive; 0 and 1 for bools).
        log: sampled on a log scale.
        step8: ints kept to multiples of 8.
    """

    name: str
    kind: str
    low: float
    high: float
    log: bool = False
    step8: bool = False

    def distribution(self):
        """The Optuna distribution of this dimension."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "bool":
            return CategoricalDistribution((False, True))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def to_unit(self, value) -> float:
        """``value`` mapped to [0, 1] (log scale where :attr:`log`)."""
        if self.kind == "bool":
            return 1.0 if value else 0.0
        lo, hi, v = self.low, self.high, float(value)
        if self.log:
            lo, hi, v = math.log(lo), math.log(hi), math.log(max(v, self.low))
        return 0.0 if hi == lo else min(1.0, max(0.0, (v - lo) / (hi - lo)))

    def from_unit(self, u: float):
        """The value at ``u`` in [0, 1] (clipped), rounded as :meth:`clean` does."""
        u = min(1.0, max(0.0, float(u)))
        if self.kind == "bool":
            return u >= 0.5
        if self.log:
            return self.clean(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return self.clean(self.low + u * (self.high - self.low))

    def clean(self, value):
        """``value`` as the knob's type within the bounds: ints rounded (to multiples of 8 where
        :attr:`step8`), floats to 3 significant digits."""
        if self.kind == "bool":
            return bool(value)
        if self.kind == "int":
            v = round(value / 8) * 8 if self.step8 else round(value)
            return int(min(self.high, max(self.low, v)))
        v = float(f"{min(self.high, max(self.low, float(value))):.3g}")
        return min(self.high, max(self.low, v))

    def text(self) -> str:
        """E.g. ``LEARNING_RATE: float 0.0003..0.03 (log)``."""
        if self.kind == "bool":
            return f"{self.name}: bool"
        fmt = (lambda x: str(int(x))) if self.kind == "int" else (lambda x: f"{x:g}")
        extra = ", ".join(x for x in ("log" if self.log else "", "multiples of 8" if self.step8 else "") if x)
        return f"{self.name}: {self.kind} {fmt(self.low)}..{fmt(self.high)}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class Trial:
    """One file of the ledger as a trial: knob values, value (bits per byte; penalised for a
    failed file), the experiment that first ran it, its outcome and number of scored runs."""

    params: dict
    value: float
    experiment: int
    outcome: str
    runs: int
    penalised: bool = False


def knob_values(source: str) -> dict:
    """ALL_CAPS module-level int/float/bool literals of ``source`` (``ast``; a name assigned twice
    keeps its last value). Raises SyntaxError if ``source`` does not parse. Results are cached by
    the text (the optimiser and the views read the same commits again after every experiment)."""
    return dict(_knob_items(source))


@functools.lru_cache(maxsize=4096)
def _knob_items(source: str) -> tuple:
    values = {}
    for node in ast.parse(source).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None)
        if not isinstance(target, ast.Name) or not target.id.isupper():
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            continue
        if isinstance(value, (int, float, bool)):
            values[target.id] = value
    return tuple(values.items())


def skeleton(source: str) -> str:
    """The AST of ``source`` with every module-level knob's value blanked: files with equal
    skeletons differ only in knob values (same objective for the optimiser)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and target.id.isupper():
                try:
                    if isinstance(ast.literal_eval(node.value), (int, float, bool)):
                        node.value = ast.Constant(None)
                except ValueError:
                    pass
    return ast.dump(tree)


def _fraction_cap(name: str, value: float) -> Optional[float]:
    if name.endswith(("BETA1", "BETA2")):
        return 0.9999
    if name.endswith(("_FRAC", "DROPOUT")) or (0 <= value <= 1 and _FRACTION_WORDS & set(name.split("_"))):
        return 0.99
    return None


def search_space(baseline: dict, seen: tuple[dict, ...] = ()) -> dict[str, Dimension]:
    """The dimensions around the ``baseline`` knob values (name -> value), widened to hold every
    value in ``seen`` (knob dicts of past trials); rules in the module docstring."""
    space = {}
    for name, v in baseline.items():
        if not searchable(name):
            continue
        kind = "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else "float"
        if kind == "bool":
            space[name] = Dimension(name, "bool", 0, 1)
            continue
        if v < 0:
            continue
        cap = _fraction_cap(name, v)
        if kind == "float" and name.endswith(("BETA1", "BETA2")):
            dim = Dimension(name, kind, min(v, 0.8), 0.9999)
        elif kind == "float" and cap is not None:
            dim = Dimension(name, kind, 0.0, min(cap, max(0.5, 2 * v)))
        elif kind == "float":
            dim = Dimension(name, kind, v / 10, v * 10, log=True) if v > 0 else Dimension(name, kind, 0.0, 1.0)
        elif v > 0:
            dim = Dimension(name, kind, max(1, v // 4), v * 4, log=True, step8=v > 8 and v % 8 == 0)
        else:
            dim = Dimension(name, kind, 0, 8)
        values = [t[name] for t in seen if name in t and not isinstance(t[name], bool)]
        if values:
            lo, hi = min([dim.low, *values]), max([dim.high, *values])
            if dim.log:
                lo = max(lo, min(x for x in [dim.low, *values] if x > 0))
            dim = Dimension(name, kind, lo, hi, dim.log, dim.step8)
        space[name] = dim
    return space


def trials(records: list, read: Callable[[str], str], current: str) -> tuple[list[Trial], dict]:
    """The ledger's trials for the optimiser, and the baseline's knob values.

    Args:
        records: trajectory objects, oldest first.
        read: ``read(commit) -> train.py text`` at that commit (git).
        current: train.py of the current best; only files with its skeleton are trials.

    Returns:
        ``(trials, baseline_knobs)``: trials in order of first run; the knob values of the first
        scored file with ``current``'s code (the baseline, until a code change is kept), or of
        ``current`` when there is none.
    """
    target = skeleton(current)
    groups: dict[str, dict] = {}
    for r in records:
        key, commit = r.get("file_key"), r.get("commit")
        if not key or not commit or r.get("run_s") is None:
            continue
        g = groups.get(key)
        if g is None:
            try:
                text = read(commit)
                same = skeleton(text) == target
                params = knob_values(text)
            except (SyntaxError, ValueError, OSError):
                continue
            g = groups[key] = {"params": params, "same": same, "vals": [], "experiment": r["experiment"],
                               "outcome": r["outcome"]}
        if r["outcome"] in SCORED and r.get("val_bpb") is not None and math.isfinite(r["val_bpb"]):
            g["vals"].append(r["val_bpb"])
        elif r["outcome"] in FAILED and not r.get("repeat_of"):
            g["outcome"] = r["outcome"]
    scored = [statistics.fmean(g["vals"]) for g in groups.values() if g["vals"]]
    baseline = next((g["params"] for g in groups.values() if g["vals"] and g["same"]), None) or knob_values(current)
    if scored:
        penalty = max(scored) + max(0.01, max(scored) - min(scored))
    else:
        penalty = 10.0
    out = []
    for g in groups.values():
        if not g["same"]:
            continue
        if g["vals"]:
            out.append(Trial(g["params"], statistics.fmean(g["vals"]), g["experiment"], g["outcome"], len(g["vals"])))
        elif g["outcome"] in FAILED:
            out.append(Trial(g["params"], penalty, g["experiment"], g["outcome"], 0, penalised=True))
    return out, baseline


@dataclass(frozen=True)
class Suggestion:
    """The optimiser's next point: knob values, the sampler, how many trials it learnt from, and
    ``note``: how the point was drawn when not by the sampler's model (TPE's start-up)."""

    params: dict
    sampler: str
    trials: int
    note: str = ""


class Optimiser:
    """Suggests the next knob values from the ledger's trials.

    Args:
        sampler: one of :data:`SAMPLERS`.
        seed: base seed; the suggestion after ``k`` trials uses ``seed + k`` (deterministic given
            the ledger, so a restart continues the same search).
        population: CMA-ES population size (default ``4 + 3 ln d``, Hansen's rule).
        startup: TPE's start-up trials before it models (Optuna's ``n_startup_trials``; the
            ledger's trials count, the baseline included): one-exchange neighbours of the
            incumbent (:func:`neighbour_sampler`).

    Raises:
        ValueError: unknown sampler.
    """

    def __init__(self, sampler: str = "tpe", seed: int = 0, population: Optional[int] = None, startup: int = 10):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        self.sampler, self.seed, self.population, self.startup = sampler, seed, population, startup

    def starting(self, past: list[Trial]) -> bool:
        """True while TPE has too few trials to model: it then draws a one-knob neighbour of the
        best trial (:func:`neighbour_sampler`)."""
        return self.sampler == "tpe" and 0 < len(past) < self.startup

    def suggest(self, space: dict[str, Dimension], past: list[Trial], attempt: int = 0) -> Suggestion:
        """The next knob values (name -> value, cleaned as the knob's type) for ``space`` after the
        trials ``past``; ``attempt`` > 0 asks again for another point (when the first had run)."""
        if not space:
            raise OptimiserError("train.py has no knob the optimiser can search; edit code with an LLM agent")
        seed = self.seed + len(past) + 7919 * attempt
        if self.sampler == "cmaes":
            params = self._cmaes(space, past, seed, attempt)
        else:
            params = self._optuna(space, past, seed)
        note = "start-up: one knob moved from the best trial" if self.starting(past) else ""
        return Suggestion({n: space[n].clean(v) for n, v in params.items()}, self.sampler, len(past), note)

    def _optuna(self, space, past, seed) -> dict:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.starting(past):
            sampler = neighbour_sampler(space, past, seed)
        elif self.sampler == "tpe":
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=self.startup)
        else:
            sampler = optuna.samplers.RandomSampler(seed=seed)
        study = study_of(space, past, sampler)
        trial = study.ask({n: d.distribution() for n, d in space.items()})
        return dict(trial.params)

    def _cmaes(self, space, past, seed, attempt) -> dict:
        import numpy as np
        from cmaes import CMA

        dims = list(space.values())
        pop = self.population or 4 + int(3 * math.log(len(dims)))
        base = past[0].params if past else {}
        mean = np.array([d.to_unit(base[d.name]) if d.name in base else 0.5 for d in dims])
        cma = CMA(mean=mean, sigma=0.3, bounds=np.array([[0.0, 1.0]] * len(dims)), seed=self.seed,
                  population_size=pop)
        xs = [(np.array([d.to_unit(t.params.get(d.name, d.low)) for d in dims]), t.value) for t in past]
        told = 0
        while len(xs) - told >= pop:  # replay: one generation per population of trials, in ledger order
            cma.tell(xs[told:told + pop])
            told += pop
        cma._rng.seed(seed)  # as Optuna's CmaEsSampler reseeds it before each ask
        for _ in range(len(xs) - told + attempt):  # the asks already used in this generation
            cma.ask()
        x = cma.ask()
        return {d.name: d.from_unit(u) for d, u in zip(dims, x)}


def neighbour_sampler(space: dict[str, Dimension], past: list[Trial], seed: int):
    """An Optuna sampler of one random one-exchange neighbour of the incumbent (the best scored
    trial of ``past``, the first trial when none scored): every knob fixed at its value there but
    one, chosen with ``seed``, which Optuna's RandomSampler draws from its range."""
    import random
    import warnings

    import optuna

    scored = [t for t in past if not t.penalised] or past
    incumbent = min(scored, key=lambda t: t.value)
    free = random.Random(seed).choice(sorted(space))
    fixed = {n: _fit(space[n], incumbent.params.get(n, space[n].low)) for n in space if n != free}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.PartialFixedSampler(fixed, optuna.samplers.RandomSampler(seed=seed))


def study_of(space: dict[str, Dimension], past: list[Trial], sampler=None):
    """An in-memory Optuna study (minimize) holding ``past`` as completed trials (values outside
    the space are clipped into it)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    dists = {n: d.distribution() for n, d in space.items()}
    study.add_trials([
        optuna.trial.create_trial(params={n: _fit(space[n], t.params.get(n, space[n].low)) for n in space},
                                  distributions=dists, value=t.value,
                                  user_attrs={"experiment": t.experiment, "penalised": t.penalised})
        for t in past])
    return study


def _fit(dim: Dimension, value):
    if dim.kind == "bool":
        return bool(value)
    v = min(dim.high, max(dim.low, value))
    return int(v) if dim.kind == "int" else float(v)


def learnt(space: dict[str, Dimension], past: list[Trial], top: float = 0.2) -> dict:
    """What the trials say: ``importance`` (knob -> share of val_bpb's variance it explains,
    Optuna's fANOVA evaluator; empty below 4 scored trials), ``best`` (the best trial's knobs,
    value and experiment), ``region`` (knob -> [min, max] over the best ``top`` share of scored
    trials) and the counts ``trials``, ``penalised``."""
    scored = [t for t in past if not t.penalised]
    out = {"trials": len(past), "penalised": len(past) - len(scored), "importance": {}, "best": None, "region": {}}
    if not scored:
        return out
    best = min(scored, key=lambda t: t.value)
    out["best"] = {"experiment": best.experiment, "val_bpb": round(best.value, 6),
                   "knobs": {n: best.params.get(n) for n in space}}
    ranked = sorted(scored, key=lambda t: t.value)[:max(1, math.ceil(top * len(scored)))]
    for n, d in space.items():
        vals = [t.params[n] for t in ranked if n in t.params]
        if vals:
            out["region"][n] = [min(vals), max(vals)]
    if len(scored) >= 4:
        import optuna

        try:
            imp = optuna.importance.get_param_importances(
                study_of(space, scored), evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
            out["importance"] = {k: round(v, 3) for k, v in imp.items()}
        except (RuntimeError, ValueError):  # e.g. every trial has the same value
            pass
    return out


class GitFiles:
    """``read(rev) -> train.py text`` of a sandbox's git repository. A full commit sha (40 hex
    digits) names content that never changes, so its text is cached for the whole process (the
    newest :data:`SHARED_ENTRIES` texts, shared by every instance); any other rev (``HEAD``, a
    branch) is read again at each call.

    Raises:
        OSError: the commit or file is not in the repository (``git show`` failed).
    """

    SHARED_ENTRIES = 2048
    _shared: "OrderedDict[tuple, str]" = OrderedDict()
    _lock = threading.Lock()

    def __init__(self, sandbox: Path, name: str = "train.py"):
        self.sandbox, self.name = Path(sandbox), name
        self._repo = None

    def __call__(self, commit: str) -> str:
        key = (str(self.sandbox.resolve()), self.name, commit)
        immutable = len(commit) == 40 and all(c in "0123456789abcdef" for c in commit)
        with self._lock:
            if immutable and key in self._shared:
                self._shared.move_to_end(key)
                return self._shared[key]
        import git

        try:
            if self._repo is None:
                self._repo = git.Repo(self.sandbox)
            text = self._repo.git.show(f"{commit}:{self.name}")
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise OSError(f"{self.sandbox} is not a git repository") from None
        except git.GitCommandError as exc:
            raise OSError(f"{self.name} at {commit[:10]}: {exc.stderr.strip()}") from None
        if immutable:
            with self._lock:
                self._shared[key] = text
                while len(self._shared) > self.SHARED_ENTRIES:
                    self._shared.popitem(last=False)
        return text


def changed_knobs(records: list, read: Callable[[str], str]) -> dict[str, int]:
    """Knob coverage: knob name -> number of experiments whose train.py set it to a value other
    than their parent's (experiments that ran; refusals, confirmations and re-measures left out).
    ``read(commit)`` gives train.py at a commit."""
    counts: dict[str, int] = {}
    cache: dict[str, dict] = {}

    def values(commit):
        if commit not in cache:
            try:
                cache[commit] = knob_values(read(commit))
            except (SyntaxError, ValueError, OSError):
                cache[commit] = {}
        return cache[commit]

    for r in records:
        if r.get("repeat_of") or r.get("run_s") is None or not r.get("commit") or not r.get("parent"):
            continue
        new, old = values(r["commit"]), values(r["parent"])
        for name, v in new.items():
            if name in old and old[name] != v:
                counts[name] = counts.get(name, 0) + 1
    return counts



def coverage(sandbox: Path, records: list, current: str) -> tuple[dict[str, int], list[str]]:
    """Which knobs the experiments of ``sandbox`` explored: ``(explored, searchable)``, explored
    mapping each knob name to the number of experiments that changed it from their parent
    (:func:`changed_knobs`), searchable the knobs of ``current`` (the best's train.py) in the
    optimiser's space (:func:`search_space`)."""
    explored = changed_knobs(records, GitFiles(sandbox))
    try:
        searchable = list(search_space(knob_values(current)))
    except SyntaxError:
        searchable = []
    return explored, searchable


def coverage_text(explored: dict[str, int], searchable: list[str]) -> str:
    """``knobs explored: 12 of 15 (DEPTH 8, N_EMBD 5, ...); not yet: ROPE_BASE, ...`` (knobs
    outside the searchable ones count in the list, not in the ratio)."""
    ranked = sorted(explored.items(), key=lambda kv: -kv[1])
    line = f"knobs explored: {sum(n in explored for n in searchable)} of {len(searchable)}"
    if ranked:
        line += " (" + ", ".join(f"{n} {c}" for n, c in ranked) + ")"
    missing = [n for n in searchable if n not in explored]
    if missing:
        line += "; not yet: " + ", ".join(missing)
    return line


__all__ = ["Dimension", "GitFiles", "Optimiser", "OptimiserError", "Suggestion", "Trial", "SAMPLERS",
           "changed_knobs", "coverage", "coverage_text", "knob_values", "learnt", "search_space", "skeleton", "study_of", "trials"]
