"""The trusted start-up of train.py: watches training and evaluation from outside the script.

The runner starts every ``python SCRIPT ARGS`` command as ``python evalguard.py MODE -- SCRIPT ARGS``
(inside :mod:`harness.child_init`). Before the script runs, this module (standard library only at
import, so any interpreter can run it) registers a ``sys.meta_path`` finder; as soon as the
script's own import of ``prepare`` (from the script's folder) has executed it, the finder registers
a global optimizer step pre-hook (every ``torch.optim.Optimizer`` subclass calls it) and replaces
``prepare.evaluate_bpb`` with a wrapper. Then it runs the script as ``__main__``
(:func:`runpy.run_path`), so ``from prepare import evaluate_bpb`` gets the wrapper; a script that
never imports prepare runs unwatched. Around each call
the wrapper checks what the evaluated code did:

- optimizer steps taken during the evaluation (test-time training with an optimizer);
- a module's forward run with gradients enabled during the evaluation (a wrapper model that trains
  on the evaluation batches must enable them; both evaluate_bpb versions run under ``no_grad``);
- the model's parameters changed by the evaluation (a checksum per tensor before and after);
- seconds since the first optimizer step (``first_step_s``): training time counted from the first
  step, so steps taken before the timed loop starts (or before the first training batch) count
  toward the budget (:func:`harness.runner.classify` uses the larger of this and prepare's
  ``train_s``).

MODE says who writes the trusted result file (``$AUTORESEARCH_RESULT_FILE``):

- ``prepare``: the harness's own prepare.py writes it (its evaluation scores logits itself, probes
  causality and reports tampering); the wrapper adds its report (``guard``: mode, optimizer steps
  before the evaluation, ``first_step_s``, calls, ``findings``: what it saw go wrong).
- ``capture``: a prepare.py the harness did not write (an adopted autoresearch checkout), whose
  evaluate_bpb returns the score and writes nothing. The result path is taken out of the
  environment before any of the checkout's code runs; the wrapper writes the result from the
  returned value, counts the calls, reports prepare's globals that train.py replaced since import,
  and, where the model returns logits for ``model(x)`` (B, T, V), probes causality and checks that
  ``model(x, y, reduction="none")`` is the cross-entropy of those logits (karpathy/autoresearch's
  evaluate_bpb takes the loss from the model).

Exit codes: the script's own; 2 on a malformed command line.
"""

from __future__ import annotations

import json
import math
import os
import runpy
import sys
import time

RESULT_ENV = "AUTORESEARCH_RESULT_FILE"
MODES = ("prepare", "capture")
#: max |difference| of earlier logits allowed by the causality probe: float32 rounding, bf16 noise
CAUSAL_TOLERANCE_FP32, CAUSAL_TOLERANCE = 1e-3, 0.05
#: relative difference allowed between the model's loss and the cross-entropy of its logits
LOSS_TOLERANCE = 0.02
_perf = time.perf_counter


class _Watch:
    """Counters filled by the global hooks: optimizer steps and when the first one was taken
    (``perf_counter`` seconds), and forwards run with gradients enabled (the forward hook is
    registered only while evaluate_bpb runs, so training pays nothing for it)."""

    def __init__(self):
        self.steps, self.first_step_at, self.grad_forward = 0, None, 0

    def on_step(self, optimizer, args, kwargs):
        if self.first_step_at is None:
            self.first_step_at = _perf()
        self.steps += 1

    def on_forward(self, module, args):
        import torch

        if torch.is_grad_enabled():
            self.grad_forward += 1


def _checksums(model) -> list:
    """One float per parameter tensor (sum and sum of squares, float64), in order; [] when the
    model has no ``parameters()``."""
    import torch

    try:
        params = list(model.parameters())
    except Exception:
        return []
    with torch.no_grad():
        return [float(p.detach().double().sum() + p.detach().double().square().sum()) for p in params]


def _write_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.guard.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _snapshot(module) -> dict:
    """prepare's module globals at import: values of plain constants, identities of the rest."""
    out = {}
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        if isinstance(value, (int, float, str, bytes, bool, type(None), tuple)):
            out[name] = ("value", value)
        else:
            out[name] = ("id", id(value))
    return out


def _changed(module, snapshot: dict, wrapper) -> list[str]:
    """Names of prepare's globals that differ from ``snapshot`` (the wrapper itself excepted)."""
    changed = []
    for name, (kind, ref) in snapshot.items():
        value = vars(module).get(name, _changed)
        if name == "evaluate_bpb" and value is wrapper:
            continue
        if value is _changed or (kind == "value" and value != ref) or (kind == "id" and id(value) != ref):
            changed.append(f"prepare.{name}")
    return changed


def _probe(model, prepare, tokenizer) -> dict:
    """Causality and loss checks on a random (1, T) batch, where ``model(x)`` returns logits
    (1, T, V); ``{"causal": None, "probe": why}`` where it cannot run."""
    import torch
    import torch.nn.functional as F

    try:
        device = next(model.parameters()).device
        vocab = int(tokenizer.get_vocab_size()) if hasattr(tokenizer, "get_vocab_size") else int(prepare.VOCAB_SIZE)
        T = min(int(getattr(prepare, "MAX_SEQ_LEN", 256)), 256)
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, vocab, (1, T), generator=gen).to(device)
        y = torch.randint(0, vocab, (1, T), generator=gen).to(device)
        x2 = x.clone()
        half = T // 2
        x2[:, half:] = (x2[:, half:] + 1) % vocab
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), ctx:
                a, b = model(x), model(x2)
                if not torch.is_tensor(a) or a.dim() != 3 or tuple(a.shape[:2]) != (1, T):
                    return {"causal": None, "probe": "model(x) does not return logits (B, T, V)"}
                loss = model(x, y, reduction="none")
        finally:
            model.train(was_training)
    except Exception as exc:  # the probe is best effort: an unfamiliar model API is not a violation
        return {"causal": None, "probe": f"not probed: {type(exc).__name__}: {exc}"[:200]}
    tolerance = CAUSAL_TOLERANCE_FP32 if a.dtype in (torch.float32, torch.float64) else CAUSAL_TOLERANCE
    diff = float((a[:, :half].float() - b[:, :half].float()).abs().max())
    out = {"causal": diff <= tolerance, "causality_max_diff": diff, "probe": "ok"}
    if torch.is_tensor(loss) and loss.numel() == T:
        own = F.cross_entropy(a.float().flatten(0, 1), y.flatten(), reduction="none")
        rel = float((loss.float().flatten() - own).abs().max() / own.abs().max().clamp_min(1e-6))
        out["loss_matches_logits"] = rel <= LOSS_TOLERANCE
        out["loss_max_rel_diff"] = rel
    return out


class _OnImport:
    """A ``sys.meta_path`` finder that calls ``on_load(module)`` right after the top-level module
    ``name`` has been executed by its first import (then leaves ``sys.meta_path``): prepare is
    wrapped when the script imports it, at the moment it would have been imported anyway."""

    def __init__(self, name: str, on_load):
        self.name, self.on_load = name, on_load

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        from importlib.machinery import PathFinder

        sys.meta_path.remove(self)
        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, on_load = spec.loader.exec_module, self.on_load

        def exec_and_wrap(module):
            exec_module(module)
            on_load(module)

        spec.loader.exec_module = exec_and_wrap
        return spec


def install(mode: str, script_dir: str) -> None:
    """When the script imports ``prepare`` from ``script_dir``: register the optimizer hook and wrap
    ``prepare.evaluate_bpb`` (see the module docstring); a script that never
    imports it runs unwatched (and, in ``capture`` mode, unscored).

    Raises:
        ImportError: torch cannot be imported (the run then crashes with that error).
    """
    result_path = os.environ.pop(RESULT_ENV, None) if mode == "capture" else os.environ.get(RESULT_ENV)
    watch = _Watch()
    sys.path.insert(0, script_dir)
    sys.meta_path.insert(0, _OnImport("prepare", lambda module: _wrap(module, mode, result_path, watch)))


def _wrap(prepare, mode: str, result_path, watch: "_Watch") -> None:
    """Register the optimizer step hook (torch is imported by then: prepare imports it, and a
    script that never imports prepare pays nothing for the guard) and replace
    ``prepare.evaluate_bpb`` with the watching wrapper (nothing when it has none)."""
    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    register_optimizer_step_pre_hook(watch.on_step)

    original = getattr(prepare, "evaluate_bpb", None)
    if not callable(original):
        return
    snapshot = _snapshot(prepare) if mode == "capture" else {}
    calls = 0

    def evaluate_bpb(model, tokenizer, batch_size, *args, **kwargs):
        nonlocal calls
        calls += 1
        t0 = _perf()
        first_step_s = None if watch.first_step_at is None else t0 - watch.first_step_at
        steps_before, forwards_before, before = watch.steps, watch.grad_forward, _checksums(model)
        hook = register_module_forward_pre_hook(watch.on_forward)
        try:
            value = original(model, tokenizer, batch_size, *args, **kwargs)
        finally:
            hook.remove()
        eval_s = _perf() - t0
        findings = []
        if watch.steps > steps_before:
            findings.append(f"{watch.steps - steps_before} optimizer steps during evaluate_bpb")
        if watch.grad_forward > forwards_before:
            findings.append("a module ran forward with gradients enabled during evaluate_bpb")
        if _checksums(model) != before:
            findings.append("the model's parameters changed during evaluate_bpb")
        guard = {"mode": mode, "optimizer_steps": steps_before, "first_step_s": first_step_s,
                 "eval_calls": calls, "findings": findings}
        if result_path:
            if mode == "capture":
                data = _captured(value, model, tokenizer, prepare, snapshot, evaluate_bpb, calls, eval_s,
                                 first_step_s, steps_before)
            else:
                try:
                    with open(result_path, encoding="utf-8") as fh:
                        data = json.load(fh)
                except (OSError, ValueError):
                    data = None
            if isinstance(data, dict):
                findings += data.pop("findings", [])
                data["guard"] = guard
                _write_atomic(result_path, data)
        return value

    prepare.evaluate_bpb = evaluate_bpb
    own = getattr(prepare, "_OWN", None)
    if isinstance(own, dict) and own.get("evaluate_bpb") is original:
        own["evaluate_bpb"] = evaluate_bpb  # the harness's prepare.py checks its own functions


def _captured(value, model, tokenizer, prepare, snapshot, wrapper, calls, eval_s, first_step_s, steps) -> dict:
    """The result file of a capture-mode run (keys as the harness's prepare.py writes them)."""
    import torch

    try:
        bpb = float(value)
    except (TypeError, ValueError):
        bpb = float("nan")
    try:
        device = next(model.parameters()).device
        num_params = sum(p.numel() for p in model.parameters())
    except Exception:
        device, num_params = None, None
    cuda = device is not None and device.type == "cuda"
    probe = _probe(model, prepare, tokenizer)
    tampered = _changed(prepare, snapshot, wrapper)
    findings = []
    if probe.get("loss_matches_logits") is False:
        findings.append(f"the model's loss is not the cross-entropy of its logits "
                        f"(max relative difference {probe['loss_max_rel_diff']:.3g})")
    return {"val_bpb": bpb if math.isfinite(bpb) and bpb > 0 else None, "eval_calls": calls, "eval_s": eval_s,
            "train_s": first_step_s, "causal": probe.get("causal"),
            "causality_max_diff": probe.get("causality_max_diff"), "probe": probe.get("probe"),
            "loss_matches_logits": probe.get("loss_matches_logits"), "loss_max_rel_diff": probe.get("loss_max_rel_diff"),
            "tampered": tampered, "device": str(device), "num_params": num_params,
            "peak_vram_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
            "device_name": torch.cuda.get_device_name(device) if cuda else str(device),
            "optimizer_steps": steps, "findings": findings}


def main(argv: list[str]) -> int:
    """``MODE -- SCRIPT [ARGS...]``: install the guard, then run SCRIPT as ``__main__`` with
    ``sys.argv = [SCRIPT, ARGS...]`` and its folder first on ``sys.path`` (as ``python SCRIPT``)."""
    if len(argv) < 3 or argv[0] not in MODES or argv[1] != "--":
        print(f"usage: evalguard.py {{{'|'.join(MODES)}}} -- SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    mode, script = argv[0], argv[2]
    script_dir = os.path.dirname(os.path.abspath(script))
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    install(mode, script_dir)
    sys.argv = [script, *argv[3:]]
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
