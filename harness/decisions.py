"""Decisions: the noise of val_bpb, the keep policies, re-measuring the best, and duplicates.

Everything here is a pure function of the ledger's records (trajectory objects), so a restarted
harness, the built-in loop, the MCP server and the benchmarks decide alike.

**Noise.** Runs of the same file (same :func:`file_key`) differ only by noise: how many steps fit
in the wall-clock budget, nondeterministic kernels and, for repeats, the seed. The noise ``sd`` is
the pooled standard deviation of val_bpb within those groups (every baseline repeat, confirmation
and re-measure in the sandbox's history): ``sqrt(sum (x - mean_g)^2 / sum (n_g - 1))``.

**The best** is the last kept experiment (the branch head); its figure is the mean val_bpb of the
runs of its file since the last drift (:func:`best_estimate`).

**Policy ``noise``** (the default): a candidate's first run ``x`` is screened against the best's
mean ``m`` over ``n`` runs: ``z1 = (m - x) / (sd * sqrt(1 + 1/n))``. Below ``z_promising`` it is
discarded at once (clearly worse, or not better by enough to be worth confirming). Otherwise it
gets confirmation runs (with other seeds, below): at least ``confirm_runs`` before it can be kept,
more while it stays promising but not yet significant, up to ``max_confirm_runs``; it stops as
soon as the mean of its runs falls below ``z_promising`` noise units, or as soon as its chance to
be kept by its last allowed run, were the mean of its runs so far its true mean, falls below
``futility_power`` (:func:`conditional_power`; a promising first run with so small a chance gets
no confirmation run at all). It is kept only when the
mean of its runs ``mc`` over ``nc`` runs clears a one-sided two-sample t-test against the best
with the pooled noise (the history's repeats and the candidate's own runs, as a two-sample t-test
pools both samples): ``t = (m - mc) / (sd * sqrt(1/n + 1/nc)) >= t_(1-alpha, df)``, ``df`` the
degrees of freedom of the noise estimate, ``alpha`` by default 0.01 (p < 0.01, the rule
competitions use for a new record); Student's t, not the normal z, because a noise measured from
a few runs is often underestimated (t_0.99 is 6.96 with 2 degrees of freedom, 2.46 with 30).
Including the screening run in ``mc`` does not raise the false-keep rate above the test's level:
the screen only removes candidates. The test is looked at after each run from ``1 + confirm_runs``
runs on, at most ``max_confirm_runs - confirm_runs + 1`` times (4 by default), each look at level
``alpha / looks`` (Bonferroni), so a change with no effect is kept with a chance below ``alpha``
over the whole procedure; ``benchmarks/yield.py`` measures the resulting false-keep rate.

**Pooled evidence** (``surrogate``, on by default): a candidate that changes only knob values is
also judged by a Gaussian-process model of every run of the same code (:mod:`harness.surrogate`),
so that a small improvement along a knob is estimated from the neighbouring files' runs as well
as from its own repeats. A candidate the t-test does not keep (yet) is kept when the mean of its
own runs is below the best's and the model's posterior probability that it is no better than the
best is below ``alpha`` (``z >= z_(1-alpha)``, 2.33 at 0.01) on its first run, below ``alpha /
looks`` (2.81) on a later one: the model is looked at after every run as the t-test is, and its
level is split the same way. A candidate the t-test would discard (not promising on its own runs,
or futile: against a best measured on few runs the t-test cannot keep a small improvement within
the runs allowed) gets confirmation runs while its own mean is below the best's and the model's z
is at least ``z_promising``. This is a Bayesian rule, not a test level: its false-keep rate is what
``benchmarks/yield.py`` measures.

**Seeds.** Confirmation runs and baseline repeats change the seed (``SEED`` knob + 1000 j for
repeat j; the committed file runs with its own seed), so that a change whose only effect is a
different random draw (a width +1 reshuffles every initial weight) is judged by its mean over
seeds, and the noise includes seed-to-seed spread, not only timing. All files are compared on the
same seeds (paired by design). A file without a ``SEED`` knob is repeated unchanged, and then only
timing and kernel noise is measured (said in the README).

**Drift.** Every ``remeasure_every`` experiments, and when the throughput (tokens/s) of a file run
again moved by more than ``throughput_drift``, the best is run again with its own seed. A value
outside the two-sided ``1 - alpha`` t interval of its mean is a drift: recorded on that row, and the best's figure
restarts from the fresh run, so later candidates are compared with the machine as it is now.

**Policy ``greedy``** (karpathy/autoresearch's rule): keep any strictly lower val_bpb than the
best's figure; no confirmation, no re-measure.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
import statistics
from dataclasses import dataclass
from typing import Optional

#: outcomes of runs whose val_bpb measures their file (a failed or over-budget run does not)
SCORED = ("improved", "not_improved", "confirmation", "remeasure")
#: seed offset of repeat j: SEED + SEED_STRIDE * j
SEED_STRIDE = 1000
POLICIES = ("noise", "greedy")


@dataclass(frozen=True)
class PolicySettings:
    """``[policy]`` of harness.toml.

    Attributes:
        keep: ``noise`` (default) or ``greedy``.
        baseline_runs: runs of the unmodified baseline before the first proposal (>= 2 for ``noise``).
        confirm_runs: confirmation runs a candidate needs before it can be kept (``noise``).
        max_confirm_runs: confirmation runs a candidate may get while it stays promising.
        z_promising: screening threshold in noise units (one-run z) for confirmation.
        alpha: level of the one-sided keep test (0.01: p < 0.01) and of the two-sided drift test.
        remeasure_every: re-measure the best after this many experiments without a run of it (0: never).
        throughput_drift: relative change of tokens/s of a repeated file that triggers a re-measure.
        futility_power: confirmation stops (and a promising first run gets none) when the candidate's
            :func:`conditional_power` falls below this (0: never for that reason).
        surrogate: also keep a candidate that changes only knobs when a Gaussian-process model of
            all runs of that code puts its improvement at z >= the normal quantile of ``alpha``
            (of ``alpha / looks`` after more than one run), and confirm one it puts at z >=
            ``z_promising`` (:mod:`harness.surrogate`); False: the t-test alone.
    """

    keep: str = "noise"
    baseline_runs: int = 3
    confirm_runs: int = 2
    max_confirm_runs: int = 5
    z_promising: float = 1.0
    alpha: float = 0.01
    remeasure_every: int = 10
    throughput_drift: float = 0.10
    futility_power: float = 0.2
    surrogate: bool = True


@dataclass(frozen=True)
class Estimate:
    """The best's figure: mean ``val_bpb`` (bits per byte) over ``runs`` runs of its file.

    Attributes:
        val_bpb: mean val_bpb of the runs since the last drift.
        runs: how many runs the mean is over.
        experiment: the kept experiment's number; ``commit`` its sha; ``key`` its file key.
        tokens_per_s: median tokens per second of those runs, or None.
    """

    val_bpb: float
    runs: int
    experiment: int
    commit: Optional[str]
    key: Optional[str]
    tokens_per_s: Optional[float] = None


@dataclass(frozen=True)
class Noise:
    """Pooled sd of val_bpb for an unchanged file (bits per byte), from ``df`` degrees of freedom
    over ``runs`` runs in ``groups`` files repeated; ``sd`` None while no file was repeated."""

    sd: Optional[float]
    df: int
    runs: int
    groups: int

    def text(self) -> str:
        """``noise sd 0.0068 (12 runs of 4 files)`` or ``noise not measured yet``."""
        if self.sd is None:
            return "noise not measured yet"
        return f"noise sd {self.sd:.4f} ({self.runs} runs of {self.groups} file{'s' if self.groups != 1 else ''})"


@dataclass(frozen=True)
class Verdict:
    """A policy's answer on a candidate's runs so far: ``action`` ``keep``, ``discard`` or
    ``confirm`` (run it again), and ``evidence`` (a JSON object for the record: the figures behind
    the decision, ``reason`` in words)."""

    action: str
    evidence: dict


def file_key(files: dict[str, str]) -> str:
    """A short hash of the editable files that ignores comments and formatting: each file is parsed
    and its AST dumped (``ast.dump``), a file that does not parse is hashed as text.

    Args:
        files: file name -> text.
    Returns:
        16 hex digits.
    """
    h = hashlib.sha256()
    for name in sorted(files):
        text = files[name]
        try:
            norm = ast.dump(ast.parse(text))
        except (SyntaxError, ValueError):
            norm = text
        h.update(name.encode() + b"\0" + norm.encode("utf-8", "replace") + b"\0")
    return h.hexdigest()[:16]


def is_scored(rec: dict) -> bool:
    """True for a run whose val_bpb measures its file (see :data:`SCORED`)."""
    return rec.get("outcome") in SCORED and rec.get("val_bpb") is not None


def is_baseline(rec: dict) -> bool:
    """True for the unmodified baseline's first run."""
    return rec.get("proposal_format") == "baseline"


def noise(records: list[dict]) -> Noise:
    """The pooled sd of val_bpb within groups of runs of the same file (see the module docstring)."""
    groups: dict[str, list[float]] = {}
    for r in records:
        if is_scored(r) and r.get("file_key"):
            groups.setdefault(r["file_key"], []).append(r["val_bpb"])
    return within_groups(groups.values())


def within_groups(groups) -> Noise:
    """The pooled within-group sd of ``groups`` (lists of values; a group of one adds nothing):
    sqrt(sum of squared deviations from each group's mean / sum of (size - 1)), as the one-way
    ANOVA's within-group mean square."""
    ss, df, runs, repeated = 0.0, 0, 0, 0
    for vals in groups:
        if len(vals) < 2:
            continue
        mean = statistics.fmean(vals)
        ss += sum((v - mean) ** 2 for v in vals)
        df += len(vals) - 1
        runs += len(vals)
        repeated += 1
    return Noise(math.sqrt(ss / df) if df else None, df, runs, repeated)


def pooled(sd: Optional[float], df: int, vals: list[float]) -> tuple[Optional[float], int]:
    """The noise ``(sd, df)`` of the history pooled with one more file's runs ``vals`` (a
    candidate's runs so far), as the two-sample t-test pools both samples' variance."""
    extra_df = len(vals) - 1
    if extra_df < 1:
        return sd, df
    mean = statistics.fmean(vals)
    ss = (sd or 0.0) ** 2 * df + sum((v - mean) ** 2 for v in vals)
    return math.sqrt(ss / (df + extra_df)), df + extra_df


def file_runs(records: list[dict], key: Optional[str]) -> list[dict]:
    """Scored runs of the file ``key`` since its last drift (a row with ``drift`` restarts them)."""
    runs: list[dict] = []
    for r in records:
        if key is not None and r.get("file_key") == key and is_scored(r):
            runs = [r] if r.get("drift") else runs + [r]
    return runs


def best_estimate(records: list[dict]) -> Optional[Estimate]:
    """The figure of the best (the last kept experiment), or None before anything was kept. An
    experiment recorded before file keys existed counts with its own val_bpb, one run."""
    kept = [r for r in records if r.get("status") == "keep" and r.get("val_bpb") is not None]
    if not kept:
        return None
    top = kept[-1]
    runs = file_runs(records, top.get("file_key")) or [top]
    tps = [r["tokens_per_s"] for r in runs if r.get("tokens_per_s")]
    return Estimate(statistics.fmean(r["val_bpb"] for r in runs), len(runs), top["experiment"], top.get("commit"),
                    top.get("file_key"), statistics.median(tps) if tps else None)


def ran_before(records: list[dict], key: str) -> Optional[dict]:
    """The first experiment that ran the file ``key`` (a run started: it has a commit and run
    time), or None; a proposal yielding that file again is a ``duplicate``."""
    for r in records:
        if r.get("file_key") == key and r.get("run_s") is not None and not r.get("repeat_of"):
            return r
    return None


def critical(alpha: float, df: int) -> float:
    """Student's t quantile ``t_(1-alpha, df)`` (scipy); the normal quantile when ``df`` is 0."""
    from scipy.stats import norm, t

    return float(t.ppf(1 - alpha, df) if df > 0 else norm.ppf(1 - alpha))


def looks(settings: PolicySettings) -> int:
    """How many times the keep test may be looked at for one candidate (after ``1 + confirm_runs``
    runs, then after each further run up to ``1 + max_confirm_runs``)."""
    return max(1, settings.max_confirm_runs - settings.confirm_runs + 1)


def conditional_power(settings: PolicySettings, vals: list[float], best_mean: float, best_runs: int,
                      sd: float, df: int) -> float:
    """The chance that a candidate is kept at its last allowed run if the mean of its runs so far
    were its true mean: conditional power under the current trend, the futility rule of group
    sequential trials (Lan, Simon & Halperin 1982, "Stochastically curtailed tests").

    The last look has ``N = 1 + max_confirm_runs`` runs and keeps when the final mean is at most
    ``best_mean - c * sd * sqrt(1/best_runs + 1/N)``, ``c`` the look's critical t with the degrees of
    freedom the remaining runs add (:func:`critical`); the ``N - k`` runs still to come move the final
    mean by a normal amount of sd ``sd * sqrt(N - k) / N``. Earlier looks only add chances, so this
    is a lower bound of the chance to be kept. ``df`` 0 (a noise not measured) uses the normal quantile.

    Args:
        vals: val_bpb of the candidate's ``k`` runs so far (bits per byte).
        best_mean, best_runs: the best's figure and how many runs it is over.
        sd, df: the noise (bits per byte, > 0) and its degrees of freedom now.
    Returns:
        A probability; 0.0 when no run is left.
    """
    from scipy.stats import norm

    last = 1 + settings.max_confirm_runs
    left = last - len(vals)
    if left <= 0:
        return 0.0
    crit = critical(settings.alpha / looks(settings), df + left if df else 0)
    keep_at = best_mean - crit * sd * math.sqrt(1 / best_runs + 1 / last)
    return float(norm.cdf((keep_at - statistics.fmean(vals)) / (sd * math.sqrt(left) / last)))


def judge(settings: PolicySettings, vals: list[float], failed: Optional[str], best: Optional[dict],
          sd: Optional[float], df: int = 0, model=None) -> Verdict:
    """The verdict on a candidate whose scored runs so far gave ``vals`` (bits per byte).

    Under ``noise``, a candidate the t-test would not keep (yet) is kept on the pooled evidence
    of ``model`` when its own mean is below the best's and the model's z (posterior mean of the
    improvement over its posterior sd) is at least the normal quantile ``z_(1-alpha)`` (2.33 at
    0.01) on one run, ``z_(1-alpha/looks)`` (2.81) on more: the posterior probability that it is no
    better is then below that level. One the t-test would discard gets confirmation runs while
    its own mean is below the best's and the model's z is at least ``z_promising``.

    Args:
        settings: the policy.
        vals: val_bpb of the candidate's runs, the committed-seed run first.
        failed: the outcome of a confirmation run that failed (the candidate is then discarded).
        best: ``{"val_bpb": mean, "runs": n}`` of the best when the candidate was committed, or
            None (nothing kept yet: the candidate is kept as it is).
        sd, df: the noise sd then and its degrees of freedom (sd None: not measured; ``noise``
            then judges with a vanishing sd, so any confirmed improvement is kept).
        model: the :class:`harness.surrogate.ModelEvidence` on this candidate, or None.
    """
    verdict = _ttest(settings, vals, failed, best, sd, df)
    if model is None or settings.keep != "noise" or best is None or failed:
        return verdict
    ev = {**verdict.evidence, "model_delta": round(model.delta, 6), "model_sd": round(model.sd, 6),
          "model_z": round(model.z, 2), "model_files": model.files}
    level = settings.alpha if len(vals) == 1 else settings.alpha / looks(settings)
    need = critical(level, 0)
    mean = statistics.fmean(vals)
    said = (f"mean {mean:.6f} over {len(vals)} run{'s' if len(vals) > 1 else ''} vs best {best['val_bpb']:.6f}; "
            f"the model of {model.files} knob variants of this code ({model.runs} runs) puts it "
            f"{model.delta:+.6f} below the best, posterior sd {model.sd:.6f}: z {model.z:.2f}")
    if verdict.action != "keep" and mean < best["val_bpb"] and model.z >= need:
        ev["reason"] = f"{said} >= {need:.2f} (P(no better) < {level:g})"
        return Verdict("keep", ev)
    if verdict.action == "discard" and mean < best["val_bpb"] and model.z >= settings.z_promising and \
            len(vals) < 1 + settings.max_confirm_runs:
        ev["reason"] = (f"{said}, promising on the pooled evidence ({verdict.evidence.get('reason', '')}): "
                        "confirmation runs follow")
        return Verdict("confirm", ev)
    return Verdict(verdict.action, ev)


def _ttest(settings: PolicySettings, vals: list[float], failed: Optional[str], best: Optional[dict],
           sd: Optional[float], df: int) -> Verdict:
    """:func:`judge` on the candidate's and the best's own runs: greedy, or the sequential t-test."""
    x = vals[0]
    if best is None:
        return Verdict("keep", {"policy": settings.keep, "reason": "nothing kept yet: this is the first figure"})
    m, n = best["val_bpb"], best["runs"]
    ev = {"policy": settings.keep, "best_val_bpb": round(m, 6), "best_runs": n}
    if settings.keep == "greedy":
        ev["delta"] = round(m - x, 6)
        better = x < m
        ev["reason"] = f"val_bpb {x:.6f} {'<' if better else '>='} best {m:.6f} (greedy: any strict improvement)"
        return Verdict("keep" if better else "discard", ev)
    s = max(sd or 0.0, 1e-9)
    ev["noise_sd"] = round(sd, 6) if sd is not None else None
    if failed:
        ev.update(runs=len(vals) + 1, reason=f"a confirmation run failed ({failed}): not kept")
        return Verdict("discard", ev)
    if len(vals) == 1:
        z1 = (m - x) / (s * math.sqrt(1 + 1 / n))
        ev.update(delta=round(m - x, 6), z=round(z1, 2), runs=1)
        power = conditional_power(settings, vals, m, n, s, df)
        ev["power"] = round(power, 3)
        if settings.confirm_runs >= 1 and z1 >= settings.z_promising and power < settings.futility_power:
            ev["reason"] = (f"one run {x:.6f} vs best {m:.6f} over {n}: {z1:+.2f} noise units, but a "
                            f"{power:.0%} chance to be kept within {1 + settings.max_confirm_runs} runs "
                            f"(below {settings.futility_power:g}): not worth confirming")
            return Verdict("discard", ev)
        if z1 < settings.z_promising or settings.confirm_runs < 1:
            if settings.confirm_runs < 1 and z1 >= critical(settings.alpha, df):
                ev["reason"] = f"t {z1:.2f} >= {critical(settings.alpha, df):.2f} on one run (no confirmation runs set)"
                return Verdict("keep", ev)
            ev["reason"] = (f"one run {x:.6f} vs best {m:.6f} over {n}: {z1:+.2f} noise units, below "
                            f"{settings.z_promising} to be worth confirming")
            return Verdict("discard", ev)
        ev["reason"] = (f"promising ({z1:+.2f} noise units on one run, a {power:.0%} chance to be kept): "
                        "confirmation runs follow")
        return Verdict("confirm", ev)
    mc, nc = statistics.fmean(vals), len(vals)
    z = (m - mc) / (s * math.sqrt(1 / n + 1 / nc))
    crit = critical(settings.alpha / looks(settings), df)
    ev.update(delta=round(m - mc, 6), z=round(z, 2), runs=nc, mean_val_bpb=round(mc, 6),
              delta_sd=round((m - mc) / s, 2), threshold=round(crit, 3), df=df)
    enough = nc >= 1 + settings.confirm_runs
    if z >= crit and enough:
        ev["reason"] = (f"mean {mc:.6f} over {nc} runs vs best {m:.6f} over {n}: delta {m - mc:+.6f} = "
                        f"{(m - mc) / s:+.2f} sd (noise {s:.6f}, {df} df), t {z:.2f} >= {crit:.2f} "
                        f"(one-sided, p < {settings.alpha:g} over up to {looks(settings)} looks)")
        return Verdict("keep", ev)
    power = conditional_power(settings, vals, m, n, s, df)
    ev["power"] = round(power, 3)
    if z >= settings.z_promising and nc < 1 + settings.max_confirm_runs and power >= settings.futility_power:
        ev["reason"] = f"t {z:.2f} after {nc} runs, a {power:.0%} chance to be kept: confirmation goes on"
        return Verdict("confirm", ev)
    why = (f"below {settings.z_promising}: no longer promising" if z < settings.z_promising else
           f"below {crit:.2f} after the most runs ({nc})" if nc >= 1 + settings.max_confirm_runs else
           f"with a {power:.0%} chance to be kept by {1 + settings.max_confirm_runs} runs if its mean held "
           f"(below {settings.futility_power:g}): futile")
    ev["reason"] = (f"mean {mc:.6f} over {nc} runs vs best {m:.6f} over {n}: delta {m - mc:+.6f} = "
                    f"{(m - mc) / s:+.2f} sd (noise {s:.6f}, {df} df), t {z:.2f} {why} (keep needs t >= {crit:.2f}, "
                    f"one-sided p < {settings.alpha:g}, after at least {1 + settings.confirm_runs} runs)")
    return Verdict("discard", ev)


def due_repeat(records: list[dict], settings: PolicySettings) -> Optional[tuple[str, dict, int]]:
    """The repeat the core should run before the next proposal, or None: ``(reason, of_record,
    repeat_index)``; ``of_record`` is the experiment whose file runs again, ``repeat_index`` j
    selects its seed (0: the committed seed).

    Due, in order: baseline repeats (until ``baseline_runs`` runs of the baseline, before any
    proposal); then, under ``noise``, a re-measure of the best every ``remeasure_every``
    experiments without a run of it, or when the last run of a repeated file moved its
    throughput by more than ``throughput_drift``.
    """
    base = next((r for r in records if is_baseline(r) and r["outcome"] not in ("interrupted", "preempted")), None)
    if base is None:
        return None
    only_baseline = all(is_baseline(r) or r.get("repeat_of") == base["experiment"] for r in records)
    if only_baseline and base.get("val_bpb") is not None:
        done = [r for r in records if r.get("repeat_of") == base["experiment"]
                and r["outcome"] not in ("interrupted", "preempted")]
        if 1 + len(done) < settings.baseline_runs:
            return f"baseline repeat {len(done) + 1} of {settings.baseline_runs - 1}", base, len(done) + 1
    if settings.keep != "noise" or settings.remeasure_every <= 0:
        return None
    est = best_estimate(records)
    if est is None or est.key is None:
        return None
    top = next(r for r in records if r["experiment"] == est.experiment)
    last_run_of_best = max((r["experiment"] for r in records if r.get("file_key") == est.key), default=0)
    since = sum(1 for r in records if r["experiment"] > last_run_of_best)
    if since >= settings.remeasure_every:
        return f"{since} experiments since its last run", top, 0
    last = next((r for r in reversed(records) if is_scored(r)), None)
    if last is not None and last.get("outcome") != "remeasure" and last.get("tokens_per_s"):
        earlier = [r["tokens_per_s"] for r in records if r.get("file_key") == last.get("file_key")
                   and r is not last and is_scored(r) and r.get("tokens_per_s")]
        if earlier:
            ref = statistics.median(earlier)
            moved = last["tokens_per_s"] / ref - 1
            if abs(moved) > settings.throughput_drift:
                return f"throughput moved {moved:+.0%} on a repeated file (#{last['experiment']})", top, 0
    return None


def seeded(source: str, index: int) -> tuple[str, Optional[int]]:
    """``(train.py text, seed)`` for repeat ``index`` of ``source``: its ``SEED`` knob plus
    ``SEED_STRIDE * index``; ``(source, None)`` for index 0 or a file without exactly one
    module-level ``SEED = <int>`` line. Only that literal changes (checked by parsing the result)."""
    if index <= 0:
        return source, None
    line = re.compile(r"^(SEED\s*=\s*)(\d+)\b", re.M)
    found = line.findall(source)
    if len(found) != 1 or _module_int(source, "SEED") != int(found[0][1]):
        return source, None
    seed = int(found[0][1]) + SEED_STRIDE * index
    text = line.sub(lambda m: f"{m.group(1)}{seed}", source)
    return (text, seed) if _module_int(text, "SEED") == seed else (source, None)


def _module_int(source: str, name: str) -> Optional[int]:
    """The int literal of the single module-level ``name = <int>``, else None."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    values = [n.value.value for n in tree.body if isinstance(n, ast.Assign) and len(n.targets) == 1
              and isinstance(n.targets[0], ast.Name) and n.targets[0].id == name
              and isinstance(n.value, ast.Constant) and type(n.value.value) is int]
    return values[0] if len(values) == 1 else None


def drift(value: float, best: Estimate, nz: Noise, settings: PolicySettings) -> Optional[dict]:
    """The drift a re-measure of the best found: ``{"from", "to", "z"}`` when ``value`` lies
    outside the two-sided ``1 - alpha`` t interval of a new run around the best's mean, else None."""
    if nz.sd is None or nz.sd <= 0:
        return None
    z = (value - best.val_bpb) / (nz.sd * math.sqrt(1 + 1 / best.runs))
    if abs(z) < critical(settings.alpha / 2, nz.df):
        return None
    return {"from": round(best.val_bpb, 6), "to": round(value, 6), "z": round(z, 2)}
