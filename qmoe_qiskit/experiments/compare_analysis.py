"""The analysis of ``qmoe compare``: the cells' fits in, a typed result out (no simulation, no
model file, no backend): a pure step, from which ``results.json``, the report and the figures
are written.

**The verdict is a test.** A model *explains* the hardware when the deviance goodness-of-fit
test of the counts under it does not reject at level ``alpha`` (:func:`~qmoe_qiskit.metrics.
goodness_of_fit`: cells pooled to expected counts of at least 5, degrees of freedom the pooled
cells minus one per row minus the fitted parameters). Where several pass, they are ranked by
AIC (BIC beside it) and the simplest within 2 of the lowest AIC is preferred; where none does,
the report says so and names the least bad (lowest AIC) with how far off it is. The mean TVD
over its shot-noise floor stays as a descriptive distance.

**Proportions.** The single-k model is nested in the two-scale one (k_g = k_r): a
likelihood-ratio test at ``alpha`` says whether the calibration's proportion of gate to readout
error is wrong. The per-qubit readout fit is tested against the run's own mthree calibration
(χ² of the differences over their joint covariance).

**Drift.** With repeats, the device × k is fitted to each repeat apart; the likelihood-ratio
test of one k for all says whether the device drifted between jobs, and the jackknife interval
over repeats is the one to quote for the long-run k.

**What mitigation leaves behind.** The router circuit's outputs (⟨Z_i⟩ or probabilities) raw
and under each technique are set against the exact model and each fitted noise model (mean
absolute difference over samples and outputs). For the runtime Estimator's techniques, the
z-scores (mitigated - ideal) / reported std are tested with χ² = Σ z² on as many degrees of
freedom as z-scores (errors taken as independent and Gaussian): rejection at ``alpha`` says the
reported stds do not cover the error left. Accuracy carries its 95% Wilson interval over the
samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from scipy import stats

from ..jobs.outcomes import by_repeat, pooled
from ..jobs.readout import ReadoutCalibration, calibration_circuits
from ..metrics import (
    accuracy,
    bootstrap_mean,
    hellinger_distance,
    information_criteria,
    likelihood_ratio,
    shot_noise_tvd,
    tvd,
    wilson_interval,
)
from ..noise_models.evaluate import gate_names
from ..noise_models.factories import calibrated_readout
from ..noise_models.relaxation import relaxation_excess
from ..transpile import measured_qubits, used_qubits
from .hypotheses import TITLES, Drift, Fit
from .run import frequencies, mitigated_tables

__all__ = ["CompareAnalysis", "ModelScore", "Verdict", "analyse"]

AIC_TIE = 2.0  # AIC differences this small do not separate two models
HELLINGER = ("H = sqrt(1 - sum_k sqrt(p_k q_k)); qiskit's hellinger_fidelity is (1 - H^2)^2")


@dataclass(frozen=True)
class ModelScore:
    """One hypothesis set against the hardware: its test, its fit and its distances."""

    name: str
    fit: Fit
    explains: bool
    aic: float
    bic: float
    mean_tvd: float
    mean_tvd_ci: tuple[float, float]
    tvd_per_sample: list[float]
    floor_tvd: float
    mean_hellinger_distance: float
    routing_agreement: float
    accuracy: float
    circuits: list[dict[str, Any]]

    @property
    def title(self) -> str:
        return TITLES[self.name]

    @property
    def tvd_over_floor(self) -> float:
        return self.mean_tvd / self.floor_tvd

    def to_dict(self) -> dict[str, Any]:
        fit = self.fit
        parameters = {}
        for name, value in fit.values.items():
            parameters[name] = value
            parameters[f"{name}_ci"] = list(fit.intervals[name])
        parameters.update(converged=fit.converged, message=fit.message,
                          interval_dispersion=fit.dispersion)
        return {"title": self.title, "parameters": fit.free, "fit": parameters,
                "gof": fit.gof.to_dict(), "explains": self.explains,
                "log_likelihood": fit.log_likelihood, "aic": self.aic, "bic": self.bic,
                "mean_tvd": self.mean_tvd, "mean_tvd_ci": list(self.mean_tvd_ci),
                "tvd_per_sample": self.tvd_per_sample, "floor_tvd": self.floor_tvd,
                "tvd_over_floor": self.tvd_over_floor,
                "mean_hellinger_distance": self.mean_hellinger_distance,
                "routing_agreement": self.routing_agreement, "accuracy": self.accuracy,
                "circuits": self.circuits}


@dataclass(frozen=True)
class Verdict:
    """The test's outcome: the models that pass at ``alpha``, the preferred one among them
    (the simplest within 2 of the lowest AIC), and the least bad (lowest AIC of all)."""

    alpha: float
    explaining: list[str]
    preferred: str | None
    least_bad: str

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "explaining": self.explaining, "preferred": self.preferred,
                "least_bad": self.least_bad,
                "rule": f"deviance goodness-of-fit test at level {self.alpha:g}; preferred: "
                        f"the fewest parameters within {AIC_TIE:g} of the lowest AIC among the "
                        f"models that pass"}


@dataclass(frozen=True)
class CompareAnalysis:
    """Everything ``qmoe compare`` concluded (see the module docstring)."""

    run: dict[str, Any]  # what the run says of itself: backend, device, calibration, ...
    shots: int  # per binding, over every repeat
    repeats: int
    samples: int
    circuits: list[str]
    used_qubits: list[int]
    basis_gates: list[str]
    hardware_accuracy: float
    hardware: np.ndarray  # the router circuit's measured frequencies (bindings, outcomes)
    hardware_router: list
    shot_noise_floor_tvd: float
    alpha: float
    models: dict[str, ModelScore]
    verdict: Verdict
    proportions: dict[str, Any] | None
    readout: list[dict[str, Any]]
    readout_check: dict[str, Any] | None
    drift: Drift | None
    device_consistency: list[dict[str, Any]]
    idle_noise: bool
    mitigation: dict[str, Any] | None
    evaluations: int
    wall_seconds: float
    mitigated_router: dict[str, Any] | None = None
    analysed_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def fit_summary(self) -> dict[str, Any]:
        """The fitted parameters of every fitted model in one block (``results.json``
        ``fit``), with their profiles."""
        out: dict[str, Any] = {"profiles": {}}
        keys = {"depolarizing_fit": ("epsilon",), "device_scaled_fit": ("scale",),
                "device_two_scale_fit": ("gate_scale", "readout_scale")}
        for model, names in keys.items():
            if model not in self.models:
                continue
            fit = self.models[model].fit
            for name in names:
                out[name] = fit.values[name]
                out[f"{name}_ci"] = list(fit.intervals[name])
                out[f"{name}_converged"] = fit.profiles[name].converged
                out[f"{name}_message"] = fit.profiles[name].message
                p = fit.profiles[name]
                out["profiles"][name] = {"grid": p.grid, "log_likelihood": p.profile,
                                         "near": p.near, "near_log_likelihood": p.near_profile}
            out[f"{model}_interval_dispersion"] = fit.dispersion
        if "device_two_scale_fit" in self.models:
            out["joint_region"] = self.models["device_two_scale_fit"].fit.extra["joint_region"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.run, "shots": self.shots, "repeats": self.repeats, "samples": self.samples,
            "circuits": self.circuits, "hardware_accuracy": self.hardware_accuracy,
            "used_qubits": self.used_qubits, "basis_gates": self.basis_gates,
            "hardware_router": self.hardware_router,
            "shot_noise_floor_tvd": self.shot_noise_floor_tvd, "alpha": self.alpha,
            "models": {n: m.to_dict() for n, m in self.models.items()},
            "verdict": self.verdict.to_dict(), "fit": self.fit_summary(),
            "proportions": self.proportions, "readout": self.readout,
            "readout_check": self.readout_check,
            "drift": None if self.drift is None else self.drift.to_dict(),
            "device_consistency": self.device_consistency, "idle_noise": self.idle_noise,
            "hellinger_formula": HELLINGER, "mitigation": self.mitigation,
            "mitigated_router": self.mitigated_router,
            "exact_evaluations": self.evaluations, "analysed_at": self.analysed_at,
            "wall_seconds": self.wall_seconds}


def analyse(recorded, families, *, alpha: float, seed: int, device, idle_noise: bool,
            seconds: float, estimated=()) -> CompareAnalysis:
    """The analysis of a run (``recorded``: its results and measurements) from the cells'
    :class:`~.compare.FamilyFits` and :class:`~.compare.EstimatedReplay`, ``device`` the
    calibration the models were built from."""
    results = recorded.results
    pubs = pooled(recorded.pubs)
    labels = np.asarray(results["labels"])
    shots = pubs[0].shots
    hardware = [frequencies(pub) for pub in pubs]
    hw_gates = np.asarray(results["router"]["distributions"])
    rng = np.random.default_rng(seed)
    observations = int(sum(pub.counts.sum() for pub in pubs))
    models: dict[str, ModelScore] = {}
    for cell in families:
        for name, fit in cell.fits.items():
            per_sample = tvd(hardware[0], fit.probabilities[0])
            criteria = information_criteria(fit.log_likelihood, fit.free, observations)
            models[name] = ModelScore(
                name=name, fit=fit, explains=bool(fit.gof.p_value >= alpha),
                aic=criteria["aic"], bic=criteria["bic"], mean_tvd=float(per_sample.mean()),
                mean_tvd_ci=bootstrap_mean(per_sample, rng=rng),
                tvd_per_sample=per_sample.tolist(),
                floor_tvd=float(shot_noise_tvd(fit.probabilities[0], shots, rng=rng).mean()),
                mean_hellinger_distance=float(hellinger_distance(
                    hardware[0], fit.probabilities[0]).mean()),
                routing_agreement=float(np.mean(
                    cell.gates[name].argmax(-1) == hw_gates.argmax(-1))),
                accuracy=accuracy(labels, cell.predictions[name]),
                circuits=[{"circuit": pub.isa.name, "mean_tvd": float(tvd(h, p).mean())}
                          for pub, h, p in zip(pubs, hardware, fit.probabilities)])
    order = [n for n in TITLES if n in models]
    models = {n: models[n] for n in order}
    explaining = [n for n in order if models[n].explains]
    verdict = Verdict(alpha, explaining, _preferred(explaining, models),
                      min(order, key=lambda n: models[n].aic))
    used = sorted({q for pub in pubs for q in used_qubits(pub.isa)})
    gates = gate_names([pub.isa for pub in pubs])
    measured = sorted({q for pub in pubs for q in measured_qubits(pub.isa)})
    calibrations = _calibrations(results)
    drifts = [cell.drift for cell in families if cell.drift is not None]
    return CompareAnalysis(
        run={"backend": results["backend"], "device": results.get("device", results["backend"]),
             "calibration": results.get("calibration"), "run": results.get("model"),
             "local_testing_mode": results.get("local_testing_mode"),
             "split": results.get("split", "test"),
             "stand_in": _truth(results)},
        shots=shots, repeats=len(by_repeat(recorded.pubs)), samples=int(results["samples"]),
        circuits=[pub.isa.name for pub in pubs], used_qubits=used,
        basis_gates=gates,
        hardware_accuracy=float(results["accuracy"]), hardware=hardware[0],
        hardware_router=hw_gates.tolist(),
        shot_noise_floor_tvd=float(shot_noise_tvd(hardware[0], shots, rng=rng).mean()),
        alpha=alpha, models=models, verdict=verdict, proportions=_proportions(models, alpha),
        readout=_readout_table(device, measured, models, calibrations),
        readout_check=_readout_check(models, calibrations, alpha),
        drift=drifts[0] if drifts else None,
        device_consistency=[r.to_dict() for r in relaxation_excess(device, used, gates=gates)],
        idle_noise=idle_noise,
        mitigation=_mitigated(results, recorded.pubs, models, hardware, calibrations, shots,
                              rng),
        evaluations=sum(cell.evaluations for cell in families), wall_seconds=seconds,
        mitigated_router=_mitigated_router(results, families, estimated, alpha))


def _preferred(names: list[str], models: dict[str, ModelScore]) -> str | None:
    """The simplest of ``names`` within :data:`AIC_TIE` of the lowest AIC (the more flexible
    model is preferred only where the counts pay for its parameters)."""
    if not names:
        return None
    best = min(models[n].aic for n in names)
    close = [n for n in names if models[n].aic - best <= AIC_TIE]
    return min(close, key=lambda n: (models[n].fit.free, models[n].aic))


def _truth(results: dict[str, Any]) -> dict[str, Any] | None:
    """A stand-in's hidden truth, as its run recorded it (for the report only: no fit reads
    it)."""
    if results.get("stand_in"):
        return results["stand_in"]
    if results.get("noise_scale") is not None:
        return {"noise_scale": results["noise_scale"]}
    return None


def _calibrations(results: dict[str, Any]) -> list[ReadoutCalibration]:
    block = results.get("mitigation")
    if block is None:
        return []
    return [ReadoutCalibration.from_dict(c)
            for c in block.get("repeat_calibrations") or [block["calibration"]]]


def _proportions(models: dict[str, ModelScore], alpha: float) -> dict[str, Any] | None:
    """Whether gates and readout need different scales: the single-k model against the
    two-scale model it is nested in."""
    if not {"device_scaled_fit", "device_two_scale_fit"} <= set(models):
        return None
    single, two = models["device_scaled_fit"].fit, models["device_two_scale_fit"].fit
    statistic, p_value = likelihood_ratio(single.log_likelihood, two.log_likelihood, 1)
    return {"test": "likelihood ratio, device × k against gates × k_g, readout × k_r",
            "statistic": statistic, "dof": 1, "p_value": p_value,
            "differ": bool(p_value < alpha), "gate_scale": two.values["gate_scale"],
            "readout_scale": two.values["readout_scale"]}


def _readout_table(device, measured: list[int], models: dict[str, ModelScore],
                   calibrations: list[ReadoutCalibration]) -> list[dict[str, Any]]:
    """Per measured qubit: the calibration's P(1|0), P(0|1) and what each fit implies."""
    readout = calibrated_readout(device, measured)
    rows = []
    for q in measured:
        p10, p01 = readout.errors.get(q, (0.0, 0.0))
        row = {"qubit": q, "calibrated_p10": p10, "calibrated_p01": p01,
               "source": readout.source}
        for model, key in (("device_scaled_fit", "scaled_fit"),
                           ("device_two_scale_fit", "two_scale_fit")):
            if model in models:
                fitted = models[model].fit.readout[q]
                row[f"{key}_p10"], row[f"{key}_p01"] = fitted
        if "depolarizing_fit" in models:
            row["depolarizing_fit"] = models["depolarizing_fit"].fit.values["epsilon"]
        if "device_readout_fit" in models:
            row["fitted"] = models["device_readout_fit"].fit.extra["readout"][q]
        if calibrations:
            row["measured"] = _measured_readout(calibrations, q)
        rows.append(row)
    return rows


def _measured_readout(calibrations: list[ReadoutCalibration], q: int) -> dict[str, float]:
    """The run's mthree calibration of qubit ``q`` (averaged over repeats) with the binomial
    standard error of each rate."""
    out = {}
    for i, key in enumerate(("p10", "p01")):
        values = [c.errors()[q][i] for c in calibrations]
        trials = [c.shots * len(calibration_circuits(len(c.qubits))) / 2 for c in calibrations]
        variance = sum(max(v * (1 - v), 1.0 / t) / t for v, t in zip(values, trials))
        out[key] = float(np.mean(values))
        out[f"{key}_se"] = float(np.sqrt(variance) / len(values))
    return out


def _readout_check(models: dict[str, ModelScore], calibrations: list[ReadoutCalibration],
                   alpha: float) -> dict[str, Any] | None:
    """The per-qubit readout the counts imply against the run's mthree calibration: χ² of
    the differences over the fit's covariance plus the calibration's binomial variance."""
    if not calibrations or "device_readout_fit" not in models:
        return None
    extra = models["device_readout_fit"].fit.extra
    if extra["covariance"] is None:
        return {"identifiable": False, "differ": False,
                "note": "the counts do not identify each qubit's readout apart from the gates"}
    qubits = sorted(extra["readout"])
    fitted = np.array([extra["readout"][q][k] for q in qubits for k in ("p10", "p01")])
    measured = [_measured_readout(calibrations, q) for q in qubits]
    calibrated = np.array([m[k] for m in measured for k in ("p10", "p01")])
    variance = np.array([m[f"{k}_se"] ** 2 for m in measured for k in ("p10", "p01")])
    covariance = np.asarray(extra["covariance"]) + np.diag(variance)
    difference = fitted - calibrated
    statistic = float(difference @ np.linalg.solve(covariance, difference))
    p_value = float(stats.chi2.sf(statistic, len(difference)))
    z = difference / np.sqrt(np.diag(covariance))
    return {"identifiable": True, "test": "chi-squared of fitted minus mthree readout over "
            "their joint covariance", "statistic": statistic, "dof": len(difference),
            "p_value": p_value, "differ": bool(p_value < alpha),
            "z": {str(q): {"p10": float(z[2 * i]), "p01": float(z[2 * i + 1])}
                  for i, q in enumerate(qubits)}}


def _mitigated(results, pubs, models: dict[str, ModelScore], hardware, calibrations,
               shots: int, rng) -> dict[str, Any] | None:
    """Raw and readout-mitigated hardware distributions against each model without its
    readout errors (the router circuit, as the main table)."""
    if not calibrations:
        return None
    mitigated = mitigated_tables(calibrations, pubs)
    rows = {}
    for name, score in models.items():
        free = score.fit.gate_probabilities[0]
        raw, fixed = tvd(hardware[0], free), tvd(mitigated[0], free)
        floor = float(shot_noise_tvd(free, shots, rng=rng).mean())
        rows[name] = {"raw_mean_tvd": float(raw.mean()),
                      "raw_mean_tvd_ci": list(bootstrap_mean(raw, rng=rng)),
                      "mitigated_mean_tvd": float(fixed.mean()),
                      "mitigated_mean_tvd_ci": list(bootstrap_mean(fixed, rng=rng)),
                      "floor_tvd": floor, "mitigated_tvd_over_floor": float(fixed.mean()) / floor}
    block = results["mitigation"]
    return {"method": "readout (mthree)", "calibration": block["calibration"],
            "hardware_accuracy": block["accuracy"],
            "mitigated_router_distributions": mitigated[0].tolist(), "models": rows}


def _mitigated_router(results, families, estimated, alpha: float) -> dict[str, Any] | None:
    """The router circuit's outputs raw and under each technique the run (and the offline
    refits) give, against the exact model and each fitted noise model; ``None`` where the run
    did not mitigate or the router is classical."""
    circuit = results.get("router_circuit") or {}
    ideal = circuit.get("ideal")
    if ideal is None and estimated:
        ideal = estimated[0].ideal_router
    mitigated = results.get("mitigated") or {}
    if ideal is None or not mitigated:
        return None
    ideal = np.asarray(ideal)
    labels = np.asarray(results["labels"])
    models = {name: np.asarray(values) for cell in families
              for name, values in getattr(cell, "router", {}).items() if values is not None}

    def row(values, predictions, qpu_multiple, z=None, **extra) -> dict[str, Any]:
        values = np.asarray(values)
        right = int(np.sum(np.asarray(predictions) == labels))
        out = {"error_vs_ideal": float(np.abs(values - ideal).mean()),
               "error_vs_models": {n: float(np.abs(values - m).mean())
                                   for n, m in models.items()},
               "accuracy": right / len(labels),
               "accuracy_ci": list(wilson_interval(right, len(labels))),
               "qpu_multiple": qpu_multiple, **extra}
        out["closest_model"] = min(out["error_vs_models"], key=out["error_vs_models"].get,
                                   default=None)
        if z is not None:
            finite = np.asarray(z, dtype=float)
            finite = finite[np.isfinite(finite)]
            chi2 = float(np.sum(finite ** 2))
            p = float(stats.chi2.sf(chi2, len(finite))) if len(finite) else None
            out |= {"z_rms": float(np.sqrt(np.mean(finite ** 2))) if len(finite) else None,
                    "chi2": chi2, "dof": int(len(finite)), "p_value": p,
                    "stds_cover_error": None if p is None else bool(p >= alpha)}
        return out

    rows: dict[str, dict[str, Any]] = {}
    if circuit.get("raw") is not None:
        rows["raw"] = row(circuit["raw"], results["predictions"], 1.0)
    readout = mitigated.get("readout")
    if readout is not None and readout.get("router") is not None and \
            readout.get("predictions") is not None:
        rows["readout"] = row(readout["router"], readout["predictions"],
                              readout.get("qpu_multiple"), note="mthree reports no stds")
    for e in estimated:
        cost = (mitigated.get(e.technique) or {}).get("qpu_multiple")
        if e.router is None:
            continue
        rows[e.name] = row(e.router, e.predictions, cost, z=e.z,
                           refit=list(e.extrapolator) if e.extrapolator else None)
    base = rows.get("raw", {}).get("error_vs_ideal")
    for name, r in rows.items():
        r["raw_error_removed"] = None if not base or name == "raw" else \
            1 - r["error_vs_ideal"] / base
    return {"alpha": alpha, "outputs": "router circuit: ⟨Z_i⟩ per qubit or probabilities",
            "test": "chi-squared of (mitigated - ideal) / reported std over every sample and "
                    "output, errors taken as independent",
            "rows": rows}
