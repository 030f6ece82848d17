"""Noise hypotheses: what ``qmoe compare`` sets against a run's counts, each one object.

A hypothesis is a gate part (a point of a tabulated gate-noise family,
:mod:`qmoe_qiskit.noise_models.families`) and a readout part (an assignment matrix per measured
qubit), with the parameters it fits to the counts by maximum likelihood:

``ideal``                  no noise (0 parameters);
``device``                 the calibrated device model (0);
``readout_only``           only the device's calibrated readout errors (0);
``depolarizing_fit``       depolarizing ε on every gate and ε symmetric readout (1);
``device_scaled_fit``      the device model with every rate times one k (1);
``device_two_scale_fit``   gates times k_g, readout times k_r (2);
``device_readout_fit``     gates times k_g, each measured qubit's P(1|0), P(0|1) free (1 + 2 per
                           qubit).

One-parameter fits and the gate scale of the others are profile-likelihood fits
(:func:`~qmoe_qiskit.metrics.profile_fit`: 95% intervals where 2 Δℓ ≤ 3.84, times the
dispersion where the counts are over-dispersed); readout parameters are profiled out inside,
where they cost no simulation. The per-qubit readout fit gives Wald intervals from the observed
information, clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from ..errors import ConfigError
from ..metrics import (
    GoodnessOfFit,
    ProfileFit,
    goodness_of_fit,
    jackknife,
    likelihood_ratio,
    log_likelihood,
    profile_fit,
)
from ..noise_models.families import GateTable
from ..noise_models.primitives import apply_readout

__all__ = ["Hypothesis", "Fit", "FitData", "Drift", "drift", "fit_and_test", "HYPOTHESES",
           "hypothesis", "TITLES", "DEVICE_FAMILY", "DEPOLARIZING_FAMILY", "readout_applied",
           "readout_sensitive", "NO_READOUT"]

DEVICE_FAMILY, DEPOLARIZING_FAMILY = "device", "depolarizing"
GRID_POINTS = 24
CHI2_2_95 = 5.991464547107979  # the joint region of two parameters
NO_READOUT = ("a two-scale fit needs readout-sensitive outcomes, and the calibration gives the "
              "measured qubits no readout error; leave device_two_scale_fit out of --models")


@dataclass(frozen=True)
class FitData:
    """What a hypothesis is fitted to: per circuit, the counts ``(rows, outcomes)`` and the
    physical qubit of each clbit, and the calibration's readout errors of those qubits."""

    counts: list[np.ndarray]
    measured: list[list[int]]
    calibrated: dict[int, tuple[float, float]]  # qubit -> (P(1|0), P(0|1))

    def with_counts(self, counts: list[np.ndarray]) -> "FitData":
        return replace(self, counts=counts)

    @property
    def qubits(self) -> list[int]:
        return sorted({q for m in self.measured for q in m})


@dataclass(frozen=True)
class Fit:
    """A hypothesis fitted to counts: its parameter estimates and 95% intervals, the
    log-likelihood at the estimate, its distributions per circuit with and without its
    readout part, and (set by whoever tests it) its goodness of fit."""

    name: str
    free: int  # fitted parameters
    values: dict[str, float]
    intervals: dict[str, tuple[float | None, float | None]]
    converged: bool
    message: str
    log_likelihood: float
    gate_value: float
    readout: dict[int, tuple[float, float]]
    probabilities: list[np.ndarray]
    gate_probabilities: list[np.ndarray]  # the same without readout errors
    profiles: dict[str, ProfileFit] = field(default_factory=dict)
    gof: GoodnessOfFit | None = None
    dispersion: float = 1.0  # the quasi-likelihood widening its intervals carry
    extra: dict[str, Any] = field(default_factory=dict)


def readout_applied(gates: Sequence[np.ndarray], measured: Sequence[Sequence[int]],
                    errors: dict[int, tuple[float, float]]) -> list[np.ndarray]:
    """Gate-only distributions pushed through each measured qubit's ``(P(1|0), P(0|1))``."""
    return [apply_readout(g, [_matrix(*errors[q]) if q in errors else None for q in m])
            for g, m in zip(gates, measured)]


def _matrix(p10: float, p01: float) -> np.ndarray:
    return np.array([[1 - p10, p10], [p01, 1 - p01]])


def total_loglik(counts: Sequence[np.ndarray], probabilities: Sequence[np.ndarray]) -> float:
    return sum(log_likelihood(n, p) for n, p in zip(counts, probabilities))


def lattice_grid(table: GateTable, low: float, high: float) -> list[float]:
    """0 and about :data:`GRID_POINTS` geometric points in ``[low, high]``, each moved to the
    table's lattice (never above ``high``)."""
    high = min(high, table.top)
    points = {0.0}
    for x in np.geomspace(low, high, GRID_POINTS):
        snapped = table.snap(x)
        points.add(snapped if snapped <= high else table.snap(snapped / 1.03))
    return sorted(points)


class Hypothesis:
    """A noise hypothesis (see the module docstring)."""

    name: str
    title: str
    family: str = DEVICE_FAMILY

    def fit(self, table: GateTable, data: FitData, *, dispersion: float = 1.0) -> Fit:
        raise NotImplementedError

    def _fit(self, table, data, gate_value, readout, free, values=None, intervals=None,
             profiles=None, converged=True, message="", dispersion=1.0, extra=None) -> Fit:
        gates = table(gate_value)
        probs = readout_applied(gates, data.measured, readout)
        return Fit(self.name, free, values or {}, intervals or {}, converged, message,
                   total_loglik(data.counts, probs), float(gate_value), dict(readout), probs,
                   gates, profiles or {}, dispersion=dispersion, extra=extra or {})


@dataclass(frozen=True)
class Fixed(Hypothesis):
    """No free parameter: the gate family at ``gate_value``, readout calibrated or none."""

    name: str
    title: str
    gate_value: float
    calibrated_readout: bool

    def fit(self, table, data, *, dispersion=1.0) -> Fit:
        readout = data.calibrated if self.calibrated_readout else {}
        return self._fit(table, data, self.gate_value, readout, 0)


def _scaled(errors: dict[int, tuple[float, float]], k: float) -> dict[int, tuple]:
    return {q: (p10 * k, p01 * k) for q, (p10, p01) in errors.items()}


def readout_sensitive(errors: dict[int, tuple[float, float]]) -> bool:
    """Whether any measured qubit has a calibrated readout error for a readout scale to act on."""
    return any(max(pair) > 0 for pair in errors.values())


def _readout_limit(errors: dict[int, tuple[float, float]]) -> float:
    worst = max((max(pair) for pair in errors.values()), default=0.0)
    return 1.0 / worst if worst > 0 else np.inf


def _profile_values(fit: ProfileFit, name: str) -> tuple[dict, dict]:
    return {name: fit.estimate}, {name: tuple(fit.interval)}


@dataclass(frozen=True)
class Scaled(Hypothesis):
    """The device model times one k: gates (the table) and the calibrated readout."""

    name: str = "device_scaled_fit"
    title: str = "device × k fitted"

    def fit(self, table, data, *, dispersion=1.0) -> Fit:
        top = min(table.top, _readout_limit(data.calibrated))
        ll = lambda k: total_loglik(data.counts, readout_applied(  # noqa: E731
            table(k), data.measured, _scaled(data.calibrated, k)))
        prof = profile_fit(ll, lattice_grid(table, 0.02, top), name="scale",
                           dispersion=dispersion)
        values, intervals = _profile_values(prof, "scale")
        return self._fit(table, data, prof.estimate, _scaled(data.calibrated, prof.estimate), 1,
                         values, intervals, {"scale": prof}, prof.converged, prof.message,
                         dispersion)


@dataclass(frozen=True)
class Depolarizing(Hypothesis):
    """Depolarizing ε after every gate (the table) and ε symmetric readout."""

    name: str = "depolarizing_fit"
    title: str = "depolarizing, ε fitted"
    family: str = DEPOLARIZING_FAMILY

    def fit(self, table, data, *, dispersion=1.0) -> Fit:
        sym = lambda eps: {q: (eps, eps) for q in data.qubits}  # noqa: E731
        ll = lambda eps: total_loglik(data.counts, readout_applied(  # noqa: E731
            table(eps), data.measured, sym(eps)))
        prof = profile_fit(ll, lattice_grid(table, 1e-4, table.top), name="epsilon",
                           dispersion=dispersion)
        values, intervals = _profile_values(prof, "epsilon")
        return self._fit(table, data, prof.estimate, sym(prof.estimate), 1, values, intervals,
                         {"epsilon": prof}, prof.converged, prof.message, dispersion)


@dataclass(frozen=True)
class TwoScale(Hypothesis):
    """The device's gates times k_g and its calibrated readout times k_r."""

    name: str = "device_two_scale_fit"
    title: str = "device, gates × k_g, readout × k_r"

    def fit(self, table, data, *, dispersion=1.0) -> Fit:
        if not readout_sensitive(data.calibrated):
            raise ConfigError(NO_READOUT)
        r_top = min(_readout_limit(data.calibrated), 1e3)

        def on(gates: list[np.ndarray], kr: float) -> float:
            return total_loglik(data.counts, readout_applied(
                gates, data.measured, _scaled(data.calibrated, kr)))

        def at(kg: float, kr: float) -> float:
            return on(table(kg), kr)

        def best_readout(kg: float) -> tuple[float, float]:
            gates = table(kg)
            found = minimize_scalar(lambda kr: -on(gates, kr), bounds=(0.0, r_top),
                                    method="bounded", options={"xatol": 1e-6})
            return float(found.x), float(-found.fun)

        gate = profile_fit(lambda kg: best_readout(kg)[1], lattice_grid(table, 0.02, table.top),
                           name="gate scale", dispersion=dispersion)
        kg = gate.estimate
        kr, _ = best_readout(kg)
        # k_g inside the joint region stays within the gate profile's own neighbourhood (twice
        # its interval on either side), whose lattice points that profile already evaluated
        span = (gate.near[0], gate.near[-1]) if len(gate.near) else (0.0, table.top)

        def best_gates(kr: float) -> float:
            found = minimize_scalar(lambda g: -at(g, kr), bounds=span, method="bounded",
                                    options={"xatol": 1e-5 * max(kg, 1e-3)})
            return float(-found.fun)

        readout_grid = sorted({0.0, *np.geomspace(0.02, r_top, GRID_POINTS).tolist(), kr})
        read = profile_fit(best_gates, readout_grid, name="readout scale", dispersion=dispersion)
        values = {"gate_scale": kg, "readout_scale": kr}
        intervals = {"gate_scale": tuple(gate.interval), "readout_scale": tuple(read.interval)}
        region = _joint_region(at, kg, kr, gate.interval, read.interval, table.top, r_top,
                               dispersion)
        message = "; ".join(m for m in (gate.message, read.message) if m)
        return self._fit(table, data, kg, _scaled(data.calibrated, kr), 2, values, intervals,
                         {"gate_scale": gate, "readout_scale": read},
                         gate.converged and read.converged, message, dispersion,
                         {"joint_region": region})


def _joint_region(at, kg, kr, gate_ci, read_ci, g_top, r_top, dispersion: float,
                  points: int = 31) -> dict:
    """2 (ℓ̂ − ℓ) on a grid around the estimate, for the joint 95% region (≤ 5.99 times the
    dispersion)."""
    def axis(centre, ci, top):
        lo = ci[0] if ci[0] is not None else 0.0
        hi = ci[1] if ci[1] is not None else top
        width = max(hi - lo, 1e-6)
        return np.linspace(max(0.0, centre - 2.5 * width), min(top, centre + 2.5 * width),
                           points)

    g_axis, r_axis = axis(kg, gate_ci, g_top), axis(kr, read_ci, r_top)
    best = at(kg, kr)
    deficit = [[max(0.0, 2 * (best - at(g, r))) for r in r_axis] for g in g_axis]
    return {"gate_scale": g_axis.tolist(), "readout_scale": r_axis.tolist(),
            "deficit": deficit, "threshold": CHI2_2_95 * dispersion}


@dataclass(frozen=True)
class FreeReadout(Hypothesis):
    """The device's gates times k_g, and each measured qubit's P(1|0), P(0|1) free."""

    name: str = "device_readout_fit"
    title: str = "device gates × k_g, readout per qubit fitted"

    def fit(self, table, data, *, dispersion=1.0) -> Fit:
        qubits = data.qubits
        start = np.array([min(v, 0.4) for q in qubits for v in data.calibrated.get(q, (0, 0))])
        bounds = [(0.0, 0.5)] * len(start)
        memo = {"x": start}

        def errors(x) -> dict:
            return {q: (float(x[2 * i]), float(x[2 * i + 1])) for i, q in enumerate(qubits)}

        def ll(gates, x) -> float:
            return total_loglik(data.counts, readout_applied(gates, data.measured, errors(x)))

        def best(kg: float) -> float:
            gates = table(kg)
            found = minimize(lambda x: -ll(gates, x), memo["x"], method="L-BFGS-B",
                             bounds=bounds, options={"ftol": 1e-13, "gtol": 1e-9})
            memo["x"] = found.x
            return float(-found.fun)

        gate = profile_fit(best, lattice_grid(table, 0.02, table.top), name="gate scale",
                           dispersion=dispersion)
        kg = gate.estimate
        best(kg)
        x = memo["x"]
        covariance = _covariance(lambda v: ll(table(max(v[0], 0.0)), v[1:]),
                                 np.concatenate([[kg], x]))
        per_qubit = {}
        for i, q in enumerate(qubits):
            row = {}
            for j, key in ((2 * i, "p10"), (2 * i + 1, "p01")):
                se = None if covariance is None else float(
                    np.sqrt(max(covariance[1 + j, 1 + j], 0.0) * dispersion))
                ci = (None, None) if se is None else (max(0.0, x[j] - 1.96 * se),
                                                      min(1.0, x[j] + 1.96 * se))
                row.update({key: float(x[j]), f"{key}_se": se, f"{key}_ci": list(ci)})
            per_qubit[q] = row
        extra = {"readout": per_qubit, "covariance": None if covariance is None else
                 (covariance[1:, 1:] * dispersion).tolist(),
                 "identifiable": covariance is not None}
        return self._fit(table, data, kg, errors(x), 1 + len(x), {"gate_scale": kg},
                         {"gate_scale": tuple(gate.interval)}, {"gate_scale": gate},
                         gate.converged, gate.message, dispersion, extra)


def _covariance(loglik, x: np.ndarray) -> np.ndarray | None:
    """The inverse observed information at the maximum ``x`` (central differences), or
    ``None`` where it is not positive definite (a parameter the counts do not identify)."""
    n = len(x)
    steps = np.maximum(1e-4 * np.abs(x), 1e-5)
    hessian = np.empty((n, n))

    def f(i, si, j, sj):
        y = x.copy()
        y[i] += si * steps[i]
        y[j] += sj * steps[j]
        return loglik(np.maximum(y, 0.0))

    for i in range(n):
        for j in range(i, n):
            value = (f(i, 1, j, 1) - f(i, 1, j, -1) - f(i, -1, j, 1) + f(i, -1, j, -1)) / (
                4 * steps[i] * steps[j])
            hessian[i, j] = hessian[j, i] = value
    information = -hessian
    try:
        np.linalg.cholesky(information)
    except np.linalg.LinAlgError:
        return None
    return np.linalg.inv(information)


def fit_and_test(chosen: Hypothesis, table: GateTable, data: FitData, *,
                 alpha: float) -> Fit:
    """``chosen`` fitted to ``data`` with its goodness of fit set; refitted with intervals
    widened by the dispersion where its Pearson X² says the counts are over-dispersed for it
    at level ``alpha``."""
    fit = chosen.fit(table, data)
    gof = goodness_of_fit(data.counts, fit.probabilities, parameters=fit.free)
    if fit.free and gof.pearson_p_value < alpha and gof.dispersion > 1:
        fit = chosen.fit(table, data, dispersion=gof.dispersion)
    return replace(fit, gof=gof)


HYPOTHESES: tuple[Hypothesis, ...] = (
    Fixed("ideal", "ideal (no noise)", 0.0, False),
    Fixed("device", "device (calibrated)", 1.0, True),
    Depolarizing(),
    Scaled(),
    Fixed("readout_only", "readout errors only", 0.0, True),
    TwoScale(),
    FreeReadout(),
)
TITLES = {h.name: h.title for h in HYPOTHESES}


def hypothesis(name: str) -> Hypothesis:
    for h in HYPOTHESES:
        if h.name == name:
            return h
    raise ConfigError(f"unknown noise model {name!r}; valid: "
                      f"{', '.join(h.name for h in HYPOTHESES)}")


@dataclass(frozen=True)
class Drift:
    """One hypothesis (the device × k) fitted to each repeat of a run apart: the spread of k
    between repeats, the likelihood-ratio test that one k serves every repeat (no drift), and
    the jackknife over repeats, whose interval is the one to quote for the long-run k when the
    device drifts between jobs."""

    parameter: str
    repeat_values: list[float]
    repeat_intervals: list[tuple[float | None, float | None]]
    pooled: float
    spread: float  # sample standard deviation of the repeats' estimates
    excess_spread: float  # beyond what each repeat's own uncertainty explains (>= 0)
    statistic: float
    dof: int
    p_value: float
    jackknife: float
    jackknife_se: float
    jackknife_interval: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "repeats": len(self.repeat_values),
                "repeat_scales": self.repeat_values,
                "repeat_scale_cis": [list(ci) for ci in self.repeat_intervals],
                "pooled_scale": self.pooled, "repeat_scale_sd": self.spread,
                "between_repeat_sd": self.excess_spread, "statistic": self.statistic,
                "dof": self.dof, "p_value": self.p_value, "jackknife_scale": self.jackknife,
                "jackknife_se": self.jackknife_se,
                "jackknife_scale_ci": list(self.jackknife_interval)}


def drift(chosen: Hypothesis, table: GateTable, data: FitData,
          repeats: Sequence[Sequence[np.ndarray]], pooled: Fit) -> Drift:
    """:class:`Drift` of ``chosen`` (a one-parameter hypothesis) over ``repeats`` (each a
    list of counts per circuit), ``pooled`` its fit to their sum."""
    [parameter] = pooled.values
    fits = [chosen.fit(table, data.with_counts(list(counts))) for counts in repeats]
    total = [sum(r[c] for r in repeats) for c in range(len(repeats[0]))]
    leave_out = [chosen.fit(table, data.with_counts([t - r[c] for c, t in enumerate(total)]))
                 for r in repeats]
    values = [f.values[parameter] for f in fits]
    at_pooled = sum(total_loglik(counts, pooled.probabilities) for counts in repeats)
    statistic, p_value = likelihood_ratio(at_pooled, sum(f.log_likelihood for f in fits),
                                          len(repeats) - 1)
    errors = [((ci[1] - ci[0]) / (2 * 1.96)) if None not in ci else np.nan
              for ci in (f.intervals[parameter] for f in fits)]
    spread = float(np.std(values, ddof=1))
    excess = float(np.sqrt(max(0.0, spread ** 2 - np.nanmean(np.square(errors)))))
    centre, se, interval = jackknife(pooled.values[parameter],
                                     [f.values[parameter] for f in leave_out])
    return Drift(parameter, values, [tuple(f.intervals[parameter]) for f in fits],
                 pooled.values[parameter], spread, excess, statistic, len(repeats) - 1, p_value,
                 centre, se, interval)
