"""``qmoe compare``: which noise model explains what a backend did.

A finished ``qmoe run`` folder holds the ISA circuits that ran, their bindings and every
sample's outcome counts. For those very circuits, qubits and parameter values this experiment
computes each sample's outcome distribution exactly (Aer density matrix) under five models:

``ideal``               no noise;
``device``              the calibrated device model (gates, relaxation during gates, readout as
                        the calibration gives it: asymmetric P(1|0), P(0|1) where available);
``depolarizing_fit``    the depolarizing factory, ε fitted to the counts;
``device_scaled_fit``   the device model with every rate times one k, fitted to the counts;
``readout_only``        only the device's readout errors.

Fits maximise the multinomial log-likelihood of the counts (a grid, then a bounded 1-D
search) and give 95% profile-likelihood intervals. Each model is scored by its distance to the
hardware's frequencies (TVD, Hellinger), its log-likelihood, how often it routes each sample to
the hardware's top expert, and the accuracy it gives; the distance is set against the
shot-noise floor: the TVD a perfect model shows from the same number of shots.

Readout mitigation: when the run measured a readout calibration (``--mitigate readout``), the
hardware's counts are also corrected with mthree, and the mitigated distributions are set
against each model with its readout errors removed (what mitigation claims to leave), beside
the raw counts against the same readout-free models.

Cells: the run (recorded, or done first through the job layer, in this process), then one cell
per model, each a pure function of the measurements.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from qiskit_aer.noise import NoiseModel

from ..backends import get_backend
from ..errors import ConfigError, DataError
from ..jobs.outcomes import MeasuredPub, read_measurements
from ..jobs.readout import ReadoutCalibration, check_mitigation
from ..metrics import (
    ProfileFit,
    accuracy,
    bootstrap_mean,
    hellinger_distance,
    log_likelihood,
    profile_fit,
    shot_noise_tvd,
    tvd,
)
from ..noise_models import depolarizing, device
from ..noise_models.evaluate import IsaEvaluator, gate_names
from ..noise_models.factories import calibrated_readout, device_readout, largest_scale
from ..plots import compare_figures
from ..transpile import used_qubits
from .base import Outcome, folder_writers, load_trained, read_results
from .replay import replay
from .run import RunConfig, mitigated_tables

__all__ = ["CompareConfig", "MODELS", "MIN_SHOTS"]

MODELS = ("ideal", "device", "depolarizing_fit", "device_scaled_fit", "readout_only")
MIN_SHOTS = 100  # per binding: fewer give distributions too coarse to fit or compare
EPSILON_GRID = (0.0, *np.geomspace(1e-4, 0.25, 24).tolist())
MAX_SCALE = 50.0


@dataclass(frozen=True)
class CompareConfig:
    """Compare a run's measurements with noise models: ``run`` (a finished ``qmoe run``
    folder) or ``backend_run`` (a run to do first). A model explains the hardware within shot
    noise when its mean TVD is at most ``tolerance`` times its own shot-noise floor."""

    command: ClassVar[str] = "compare"
    run: str | None = None
    backend_run: RunConfig | None = None
    tolerance: float = 1.5
    seed: int = 0
    mitigate: str | None = None  # with ``run``: require the run's readout calibration

    def __post_init__(self):
        if (self.run is None) == (self.backend_run is None):
            raise ConfigError("give a finished run folder (--run) or a model and a backend to "
                              "run it on (--model, --backend), not both")
        if self.run is not None:
            object.__setattr__(self, "run", str(self.run))
        check_mitigation(self.mitigate)
        if self.mitigate is not None and self.backend_run is not None:
            raise ConfigError("give the mitigation to the run (RunConfig(mitigate=...)); "
                              "CompareConfig(mitigate=...) is for a finished run folder")
        if self.backend_run is not None and self.backend_run.dry_run:
            raise ConfigError("compare needs measurements; a dry run makes none")
        if not (isinstance(self.tolerance, (int, float)) and np.isfinite(self.tolerance)
                and self.tolerance >= 1):
            raise ConfigError(f"tolerance must be a number >= 1 (a multiple of the shot-noise "
                              f"floor), got {self.tolerance!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def inputs(self) -> tuple[Path, ...]:
        if self.run is not None:
            return (Path(self.run),)
        return self.backend_run.inputs()

    def plan(self, *, progress: bool = False) -> list:
        """The run's measurements (a run given by ``backend_run`` happens here, in this
        process: hardware jobs are submitted and recorded by the driver), then the cells."""
        if self.run is not None:
            recorded = _load_run(Path(self.run))
        else:
            recorded = _do_run(self.backend_run, progress)
        mitigated = recorded.results.get("mitigation") is not None
        if self.mitigate is not None and not mitigated:
            raise ConfigError(f"the run in {self.run} measured no readout calibration; run it "
                              f"again with --mitigate readout (its model circuits come from the "
                              f"cache: only the calibration circuits are submitted)")
        device_backend = _calibration(recorded.results)
        used = sorted({q for pub in recorded.pubs for q in used_qubits(pub.isa)})
        common = dict(pubs=tuple(recorded.pubs), device=device_backend, used=tuple(used),
                      readout_free=mitigated)
        return [recorded, *(ModelCell(name=name, **common) for name in MODELS)]

    def aggregate(self, cells, results: list, seconds: float) -> Outcome:
        recorded, fits = results[0], {r.name: r for r in results[1:]}
        analysis = _analyse(recorded, fits, tolerance=self.tolerance, seed=self.seed)
        analysis["wall_seconds"] = seconds
        device_backend = cells[1].device
        readout = _readout_table(device_backend, cells[1].used, analysis["fit"])
        analysis["readout"] = readout
        figures = compare_figures(recorded.pubs, {n: f.probabilities for n, f in fits.items()},
                                  analysis, {n: f.fit for n, f in fits.items() if f.fit},
                                  readout)
        files = recorded.run_files()
        return Outcome(results=analysis, report=_report(analysis), summary=_summary(analysis),
                       figures=figures, files=files)


# ------------------------------------------------------------------ the run
@dataclass(frozen=True)
class RecordedRun:
    """A run's results and measurements (a cell that is already done)."""

    results: dict[str, Any]
    pubs: list[MeasuredPub]
    outcome: Outcome | None = None  # a run done by this compare: written into run/
    config: dict[str, Any] | None = None
    label: str = "run"

    def __call__(self, *, progress: bool = False) -> "RecordedRun":
        return self

    def run_files(self) -> dict:
        """The folder of a run done by this compare, to be written as ``run/``."""
        if self.outcome is None:
            return {}
        return {f"run/{name}": writer
                for name, writer in folder_writers(self.config, self.outcome).items()}


def _do_run(config: RunConfig, progress: bool) -> RecordedRun:
    """The run, through the job layer (cache, ledger, resume), in this process."""
    [cell] = config.plan()
    done = cell(progress=progress)
    outcome = config.aggregate([cell], [done], 0.0)
    _check_pubs(done.measured, "the run")
    return RecordedRun(results=outcome.results, pubs=done.measured, outcome=outcome,
                       config={"command": config.command, **config.to_dict()})


def _load_run(folder: Path) -> RecordedRun:
    _, results = read_results(folder, "run")
    if results.get("dry_run"):
        raise ConfigError(f"{folder} is a dry run: it measured nothing")
    pubs = read_measurements(folder)
    _check_pubs(pubs, str(folder))
    return RecordedRun(results=results, pubs=pubs)


def _check_pubs(pubs: list[MeasuredPub], where: str) -> None:
    if not pubs:
        raise ConfigError(f"{where} measured no circuits: the model is classical, so there is "
                          f"no noise to compare")
    shots = min(pub.shots for pub in pubs)
    if shots < MIN_SHOTS:
        raise ConfigError(f"{where} has {shots} shots per sample; fitting and comparing noise "
                          f"models needs at least {MIN_SHOTS} (run with --shots {MIN_SHOTS} or "
                          f"more)")


@dataclass(frozen=True)
class Snapshot:
    """A device's calibration at one time: what the device model reads (``name``, ``target``,
    ``properties()``), picklable."""

    name: str
    target: Any
    props: Any = None
    when: str = "snapshot"

    def properties(self):
        return self.props


def _snapshot(device: str | Snapshot) -> Snapshot:
    """A fake device's calibration by name (or a snapshot as it is)."""
    if isinstance(device, Snapshot):
        return device
    backend = get_backend(device)
    return Snapshot(backend.name, backend.target, backend.properties())


def _calibration(results: dict[str, Any]) -> str | Snapshot:
    """The calibration that describes the run: a fake device's snapshot (by name), or an IBM
    backend's calibration in force when the job ran."""
    name = results.get("device") or results.get("backend")
    if not isinstance(name, str):
        raise DataError("the run's results.json names no backend")
    if name.startswith("fake_"):
        get_backend(name)  # raises with the list of names
        return name
    from ..jobs import connect  # an account is needed only for real backends

    when = results.get("ran_at")
    try:
        backend = connect(name).backend
        moment = datetime.fromisoformat(when) if when else None
        target = backend.target_history(datetime=moment) if moment else backend.target
        props = backend.properties(datetime=moment) if moment else backend.properties()
    except (ConfigError, DataError):
        raise
    except Exception as exc:  # the runtime raises IBM, network and plain errors here
        raise ConfigError(f"the calibration of {name} at {when or 'the run time'} is "
                          f"unavailable ({type(exc).__name__}: {' '.join(str(exc).split())})"
                          ) from None
    return Snapshot(name, target, props, when or "current")


# ------------------------------------------------------------------ the models
@dataclass(frozen=True)
class ModelFit:
    name: str
    probabilities: list[np.ndarray]  # per PUB, (bindings, outcomes)
    fit: ProfileFit | None = None  # for the fitted models
    parameter: str | None = None
    readout_free: list[np.ndarray] | None = None  # the same model without its readout errors


@dataclass(frozen=True)
class ModelCell:
    """One model's exact outcome distributions on the run's circuits (fitted first where the
    model has a free parameter)."""

    name: str
    pubs: tuple[MeasuredPub, ...]
    device: str | Snapshot
    used: tuple[int, ...]
    readout_free: bool = False  # also evaluate the model without readout errors

    @property
    def label(self) -> str:
        return self.name

    def __call__(self, *, progress: bool = False) -> ModelFit:
        fit = self._fit()
        if not self.readout_free:
            return fit
        evaluate = IsaEvaluator([(pub.isa, pub.values) for pub in self.pubs])
        backend = _snapshot(self.device)
        if self.name in ("ideal", "readout_only"):
            model = NoiseModel()
        elif self.name == "depolarizing_fit":
            eps = fit.fit.estimate
            model = depolarizing(p1=eps, p2=eps, readout=0.0,
                                 basis_gates=gate_names([pub.isa for pub in self.pubs]))
        else:
            scale = 1.0 if self.name == "device" else fit.fit.estimate
            model = device(backend, qubits=self.used, scale=scale, readout=False)
        return dataclasses.replace(fit, readout_free=evaluate(model))

    def _fit(self) -> ModelFit:
        evaluate = IsaEvaluator([(pub.isa, pub.values) for pub in self.pubs])
        backend = _snapshot(self.device)  # properties read once, not at every fit step
        if self.name == "ideal":
            return ModelFit(self.name, evaluate(NoiseModel()))
        if self.name == "device":
            return ModelFit(self.name, evaluate(device(backend, qubits=self.used)))
        if self.name == "readout_only":
            return ModelFit(self.name, evaluate(device_readout(backend, qubits=self.used)))
        counts = [pub.counts for pub in self.pubs]

        def loglik(model: NoiseModel) -> float:
            return sum(log_likelihood(n, p) for n, p in zip(counts, evaluate(model)))

        if self.name == "depolarizing_fit":
            basis = gate_names([pub.isa for pub in self.pubs])
            family = lambda eps: depolarizing(eps, basis_gates=basis)  # noqa: E731
            grid, parameter = EPSILON_GRID, "epsilon"
        else:
            top = min(largest_scale(backend, self.used), MAX_SCALE)
            family = lambda k: device(backend, qubits=self.used, scale=k)  # noqa: E731
            grid, parameter = (0.0, *np.geomspace(0.02, top, 24).tolist()), "scale"
        fit = profile_fit(lambda x: loglik(family(x)), grid, name=parameter)
        return ModelFit(self.name, evaluate(family(fit.estimate)), fit, parameter)


# ------------------------------------------------------------------ scoring
def _analyse(recorded: RecordedRun, fits: dict[str, ModelFit], *, tolerance: float,
             seed: int) -> dict[str, Any]:
    results, pubs = recorded.results, recorded.pubs
    model, _, data = load_trained(results["model"])
    samples = int(results["samples"])
    x = torch.as_tensor(data.x_test[:samples], dtype=torch.float32)
    labels = data.y_test[:samples]
    shots = pubs[0].shots
    hardware = [pub.counts / pub.counts.sum(axis=1, keepdims=True) for pub in pubs]
    hw_pred, hw_gates = replay(model, x, pubs, hardware)
    rng = np.random.default_rng(seed)
    floor_hw = shot_noise_tvd(hardware[0], shots, rng=rng)
    out: dict[str, Any] = {}
    for name in MODELS:
        probs = fits[name].probabilities
        pred, gates = replay(model, x, pubs, probs)
        per_sample = tvd(hardware[0], probs[0])
        floor = shot_noise_tvd(probs[0], shots, rng=rng)
        mean = float(per_sample.mean())
        out[name] = {
            "mean_tvd": mean,
            "mean_tvd_ci": list(bootstrap_mean(per_sample, rng=rng)),
            "tvd_per_sample": per_sample.tolist(),
            "floor_tvd": float(floor.mean()),
            "tvd_over_floor": mean / float(floor.mean()),
            "explains_within_shot_noise": bool(mean <= tolerance * float(floor.mean())),
            "mean_hellinger_distance": float(hellinger_distance(hardware[0], probs[0]).mean()),
            "log_likelihood": sum(log_likelihood(pub.counts, p) for pub, p in zip(pubs, probs)),
            "routing_agreement": float(np.mean(gates.argmax(-1) == hw_gates.argmax(-1))),
            "accuracy": accuracy(labels, pred),
            "circuits": [{"circuit": pub.isa.name, "mean_tvd": float(tvd(h, p).mean())}
                         for pub, h, p in zip(pubs, hardware, probs)],
        }
    eps, k = fits["depolarizing_fit"].fit, fits["device_scaled_fit"].fit
    mitigation = _mitigated(recorded, fits, model, x, labels, hardware, rng=rng)
    return {
        "backend": results["backend"], "device": results.get("device", results["backend"]),
        "calibration": results.get("calibration"), "run": results.get("model"),
        "local_testing_mode": results.get("local_testing_mode"),
        "stand_in": ({"noise_scale": results["noise_scale"]}
                     if results.get("noise_scale") is not None else None),
        "shots": shots, "samples": samples, "circuits": [pub.isa.name for pub in pubs],
        "hardware_accuracy": accuracy(labels, hw_pred),
        "used_qubits": sorted({q for pub in pubs for q in used_qubits(pub.isa)}),
        "basis_gates": gate_names([pub.isa for pub in pubs]),
        "hardware_router": hw_gates.tolist(),
        "shot_noise_floor_tvd": float(floor_hw.mean()),
        "tolerance": tolerance,
        "models": out,
        "fit": {"epsilon": eps.estimate, "epsilon_ci": list(eps.interval),
                "epsilon_converged": eps.converged, "epsilon_message": eps.message,
                "scale": k.estimate, "scale_ci": list(k.interval),
                "scale_converged": k.converged, "scale_message": k.message,
                "profiles": {"epsilon": {"grid": eps.grid, "log_likelihood": eps.profile,
                                         "near": eps.near, "near_log_likelihood": eps.near_profile},
                             "scale": {"grid": k.grid, "log_likelihood": k.profile,
                                       "near": k.near, "near_log_likelihood": k.near_profile}}},
        "hellinger_formula": "H = sqrt(1 - sum_k sqrt(p_k q_k)); qiskit's hellinger_fidelity "
                             "is (1 - H^2)^2",
        "mitigation": mitigation,
        "analysed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _mitigated(recorded: RecordedRun, fits: dict[str, ModelFit], model, x, labels,
               hardware: list[np.ndarray], *, rng) -> dict[str, Any] | None:
    """Raw and readout-mitigated hardware distributions against each model without its
    readout errors (the router circuit, as the main table)."""
    block = recorded.results.get("mitigation")
    if block is None:
        return None
    readout = ReadoutCalibration.from_dict(block["calibration"])
    mitigated = mitigated_tables(readout, recorded.pubs)
    predictions, _ = replay(model, x, recorded.pubs, mitigated)
    shots = recorded.pubs[0].shots
    rows = {}
    for name in MODELS:
        free = fits[name].readout_free[0]
        raw, fixed = tvd(hardware[0], free), tvd(mitigated[0], free)
        floor = float(shot_noise_tvd(free, shots, rng=rng).mean())
        rows[name] = {"raw_mean_tvd": float(raw.mean()),
                      "raw_mean_tvd_ci": list(bootstrap_mean(raw, rng=rng)),
                      "mitigated_mean_tvd": float(fixed.mean()),
                      "mitigated_mean_tvd_ci": list(bootstrap_mean(fixed, rng=rng)),
                      "floor_tvd": floor, "mitigated_tvd_over_floor": float(fixed.mean()) / floor}
    return {"method": "readout (mthree)", "calibration": block["calibration"],
            "hardware_accuracy": accuracy(labels, predictions),
            "mitigated_router_distributions": mitigated[0].tolist(), "models": rows}


def _readout_table(backend: str | Snapshot, used: tuple[int, ...],
                   fit: dict[str, Any]) -> list[dict[str, Any]]:
    """Per measured qubit: the calibration's P(1|0), P(0|1) and what each fit implies."""
    readout = calibrated_readout(_snapshot(backend), used)
    rows = []
    for q in used:
        p10, p01 = readout.errors.get(q, (0.0, 0.0))
        rows.append({"qubit": q, "calibrated_p10": p10, "calibrated_p01": p01,
                     "scaled_fit_p10": p10 * fit["scale"], "scaled_fit_p01": p01 * fit["scale"],
                     "depolarizing_fit": fit["epsilon"], "source": readout.source})
    return rows


# ------------------------------------------------------------------ words
_TITLES = {"ideal": "ideal (no noise)", "device": "device (calibrated)",
           "depolarizing_fit": "depolarizing, ε fitted", "device_scaled_fit": "device × k fitted",
           "readout_only": "readout errors only"}


def _interval(ci: list) -> str:
    lo, hi = ci
    return f"[{'?' if lo is None else f'{lo:.4g}'}, {'open' if hi is None else f'{hi:.4g}'}]"


def _fit_line(what: str, estimate: float, ci: list, message: str) -> str:
    return (f"- {what} = {estimate:.4g}, 95% profile interval {_interval(ci)}"
            + (f"; {message}" if message else ""))


def _verdict(a: dict[str, Any]) -> str:
    models = a["models"]
    explaining = [n for n in MODELS if models[n]["explains_within_shot_noise"]]
    best = max(MODELS, key=lambda n: models[n]["log_likelihood"])
    if not explaining:
        return (f"**No model explains the hardware within shot noise** (every mean TVD is more "
                f"than {a['tolerance']:g}× its shot-noise floor). The most likely model is "
                f"{_TITLES[best]} (TVD {models[best]['tvd_over_floor']:.2f}× its floor): the "
                f"hardware has noise none of these models describes, such as coherent errors "
                f"or crosstalk.")
    names = ", ".join(_TITLES[n] for n in explaining)
    return (f"Within shot noise (mean TVD ≤ {a['tolerance']:g}× the model's floor): {names}. "
            f"The most likely model is {_TITLES[best]}.")


def _summary(a: dict[str, Any]) -> str:
    fit = a["fit"]
    lines = [f"{a['backend']}: {a['samples']} samples × {a['shots']} shots; hardware accuracy "
             f"{a['hardware_accuracy']:.3f}; shot-noise floor TVD {a['shot_noise_floor_tvd']:.4f}",
             f"fits: epsilon {fit['epsilon']:.4g} {_interval(fit['epsilon_ci'])}, "
             f"scale {fit['scale']:.3g} {_interval(fit['scale_ci'])}"]
    for name in MODELS:
        m = a["models"][name]
        lines.append(f"  {name:<18} TVD {m['mean_tvd']:.4f} ({m['tvd_over_floor']:.2f}× floor) "
                     f"log-lik {m['log_likelihood']:.1f} accuracy {m['accuracy']:.3f}"
                     + ("  explains" if m["explains_within_shot_noise"] else ""))
    if a["mitigation"] is not None:
        ideal = a["mitigation"]["models"]["ideal"]
        lines.append(f"readout-mitigated: TVD to ideal {ideal['raw_mean_tvd']:.4f} raw -> "
                     f"{ideal['mitigated_mean_tvd']:.4f} mitigated; accuracy "
                     f"{a['mitigation']['hardware_accuracy']:.3f}")
    lines.append(_verdict(a).replace("**", ""))
    return "\n".join(lines)


def _mitigation_section(a: dict[str, Any]) -> list[str]:
    m = a["mitigation"]
    if m is None:
        return ["No readout mitigation (run with `--mitigate readout` to measure a readout "
                "calibration in the same job and compare mitigated counts too).", ""]
    measured = ", ".join(f"{q}: {e['p10']:.4f} / {e['p01']:.4f}"
                         for q, e in m["calibration"]["qubits"].items())
    lines = ["## Readout-mitigated hardware", "",
             f"mthree corrected the counts with the readout calibration measured in the run's "
             f"job (P(1|0) / P(0|1) per qubit: {measured}). Mitigation removes readout error, so "
             f"each model is taken here without its readout errors; the raw column sets the "
             f"uncorrected counts against the same readout-free model. Mitigated distributions "
             f"are not multinomial samples (correction amplifies shot noise), so the floor, "
             f"taken from the model at {a['shots']} shots, is a lower bound.", "",
             "| model, readout removed | raw TVD [95% CI] | mitigated TVD [95% CI] | floor | "
             "mitigated / floor |", "|---|---|---|---:|---:|"]
    for name in MODELS:
        r = m["models"][name]
        lines.append(f"| {_TITLES[name]} | {r['raw_mean_tvd']:.4f} {_ci(r['raw_mean_tvd_ci'])} | "
                     f"{r['mitigated_mean_tvd']:.4f} {_ci(r['mitigated_mean_tvd_ci'])} | "
                     f"{r['floor_tvd']:.4f} | {r['mitigated_tvd_over_floor']:.2f} |")
    lines += ["", f"Accuracy on the mitigated distributions: {m['hardware_accuracy']:.3f} "
                  f"(raw: {a['hardware_accuracy']:.3f}).", ""]
    return lines


def _ci(ci: list) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _report(a: dict[str, Any]) -> str:
    fit = a["fit"]
    mode = (" (runtime local testing mode)" if a["local_testing_mode"] else "")
    lines = [
        f"# Simulated against measured noise: {a['backend']}{mode}", "",
        f"{a['samples']} held-out test samples, {a['shots']} shots each, circuits "
        f"{', '.join(a['circuits'])}; device calibration of `{a['device']}` "
        f"({a['calibration']}). Every model is evaluated exactly (Aer density matrix) on the "
        f"ISA circuits, physical qubits and bindings the run used.", "",
        "## Verdict", "", _verdict(a), "",
        "## Models", "",
        "TVD and Hellinger distance are between each sample's measured outcome frequencies and "
        "the model's distribution (router circuit), averaged over samples; the interval is a "
        "95% bootstrap over samples. The floor is the mean TVD a perfect model shows from "
        f"{a['shots']} shots (resampled from the model). Hellinger: {a['hellinger_formula']}.",
        "",
        "| model | mean TVD [95% CI] | floor | TVD / floor | Hellinger | log-likelihood | "
        "top expert agrees | accuracy |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in MODELS:
        m = a["models"][name]
        lo, hi = m["mean_tvd_ci"]
        lines.append(f"| {_TITLES[name]} | {m['mean_tvd']:.4f} [{lo:.4f}, {hi:.4f}] | "
                     f"{m['floor_tvd']:.4f} | {m['tvd_over_floor']:.2f} | "
                     f"{m['mean_hellinger_distance']:.4f} | {m['log_likelihood']:.1f} | "
                     f"{m['routing_agreement']:.3f} | {m['accuracy']:.3f} |")
    lines += [f"| hardware | | {a['shot_noise_floor_tvd']:.4f} (own) | | | | | "
              f"{a['hardware_accuracy']:.3f} |", "",
              "## Fits", "",
              _fit_line("depolarizing ε", fit["epsilon"], fit["epsilon_ci"],
                        fit["epsilon_message"]),
              _fit_line("device scale k", fit["scale"], fit["scale_ci"], fit["scale_message"]),
              ""]
    if a["stand_in"] is not None:
        lines += [f"The backend is a stand-in whose noise is the device's times "
                  f"{a['stand_in']['noise_scale']:g} (the truth the scale fit should recover; "
                  f"the fit was not told it).", ""]
    elif a["local_testing_mode"]:
        lines += ["The backend ran in plain local testing mode, whose simulator (Aer's "
                  "target-based device model) uses one symmetric readout error per qubit; the "
                  "device models here use the calibration's asymmetric P(1|0), P(0|1). Part of "
                  "any misfit of the device models can come from that difference.", ""]
    lines += ["## Readout (per measured qubit)", "",
              "| qubit | calibrated P(1\\|0) | calibrated P(0\\|1) | k × P(1\\|0) | k × P(0\\|1) | "
              "depolarizing ε |", "|---:|---:|---:|---:|---:|---:|"]
    for r in a["readout"]:
        lines.append(f"| {r['qubit']} | {r['calibrated_p10']:.4f} | {r['calibrated_p01']:.4f} | "
                     f"{r['scaled_fit_p10']:.4f} | {r['scaled_fit_p01']:.4f} | "
                     f"{r['depolarizing_fit']:.4f} |")
    source = a["readout"][0]["source"] if a["readout"] else "none"
    lines += ["", f"Readout calibration source: {source}.", "", *_mitigation_section(a),
              "", "![hardware against model probabilities](scatter.png)", "",
              "![TVD per sample with the shot-noise floor](tvd_histograms.png)", "",
              "![likelihood profiles](profiles.png)", "", "![readout](readout.png)", ""]
    return "\n".join(lines)
