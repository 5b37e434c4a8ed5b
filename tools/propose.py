"""propose_edit: turn any edit format into a unified diff, check it exactly as the loop will, and
answer "accepted" or every reason it was refused.

The check is :func:`harness.experiment.check_proposal` (the diff parses and applies, only editable
files, every rail), so an accepted proposal is one the loop will run. SEARCH/REPLACE blocks and
whole files become unified diffs through :mod:`harness.edits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

FORMATS = ("udiff", "search_replace", "whole")


@dataclass(frozen=True)
class Verdict:
    """The answer to one propose_edit call: ``proposal`` set when accepted, else ``outcome``
    (``patch_failed``, ``syntax_error``, ``rail_blocked``) and ``message`` with every reason.
    ``checked`` is the :class:`harness.experiment.Checked` result when the edit got as far as the
    check (the new file texts when accepted), so callers need not check it again."""

    message: str
    proposal: Optional[object] = None
    outcome: Optional[str] = None
    checked: Optional[object] = None


def propose_edit(files: dict[str, str], cfg, description: str, diff: str | None = None,
                 search_replace: str | None = None, whole_file: str | None = None,
                 path: str | None = None) -> Verdict:
    """Validate one proposed edit of the current best ``files``.

    Args:
        files: editable file name -> text on the current best commit.
        cfg: the sandbox's :class:`harness.config.HarnessConfig` (its ``editable_files``).
        description: one line, what changed and why (newlines are folded, cut to 200 characters).
        diff, search_replace, whole_file: exactly one edit, in that format.
        path: the file for ``search_replace``/``whole_file`` (default: the first editable file).

    Returns:
        A :class:`Verdict`; its ``proposal`` is a :class:`harness.agents.base.Proposal` with
        ``format`` ``udiff``, ``search_replace`` or ``whole``.
    """
    from harness.agents.base import Proposal
    from harness.edits import search_replace_diff, whole_file_diff
    from harness.experiment import check_proposal
    from harness.patch import PatchError

    description = " ".join(str(description or "").split())[:200]
    given = {k: v for k, v in (("diff", diff), ("search_replace", search_replace), ("whole_file", whole_file))
             if isinstance(v, str) and v.strip()}
    problems = []
    if not description:
        problems.append("description is empty: give one line saying what you changed and why")
    if len(given) != 1:
        problems.append(f"give exactly one of diff, search_replace, whole_file (got {', '.join(given) or 'none'})")
    if problems:
        return Verdict(_refusal("patch_failed", problems), outcome="patch_failed")
    kind, text = next(iter(given.items()))
    target = str(path or cfg.editable_files[0]).removeprefix("./")
    fmt = {"diff": "udiff", "search_replace": "search_replace", "whole_file": "whole"}[kind]
    if kind != "diff":
        if target not in cfg.editable_files or target not in files:
            return Verdict(_refusal("patch_failed", [f"{target} is not editable; editable files: "
                                                     f"{', '.join(cfg.editable_files)}"]), outcome="patch_failed")
        try:
            text = (search_replace_diff(files[target], text, target) if kind == "search_replace"
                    else whole_file_diff(files[target], text, target))
        except PatchError as exc:
            return Verdict(_refusal("patch_failed", [str(exc)]), outcome="patch_failed")
        if not text:
            return Verdict(_refusal("patch_failed", ["the edit changes nothing"]), outcome="patch_failed")
    proposal = Proposal(description=description, diff=text, format=fmt)
    checked = check_proposal(proposal, files, cfg)
    if checked.files is None:
        reasons = [_verdict_line(v) for v in checked.rail_verdicts] or [checked.detail]
        return Verdict(_refusal(checked.outcome, reasons), outcome=checked.outcome, checked=checked)
    changed = sum(1 for line in text.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))
    return Verdict(f"accepted: experiment '{description}' ({changed} lines changed) will run next", proposal,
                   checked=checked)


def _verdict_line(v: dict) -> str:
    return f"{v['file']}:{v['line']}: [{v['rule']}] {v['message']} (hint: {v['hint']})"


def _refusal(outcome: str, reasons: list[str]) -> str:
    body = "\n".join(f"- {r}" for r in reasons)
    return f"refused ({outcome}):\n{body}\nFix the edit and call propose_edit again."
