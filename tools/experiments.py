"""list_experiments and show_experiment: the ledger as text for a model.

Records are trajectory objects (:meth:`harness.ledger.Ledger.records`). Diffs come from git for
experiments that became commits (kept ones on the branch, discarded ones under
``refs/autoresearch/discarded/<n>``) and from ``runs/<n>/proposal.diff`` for refused proposals.
"""

from __future__ import annotations

import functools
from pathlib import Path

from .files import ToolError

#: outcomes whose run log is worth showing (the run started and failed)
CRASHES = ("crash", "oom", "nan", "timeout", "missing_metric", "over_budget")
MAX_DIFF_CHARS = 6000
LOG_TAIL_LINES = 30
MAX_LOG_CHARS = 3000


def experiment_line(rec: dict, width: int = 100) -> str:
    """``#7 improved 2.101234 [mean 2.1010 of 3 runs] 412 steps lower LR ...``: one experiment in
    one line (the mean of a confirmed candidate's runs and the steps it trained when known),
    description cut to ``width``."""
    val = f"{rec['val_bpb']:.6f}" if rec.get("val_bpb") is not None else "-"
    decision = rec.get("decision") or {}
    extra = f" [mean {decision['mean_val_bpb']:.6f} of {decision['runs']} runs]" if decision.get("mean_val_bpb") else ""
    if rec.get("steps"):
        extra += f" {rec['steps']} steps"
    desc = " ".join(str(rec.get("description", "")).split())
    if len(desc) > width:
        desc = desc[:max(width - 3, 0)] + "..."
    return f"#{rec['experiment']} {rec['outcome']} {val}{extra} {desc}".rstrip()


def list_experiments(history: list[dict], last_n: int | None = 20) -> str:
    """The last ``last_n`` experiments (all when None), one line each, with the best so far on top."""
    if not history:
        return "no experiments yet"
    from harness.decisions import best_estimate, noise

    n = max(1, int(last_n)) if last_n else len(history)
    best = best_estimate(history)
    head = [f"{len(history)} experiments; best val_bpb {best.val_bpb:.6f} (experiment {best.experiment}, mean of "
            f"{best.runs} run{'s' if best.runs != 1 else ''}); {noise(history).text()}"
            if best else f"{len(history)} experiments; none kept yet"]
    if n < len(history):
        head.append(f"(showing the last {n}; ask for more with last_n)")
    return "\n".join(head + [experiment_line(r, 160) for r in history[-n:]])


def log_tail(sandbox: Path | None, n: int, lines: int = LOG_TAIL_LINES, max_chars: int = MAX_LOG_CHARS) -> str:
    """The last ``lines`` lines of ``runs/<n>/run.log`` (at most ``max_chars``), or ``""``."""
    if sandbox is None:
        return ""
    try:
        text = (Path(sandbox) / "runs" / str(n) / "run.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])[-max_chars:]


@functools.lru_cache(maxsize=1024)
def _commit_diff(sandbox: str, commit: str) -> str:
    """``git show`` of a full commit sha (immutable content, so cached for the process)."""
    import git

    return git.Repo(sandbox).git.show("--format=", "--no-color", commit)


def experiment_diff(sandbox: Path | None, rec: dict) -> str:
    """The diff experiment ``rec`` tried: ``git show`` of its commit, else its proposal.diff."""
    if sandbox is None:
        return ""
    if rec.get("commit"):
        import git

        try:
            return _commit_diff(str(Path(sandbox).resolve()), rec["commit"])
        except (git.GitCommandError, git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
            pass
    try:
        return (Path(sandbox) / "runs" / str(rec["experiment"]) / "proposal.diff").read_text(encoding="utf-8")
    except OSError:
        return ""


def sample_of(sandbox: Path | None, n: int) -> str:
    """The text ``runs/<n>/sample.txt`` holds (what the trained model generated after scoring, from
    a fixed prompt with a fixed seed), or ``""``."""
    if sandbox is None:
        return ""
    try:
        return (Path(sandbox) / "runs" / str(n) / "sample.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def show_experiment(sandbox: Path | None, history: list[dict], n: int) -> str:
    """Experiment ``n`` in full: description, outcome, val_bpb against its parent, what the run did
    (steps, tokens/s, energy), the decision and its evidence, detail (a refusal's rail verdicts, a
    crash's reason), diff, training curve beside the best's, sample, log tail. ``harness show N``
    prints the same text.

    Raises:
        ToolError: there is no experiment ``n``.
    """
    try:
        rec = next(r for r in history if r["experiment"] == int(n))
    except (StopIteration, TypeError, ValueError):
        last = history[-1]["experiment"] if history else 0
        raise ToolError(f"there is no experiment {n!r}; experiments are numbered 1 to {last}") from None
    parent = rec.get("parent_val_bpb")
    parts = [
        f"experiment {rec['experiment']}: {rec.get('description', '')}",
        f"outcome: {rec['outcome']} (status {rec.get('status', '?')}), val_bpb: "
        f"{rec['val_bpb'] if rec.get('val_bpb') is not None else '-'}, parent val_bpb: {parent if parent is not None else '-'}",
        f"format: {rec.get('proposal_format') or '-'}, commit: {rec.get('commit') or 'none (never ran)'}",
    ]
    if rec.get("steps"):
        parts.append(f"trained: {rec['steps']} steps, {rec.get('tokens') or 0:,} tokens, "
                     f"{rec.get('tokens_per_s') or 0:,.0f} tokens/s in {rec.get('train_s') or 0:.1f} s"
                     + (f", seed {rec['seed']}" if rec.get("seed") is not None else ""))
    if rec.get("run_s") is not None:
        energy = [f"{label} {rec[key]:,.0f} J" for key, label in (("gpu_energy_j", "GPU"), ("cpu_energy_j", "CPU"))
                  if rec.get(key) is not None]
        parts.append(f"run: {rec['run_s']:.1f} s wall, peak memory {rec.get('peak_mem_gb') or 0:.2f} GB"
                     + (f", sample {rec['sample_s']:.2f} s (not training time)" if rec.get("sample_s") else "")
                     + "; energy: " + (", ".join(energy) if energy else "not measured"))
    if rec.get("llm_calls"):
        parts.append(f"LLM: {rec['llm_calls']} calls, {rec.get('prompt_tokens', 0):,} prompt + "
                     f"{rec.get('completion_tokens', 0):,} completion tokens, {rec.get('llm_s') or 0:.1f} s")
    if rec.get("repeat_of"):
        parts.append(f"a repeat of experiment {rec['repeat_of']} (same file)")
    if (rec.get("decision") or {}).get("reason"):
        parts.append(f"decision: {rec['decision']['reason']}")
    if rec.get("drift"):
        parts.append(f"drift: the best re-measured at {rec['drift']['to']:.6f}, its figure was {rec['drift']['from']:.6f}")
    if rec.get("detail"):
        parts.append(f"detail: {rec['detail'][:1500]}")
    diff = experiment_diff(sandbox, rec)
    if diff:
        cut = "\n... (diff cut)" if len(diff) > MAX_DIFF_CHARS else ""
        parts.append(f"diff:\n{diff[:MAX_DIFF_CHARS]}{cut}")
    if rec.get("curve"):
        from harness.curves import best_record, compare

        parts.append(compare(rec, best_record(history)))
    sample = sample_of(sandbox, rec["experiment"])
    if sample:
        parts.append(f"sample (fixed prompt, fixed seed):\n{sample}")
    tail = log_tail(sandbox, rec["experiment"])
    if tail:
        parts.append(f"end of runs/{rec['experiment']}/run.log:\n{tail}")
    return "\n".join(parts)


def training_curve(history: list[dict], n: int) -> str:
    """Experiment ``n``'s training loss at 10%..100% of the time budget beside the best's
    (:mod:`harness.curves`).

    Raises:
        ToolError: there is no experiment ``n``.
    """
    from harness.curves import best_record, compare

    rec = next((r for r in history if str(r["experiment"]) == str(n)), None)
    if rec is None:
        last = history[-1]["experiment"] if history else 0
        raise ToolError(f"there is no experiment {n!r}; experiments are numbered 1 to {last}")
    if not rec.get("curve"):
        why = "it never ran" if rec.get("run_s") is None else "its log has no progress lines with a loss"
        return f"experiment {rec['experiment']} has no training curve: {why}"
    return compare(rec, best_record(history))
