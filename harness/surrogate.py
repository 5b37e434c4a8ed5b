"""Pooled evidence for a keep: a Gaussian-process model of val_bpb over the knobs.

A candidate that changes only knob values (same code as the best, :func:`harness.optimiser.skeleton`)
is one point of a smooth function that every other knob variant of that code has also measured.
The t-test of :mod:`harness.decisions` uses only the candidate's own runs and the best's; this
module pools all of them: a Gaussian process (ARD Matern 5/2 kernel, scikit-learn's
``GaussianProcessRegressor``) is fitted to every scored file of that code, each file one point
at its mean val_bpb with the noise variance of a mean (``sd**2 / runs``, ``sd`` the measured
noise), and its posterior gives the difference ``f(best) - f(candidate)`` with its sd (Rasmussen
& Williams 2006, *Gaussian Processes for Machine Learning*, eq. 2.24-2.25; the incumbent judged
by the posterior, as noisy Bayesian optimisation does). A small improvement along a knob is then
estimated from the neighbouring runs as well as from repeats of one file.

Knob values are mapped to [0, 1] as the optimiser samples them (:meth:`Dimension.to_unit`: log
scale for positive sizes and rates); knobs no file changed are left out. Files that failed (no
val_bpb) and runs before the last drift are not used. Values worse than the best's mean by more
than :data:`CLIP_SD` noise sd are clipped there before the fit (output warping): otherwise the
far, bad region (a learning rate ten times off scores 0.3 bits worse) sets the model's amplitude
and smoothness, and near the best, where keeps are decided, a stationary model fitted to both is
overconfident: in ``benchmarks/yield.py`` it kept changes of knobs that do nothing at z > 3
(false-keep rate 0.116, 8 of 69 keeps, seeds 0-5 and 16-21) until the values were clipped
(0.024, 3 of 126, seeds 0-31).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

#: fewest scored files of the candidate's code before the model is trusted (ARD fits need points)
MIN_FILES = 8
#: values are clipped at the best's mean + this many noise sd before the fit (output warping)
CLIP_SD = 10.0


@dataclass(frozen=True)
class ModelEvidence:
    """The model's view of a candidate against the best.

    Attributes:
        delta: posterior mean of ``f(best) - f(candidate)``, bits per byte (> 0: the candidate is better).
        sd: posterior sd of that difference, bits per byte.
        files: scored files of the same code the model pooled (the candidate included).
        runs: scored runs behind them.
    """

    delta: float
    sd: float
    files: int
    runs: int

    @property
    def z(self) -> float:
        """``delta / sd``: the posterior probability that the candidate is better is Phi(z)."""
        return self.delta / self.sd if self.sd > 0 else math.inf if self.delta > 0 else -math.inf


def since_drift(records: list[dict]) -> list[dict]:
    """The records from the last one that recorded a drift on (that re-measure of the best
    included; older runs measured another state of the machine), or all of them."""
    last = max((i for i, r in enumerate(records) if r.get("drift")), default=0)
    return records[last:]


def model_evidence(records: list[dict], read: Callable[[str], str], best_commit: str, candidate: str,
                   vals: list[float], sd: float) -> Optional[ModelEvidence]:
    """Fit the model to the ledger plus the candidate's runs and compare the candidate with the best.

    Args:
        records: trajectory objects, oldest first (the candidate's runs not among them).
        read: ``read(commit) -> train.py text`` (:class:`harness.optimiser.GitFiles`).
        best_commit: the best's commit.
        candidate: the candidate's train.py.
        vals: the candidate's val_bpb so far (bits per byte).
        sd: the measured noise sd of one run (bits per byte, > 0).

    Returns:
        The evidence, or None when the candidate's code differs from the best's, or fewer than
        :data:`MIN_FILES` files of that code were scored, or no knob varies.

    Raises:
        OSError: the best's commit could not be read.
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    from .optimiser import knob_values, search_space, skeleton, trials

    best_text = read(best_commit)
    try:
        if skeleton(candidate) != skeleton(best_text):
            return None
        cand_params = knob_values(candidate)
    except (SyntaxError, ValueError):
        return None
    past, baseline = trials(since_drift(records), read, best_text)
    points = [(t.params, t.value, t.runs) for t in past if not t.penalised and t.params != cand_params]
    best_params = knob_values(best_text)
    if not vals or not any(p == best_params for p, _, _ in points):
        return None
    points.append((cand_params, sum(vals) / len(vals), len(vals)))
    if len(points) < MIN_FILES:
        return None
    space = search_space(baseline, tuple(p for p, _, _ in points))
    dims = [d for name, d in space.items() if len({repr(p.get(name)) for p, _, _ in points}) > 1]
    if not dims:
        return None

    def unit(params: dict) -> list[float]:
        return [d.to_unit(params.get(d.name, baseline.get(d.name, d.low))) for d in dims]

    X = np.array([unit(p) for p, _, _ in points])
    best_mean = next(v for p, v, _ in points if p == best_params)
    y = np.minimum([v for _, v, _ in points], best_mean + CLIP_SD * sd)
    scale = float(y.std()) or sd
    with threadpool_limits(1):  # small matrices; other runners may be training on these cores
        gp = _fit(X, y, np.array([sd * sd / n for _, _, n in points]) / scale ** 2)
        mean, cov = gp.predict(np.array([unit(cand_params), unit(best_params)]), return_cov=True)
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return ModelEvidence(float(mean[1] - mean[0]), math.sqrt(max(var, 1e-18)), len(points),
                         sum(n for _, _, n in points))


def _fit(X, y, alpha):
    """A fitted ``GaussianProcessRegressor``: constant x ARD Matern 5/2 (one length scale per knob,
    0.01-1000 in unit coordinates), ``alpha`` the noise variance of each point (in units of the
    normalised y), hyperparameters by maximum marginal likelihood from one start. One BLAS thread:
    the matrices are small, and other runners may be training on the same cores."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern([1.0] * X.shape[1], (1e-2, 1e3), nu=2.5)
    gp = GaussianProcessRegressor(kernel, alpha=alpha, normalize_y=True, random_state=0)
    with warnings.catch_warnings():  # a length scale at its bound is an answer here, not a problem
        warnings.simplefilter("ignore")
        return gp.fit(X, y)
