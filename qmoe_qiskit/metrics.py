"""Scores, distances and likelihoods, one module for every experiment: classification scores,
mean ± std over seeds or repetitions, distances between outcome distributions, the shot-noise
floor of a distance, bootstrap intervals, one-parameter maximum-likelihood fits with
profile-likelihood intervals, and the tests a fit is judged by: goodness of fit of counts
(deviance and Pearson statistics over pooled cells), likelihood-ratio tests, information
criteria and the jackknife over independent repeats."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.optimize import brentq, minimize_scalar
from sklearn.metrics import f1_score

__all__ = ["accuracy", "classification_scores", "summarize", "tvd", "mean_tvd", "routing_stats",
           "hellinger_distance", "log_likelihood", "shot_noise_tvd", "bootstrap_mean",
           "ProfileFit", "profile_fit", "GoodnessOfFit", "goodness_of_fit", "likelihood_ratio",
           "information_criteria", "jackknife", "paired_difference", "holm", "MIN_EXPECTED"]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(y_pred) == np.asarray(y_true)))


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1."""
    return {"accuracy": accuracy(y_true, y_pred),
            "f1": float(f1_score(y_true, y_pred, average="macro"))}


def summarize(values: Sequence[float], *, per: str = "per_seed") -> dict[str, Any]:
    """``{"mean", "std", per: values}`` with the sample standard deviation (ddof=1; 0 for a
    single value)."""
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, per: [float(v) for v in arr]}


def routing_stats(gates: np.ndarray) -> dict[str, Any]:
    """How a mixture spreads inputs over its experts, from its gates ``(inputs, experts)``:
    ``load`` (the share of inputs whose largest gate is each expert's), ``mean_gate``, the
    load's ``entropy`` normalised by log(experts) (1: uniform, 0: one expert takes all),
    ``dead_fraction`` (the share of experts no input is routed to) and ``dropped_fraction``
    (the share of inputs an expert capacity routed nowhere)."""
    gates = np.asarray(gates, dtype=float)
    experts = gates.shape[1]
    routed = gates.sum(axis=1) > 0  # an input dropped by an expert capacity has no gate
    load = np.bincount(gates[routed].argmax(axis=1), minlength=experts) / len(gates)
    share = load[load > 0] / max(load.sum(), 1e-300)
    entropy = float(-(share * np.log(share)).sum() / np.log(experts))
    return {"load": load.tolist(), "mean_gate": gates.mean(axis=0).tolist(),
            "entropy": entropy, "dead_fraction": float(np.mean(load == 0)),
            "dropped_fraction": float(np.mean(~routed))}


def wilson_interval(successes: int, trials: int, *, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion at ``level`` (inside [0, 1] by construction;
    ``(0, 1)`` for no trials)."""
    from scipy.stats import norm

    if trials <= 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends: the
    hi = 1.0 if successes == trials else min(1.0, centre + half)  # rounding misses them
    return float(lo), float(hi)


def tvd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation distance ``½ Σ_k |p_k − q_k|`` between the rows of ``p`` and ``q``."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(axis=-1)


def mean_tvd(p: np.ndarray, q: np.ndarray) -> float:
    """The TVD of each row pair, averaged over rows (samples)."""
    return float(tvd(p, q).mean())


def hellinger_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hellinger distance ``H = sqrt(1 − Σ_k sqrt(p_k q_k))`` (in [0, 1]) between the rows of
    ``p`` and ``q``. Not ``qiskit.quantum_info.hellinger_fidelity``, which is the classical
    fidelity ``(Σ_k sqrt(p_k q_k))² = (1 − H²)²``."""
    overlap = np.sqrt(np.clip(np.asarray(p), 0, None) * np.clip(np.asarray(q), 0, None))
    return np.sqrt(np.clip(1.0 - overlap.sum(axis=-1), 0.0, None))


def log_likelihood(counts: np.ndarray, probabilities: np.ndarray, *,
                   floor: float = 1e-12) -> float:
    """Multinomial log-likelihood ``Σ n_k log p_k`` of outcome ``counts`` under
    ``probabilities`` (same shape), summed over rows; probabilities below ``floor`` count as
    ``floor``, so one impossible outcome costs much but not infinitely much. The multinomial
    coefficient is left out: it does not depend on the model."""
    p = np.clip(np.asarray(probabilities, dtype=float), floor, None)
    return float((np.asarray(counts) * np.log(p)).sum())


def shot_noise_tvd(probabilities: np.ndarray, shots: int, *, repetitions: int = 200,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Each row's expected TVD between ``probabilities`` and the frequencies of ``shots``
    samples drawn from it (Monte Carlo over ``repetitions`` draws): the distance a perfect
    model shows from finite-shot data. Shape ``(rows,)``."""
    rng = np.random.default_rng(0) if rng is None else rng
    probs = np.clip(np.asarray(probabilities, dtype=float), 0, None)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    out = np.empty(len(probs))
    for i, row in enumerate(probs):
        draws = rng.multinomial(shots, row, size=repetitions) / shots
        out[i] = tvd(draws, row).mean()
    return out


def bootstrap_mean(values: np.ndarray, *, resamples: int = 2000, level: float = 0.95,
                   rng: np.random.Generator | None = None) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``values`` (resampling the values)."""
    rng = np.random.default_rng(0) if rng is None else rng
    values = np.asarray(values, dtype=float)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


CHI2_95 = 3.841458820694124  # the 95% quantile of chi-squared with one degree of freedom


@dataclass(frozen=True)
class ProfileFit:
    """A one-parameter maximum-likelihood fit: the estimate, its 95% profile-likelihood
    interval (``None`` for a side the searched range does not close), the log-likelihood at
    the estimate, the profile evaluated on the grid, and whether the maximum was found inside
    the range (if not, ``estimate`` is the grid optimum and ``message`` says so)."""

    estimate: float
    interval: tuple[float | None, float | None]
    log_likelihood: float
    grid: list[float]
    profile: list[float]
    converged: bool
    message: str = ""
    near: list[float] = ()  # points around the estimate (twice the interval's width) ...
    near_profile: list[float] = ()  # ... and the log-likelihood there: the profile to plot


def profile_fit(loglik: Callable[[float], float], grid: Sequence[float], *,
                name: str = "parameter", tolerance: float = 1e-4,
                dispersion: float = 1.0) -> ProfileFit:
    """Maximise ``loglik`` over ``[grid[0], grid[-1]]``: the best grid point, refined by a
    bounded 1-D search between its neighbours; the 95% interval is where
    ``2 (max − loglik) <= 3.84 × dispersion`` (root-found between grid points; a
    ``dispersion`` above 1 is the quasi-likelihood widening for over-dispersed counts). A
    maximum on the grid's upper edge is not converged (the likelihood may still rise beyond
    it); one on the lower edge is a valid estimate at the bound."""
    grid = np.asarray(sorted(set(float(g) for g in grid)))
    values = np.array([loglik(g) for g in grid])
    if not np.all(np.isfinite(values)):
        bad = grid[~np.isfinite(values)]
        raise ValueError(f"the log-likelihood of {name} is not finite at {bad.tolist()}")
    i = int(np.argmax(values))
    profile = dict(zip(grid.tolist(), values.tolist()))
    if i == len(grid) - 1:
        return ProfileFit(float(grid[i]), (None, None), float(values[i]), grid.tolist(),
                          values.tolist(), False,
                          f"the likelihood of {name} still rises at the searched range's edge "
                          f"{grid[i]:g}: the grid optimum is reported, not a maximum")
    lo, hi = grid[max(i - 1, 0)], grid[i + 1]
    best, best_value = float(grid[i]), float(values[i])
    if hi > lo:
        found = minimize_scalar(lambda x: -loglik(x), bounds=(lo, hi), method="bounded",
                                options={"xatol": tolerance * max(hi, 1e-12)})
        if found.success and -found.fun > best_value:
            best, best_value = float(found.x), float(-found.fun)
    threshold = best_value - CHI2_95 * dispersion / 2
    gap = lambda x: loglik(x) - threshold  # noqa: E731

    def side(points: np.ndarray) -> float | None:
        """Where the profile crosses the threshold going from the estimate through
        ``points``; ``None`` if it never does; the bound itself if it stays above."""
        previous = best
        for x in points:
            if profile[float(x)] < threshold:
                return float(brentq(gap, min(previous, x), max(previous, x),
                                    xtol=tolerance * max(abs(x), 1e-12)))
            previous = x
        return None

    lower = side(grid[grid < best][::-1])
    if lower is None and grid[0] == 0:
        lower = 0.0  # the profile stays within the interval down to the bound
    upper = side(grid[grid > best])
    left = best - 2 * (best - (lower if lower is not None else grid[0]))
    right = best + 2 * ((upper if upper is not None else grid[-1]) - best)
    near = np.linspace(max(left, grid[0]), min(right, grid[-1]), 21)
    return ProfileFit(best, (lower, upper), best_value, grid.tolist(), values.tolist(), True,
                      "" if upper is not None else
                      f"the 95% interval of {name} is not closed within the searched range",
                      near.tolist(), [float(loglik(x)) for x in near])


# ------------------------------------------------------------------ tests of a fit
MIN_EXPECTED = 5.0  # expected counts per cell below which cells are pooled (the chi2 rule)


@dataclass(frozen=True)
class GoodnessOfFit:
    """How well a model's distributions explain outcome counts: the deviance ``G² = 2 Σ n
    log(n / m)`` and Pearson's ``X² = Σ (n − m)² / m`` over cells pooled so that every
    expected count ``m`` is at least :data:`MIN_EXPECTED`, with ``dof`` = Σ over rows of
    (pooled cells − 1) minus the fitted parameters. ``p_value`` is that of the deviance
    against χ²(dof), ``pearson_p_value`` that of X²; ``dispersion`` is ``X² / dof`` (about 1
    for a model that fits; above 1 for systematic misfit or over-dispersed counts, such as
    drift between shots)."""

    deviance: float
    pearson: float
    dof: int
    p_value: float
    pearson_p_value: float
    dispersion: float
    parameters: int
    cells: int  # cells after pooling, over all rows
    pooled: int  # cells merged into others

    def to_dict(self) -> dict[str, Any]:
        return {"deviance": self.deviance, "pearson": self.pearson, "dof": self.dof,
                "p_value": self.p_value, "pearson_p_value": self.pearson_p_value,
                "dispersion": self.dispersion,
                "parameters": self.parameters, "cells": self.cells, "pooled": self.pooled}


def _pooled(counts: np.ndarray, expected: np.ndarray, least: float) -> tuple[list, list]:
    """One row's cells merged, smallest expected first, until every merged cell expects at
    least ``least`` counts (or one cell is left)."""
    order = np.argsort(expected, kind="stable")
    groups = [[float(counts[i]), float(expected[i])] for i in order]
    while len(groups) > 1 and groups[0][1] < least:
        n, m = groups.pop(0)
        groups[0] = [groups[0][0] + n, groups[0][1] + m]
        groups.sort(key=lambda g: g[1])
    return [g[0] for g in groups], [g[1] for g in groups]


def goodness_of_fit(counts: Sequence[np.ndarray], probabilities: Sequence[np.ndarray], *,
                    parameters: int, min_expected: float = MIN_EXPECTED) -> GoodnessOfFit:
    """The :class:`GoodnessOfFit` of ``counts`` (a list of ``(rows, outcomes)`` arrays, one
    per circuit) under ``probabilities`` (same shapes), ``parameters`` of which were fitted
    to these counts."""
    deviance = pearson = 0.0
    cells = pooled = dof = 0
    for n_table, p_table in zip(counts, probabilities):
        n_table = np.asarray(n_table, dtype=float)
        p_table = np.clip(np.asarray(p_table, dtype=float), 0.0, None)
        p_table = p_table / p_table.sum(axis=1, keepdims=True)
        for n_row, p_row in zip(n_table, p_table):
            m_row = n_row.sum() * p_row
            if np.all(m_row >= min_expected):
                n, m = n_row, m_row
            else:
                n, m = (np.array(a) for a in _pooled(n_row, m_row, min_expected))
            pooled += len(n_row) - len(n)
            cells += len(n)
            dof += len(n) - 1
            seen = n > 0
            with np.errstate(divide="ignore"):
                deviance += 2 * float(np.sum(n[seen] * np.log(n[seen] / m[seen])))
                pearson += float(np.sum((n - m) ** 2 / m))
    dof -= int(parameters)
    if dof < 1:
        raise ValueError(f"no degrees of freedom left for a goodness-of-fit test ({cells} "
                         f"pooled cells, {parameters} fitted parameters)")
    p_value = float(stats.chi2.sf(deviance, dof)) if np.isfinite(deviance) else 0.0
    p_pearson = float(stats.chi2.sf(pearson, dof)) if np.isfinite(pearson) else 0.0
    return GoodnessOfFit(float(deviance), float(pearson), int(dof), p_value, p_pearson,
                         float(pearson / dof), int(parameters), int(cells), int(pooled))


def likelihood_ratio(small: float, large: float, df: int) -> tuple[float, float]:
    """The likelihood-ratio statistic ``2 (large − small)`` of a model nested in another with
    ``df`` more free parameters (log-likelihoods at their maxima), and its χ²(df) p-value."""
    statistic = max(0.0, 2.0 * (float(large) - float(small)))
    return statistic, float(stats.chi2.sf(statistic, df))


def information_criteria(loglik: float, parameters: int, observations: int) -> dict[str, float]:
    """``{"aic": −2 ℓ + 2 p, "bic": −2 ℓ + p ln n}`` (lower is preferred; only differences
    between models of the same counts mean anything)."""
    return {"aic": -2 * float(loglik) + 2 * parameters,
            "bic": -2 * float(loglik) + parameters * float(np.log(observations))}


def jackknife(estimate: float, leave_one_out: Sequence[float], *,
              level: float = 0.95) -> tuple[float, float, tuple[float, float]]:
    """The jackknife over ``n`` independent repeats: from the estimate on all of them and the
    ``n`` estimates leaving each out, ``(bias-corrected estimate, standard error, interval)``,
    the interval a Student-t one with ``n − 1`` degrees of freedom."""
    loo = np.asarray(leave_one_out, dtype=float)
    n = len(loo)
    if n < 2:
        raise ValueError("the jackknife needs at least two repeats")
    pseudo = n * float(estimate) - (n - 1) * loo
    centre = float(pseudo.mean())
    error = float(pseudo.std(ddof=1) / np.sqrt(n))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * error
    return centre, error, (centre - half, centre + half)


def paired_difference(a: Sequence[float], b: Sequence[float], *,
                      level: float = 0.95) -> dict[str, Any]:
    """The paired comparison of two scores measured on the same seeds (``a[i]`` and ``b[i]``
    on seed ``i``'s split): the mean difference ``a − b``, its sample std, the Student-t
    interval of the mean at ``level`` cut to [−1, 1] (a difference of two accuracies lies
    there, so the cut loses no coverage), and the two-sided paired t-test's p-value of "no
    difference". Where every difference is the same the t statistic is undefined, and p is
    that of the exact sign-flip test instead: 1 for a zero difference, else 2 / 2^n (only
    the observed signs and their flip reach it)."""
    if len(a) < 2 or len(a) != len(b):
        raise ValueError(f"a paired comparison needs two equal-length samples of at least 2, "
                         f"got {len(a)} and {len(b)}")
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(diff)
    mean, std = float(diff.mean()), float(diff.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / np.sqrt(n)
    if std > 0:
        p = float(2 * stats.t.sf(abs(mean) / (std / np.sqrt(n)), n - 1))
    else:
        p = 1.0 if mean == 0 else min(1.0, 2.0 / 2 ** n)
    return {"mean": mean, "std": std, "low": max(-1.0, mean - half),
            "high": min(1.0, mean + half), "p": p, "n": n, "level": level,
            "per_seed": diff.tolist()}


def holm(pvalues: Sequence[float], *, alpha: float = 0.05) -> list[bool]:
    """Holm's step-down test of a family of hypotheses at family-wise error rate ``alpha``:
    which of them it rejects. The smallest p-value is compared with alpha / m, the next with
    alpha / (m − 1), and so on, stopping at the first that is not below its bound."""
    order = np.argsort(np.asarray(pvalues, dtype=float), kind="stable")
    m = len(order)
    rejected = [False] * m
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected
