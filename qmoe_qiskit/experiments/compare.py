"""``qmoe compare``: which noise model explains what a backend did, as a statistical test.

A finished ``qmoe run`` folder holds the ISA circuits that ran, their bindings and every
sample's outcome counts (each repeat's, where the run repeated). For those very circuits,
qubits and parameter values this experiment computes each sample's outcome distribution
exactly (Aer density matrix) under the noise hypotheses of :mod:`.hypotheses` (ideal, the
calibrated device, readout only, and the fitted depolarizing, device × k, two-scale and
per-qubit-readout models), each fitted by maximum likelihood with profile-likelihood intervals.

The experiment (this module) is the run, then one cell per gate-noise family: the family is
tabulated once on the run's circuits (:class:`~qmoe_qiskit.noise_models.families.GateTable`),
and every hypothesis built on it is fitted there, tested for goodness of fit (and its intervals
widened by the dispersion where the counts are over-dispersed), fitted repeat by repeat for
drift, and replayed through the model for its accuracy. The analysis
(:mod:`.compare_analysis`) is a pure step from those cell results to a typed result, from
which ``results.json``, the report and the figures are written.

Where the run measured a readout calibration (``--mitigate readout``), the hardware's counts
are also corrected with mthree and set against each model without its readout errors, and the
per-qubit readout fit is tested against the calibration.

Where the run mitigated (any ``--mitigate``), the router's mitigated values are set against the
ideal model and every fitted noise model: their error against ideal, the fraction of the raw
error they remove, a chi-squared test at ``alpha`` of whether their reported stds cover that
error (the runtime Estimator's techniques), accuracy with its interval and the QPU-second
multiple. The runtime Estimator's values are replayed through the model from the PUBs the run
kept (``estimates.npz``); ``zne_extrapolator`` refits their raw noise-factor values offline
with other extrapolators (the runtime's own fitting), without a job, beside the runtime's
values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..backends import get_backend
from ..errors import ConfigError, DataError, choices
from ..jobs.estimator import EstimatedPub, Resilience, extrapolate, read_estimates
from ..jobs.mitigation import parse_mitigation
from ..jobs.outcomes import MeasuredPub, by_repeat, pooled, read_measurements
from ..noise_models.evaluate import IsaEvaluator, gate_names
from ..noise_models.factories import calibrated_readout
from ..noise_models.families import GateTable, depolarizing_gates, device_gates
from ..transpile import measured_qubits, used_qubits
from .base import Outcome, folder_writers, load_trained, recorded_path
from .compare_analysis import analyse
from .compare_report import report, summary
from .hypotheses import (
    DEVICE_FAMILY,
    HYPOTHESES,
    NO_READOUT,
    Drift,
    Fit,
    FitData,
    drift,
    fit_and_test,
    hypothesis,
    readout_sensitive,
)
from .replay import RouterTap, replay, replay_estimates
from .run import RunConfig, read_run_results, router_z_scores, split_rows

__all__ = ["CompareConfig", "MODELS", "MIN_SHOTS", "FamilyCell", "FamilyFits", "EstimatedCell",
           "EstimatedReplay", "Snapshot"]

MODELS = tuple(h.name for h in HYPOTHESES)
MIN_SHOTS = 100  # per binding: fewer give distributions too coarse to fit or compare


@dataclass(frozen=True)
class CompareConfig:
    """Compare a run's measurements with noise models: ``run`` (a finished ``qmoe run``
    folder) or ``backend_run`` (a run to do first). A model explains the hardware when the
    goodness-of-fit test of its counts does not reject it at level ``alpha``. ``models``
    chooses the hypotheses (default: all that the run's calibration allows); ``idle_noise``
    gives the device models idle-time relaxation on the circuits as the device schedules
    them."""

    command: ClassVar[str] = "compare"
    run: str | None = None
    backend_run: RunConfig | None = None
    alpha: float = 0.01
    seed: int = 0
    mitigate: str | None = None  # with ``run``: require the run to have mitigated so
    idle_noise: bool = True
    models: tuple[str, ...] | None = None
    zne_extrapolator: tuple[str, ...] | None = None  # with ``run``: refit its ZNE offline

    def __post_init__(self):
        if (self.run is None) == (self.backend_run is None):
            raise ConfigError("give a finished run folder (--run) or a model and a backend to "
                              "run it on (--model, --backend), not both")
        if self.run is not None:
            object.__setattr__(self, "run", str(self.run))
        parse_mitigation(self.mitigate)  # names only: the run decides the options
        if self.zne_extrapolator is not None:
            names = [self.zne_extrapolator] if isinstance(self.zne_extrapolator, str) \
                else list(self.zne_extrapolator)
            object.__setattr__(self, "zne_extrapolator", tuple(names))
            Resilience(zne=True, zne_factors=(1, 2, 3, 4, 5, 6, 7, 8),
                       zne_extrapolator=self.zne_extrapolator)  # known names; factors: the run's
        if self.backend_run is not None:
            for flag, value in (("mitigate", self.mitigate),
                                ("zne_extrapolator", self.zne_extrapolator)):
                if value is not None:
                    raise ConfigError(f"give the {flag.replace('_', ' ')} to the run "
                                      f"(RunConfig({flag}=...)); CompareConfig({flag}=...) is "
                                      f"for a finished run folder")
        if self.backend_run is not None and self.backend_run.dry_run:
            raise ConfigError("compare needs measurements; a dry run makes none")
        if self.backend_run is not None:  # refused before anything is submitted or paid
            _check_shots(self.backend_run.shots, "--shots asks for")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or \
                not 0 < self.alpha < 0.5:
            raise ConfigError(f"alpha (the level of the goodness-of-fit test) must be in "
                              f"(0, 0.5), got {self.alpha!r}")
        if self.models is not None:
            object.__setattr__(self, "models", tuple(self.models))
            if not self.models:
                raise ConfigError(f"give at least one noise model; valid: {choices(MODELS)}")
            for name in self.models:
                hypothesis(name)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.backend_run is not None:
            out["backend_run"] = self.backend_run.to_dict()
        return out

    def protected(self) -> tuple[Path, ...]:
        """What --out must never be, hold or lie inside: the run folder compared, or the
        model, cache and ledger of the run made first."""
        return (Path(self.run),) if self.run is not None else self.backend_run.protected()

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
        estimated = self._estimated(recorded)
        by_repeat(recorded.pubs)  # every repeat measured the same circuits
        device_backend = _calibration(recorded.results)
        used = tuple(sorted({q for pub in recorded.pubs for q in used_qubits(pub.isa)}))
        names = self._chosen(device_backend, recorded.pubs)
        common = dict(pubs=tuple(recorded.pubs), device=device_backend, used=used,
                      basis=tuple(gate_names([pub.isa for pub in recorded.pubs])),
                      idle=self.idle_noise, alpha=self.alpha, model=str(recorded.model),
                      samples=int(recorded.results["samples"]),
                      split=recorded.results.get("split", "test"))
        cells = [recorded]
        for family in dict.fromkeys(hypothesis(n).family for n in names):
            chosen = tuple(n for n in names if hypothesis(n).family == family)
            cells.append(FamilyCell(family=family, names=chosen, **common))
        for technique, pubs in estimated.items():  # as the runtime returned them, and refit
            refits = [self.zne_extrapolator] if self.zne_extrapolator is not None and \
                pubs[0].resilience.extrapolates else []
            cells += [EstimatedCell(technique, tuple(pubs), common["model"], common["samples"],
                                    extrapolator, common["split"])
                      for extrapolator in [None, *refits]]
        return cells

    def _estimated(self, recorded: "RecordedRun") -> dict[str, list[EstimatedPub]]:
        """The run's estimator PUBs by technique; refuses a ``mitigate`` the run did not
        measure and a ``zne_extrapolator`` for a run without ZNE, in one line."""
        where = f"the run in {self.run}" if self.run is not None else "the run"
        results = recorded.results
        by_technique: dict[str, list[EstimatedPub]] = {}
        for pub in recorded.estimates:
            by_technique.setdefault(pub.resilience.name, []).append(pub)
        measured = [*(["readout"] if results.get("mitigation") is not None else []),
                    *by_technique]
        if self.mitigate is not None:
            asked = parse_mitigation(self.mitigate).name
            if asked not in measured:
                if asked == "readout":
                    raise ConfigError(
                        f"{where} measured no readout calibration; run it again with "
                        f"--mitigate readout (its model circuits come from the cache: only the "
                        f"calibration circuits are submitted)")
                raise ConfigError(
                    f"{where} did not mitigate with {asked} (it has "
                    f"{', '.join(measured) or 'no mitigation'}); run it with --mitigate {asked}")
            by_technique = {t: p for t, p in by_technique.items() if t == asked}
        if self.zne_extrapolator is not None:
            zne = {t: p for t, p in by_technique.items() if p[0].resilience.extrapolates}
            if not zne:
                raise ConfigError(f"--zne-extrapolator refits a ZNE run's noise-factor values; "
                                  f"{where} has none (run it with --mitigate zne)")
            for pubs in zne.values():  # the extrapolators must suit the run's factors
                Resilience(zne=True, zne_factors=pubs[0].resilience.zne_factors,
                           zne_extrapolator=self.zne_extrapolator)
        return by_technique

    def _chosen(self, backend, pubs: list[MeasuredPub]) -> tuple[str, ...]:
        """The hypotheses to fit: those asked for, or every one the calibration allows (a
        two-scale fit needs readout errors to scale)."""
        measured = sorted({q for pub in pubs for q in measured_qubits(pub.isa)})
        sensitive = readout_sensitive(calibrated_readout(_snapshot(backend), measured).errors)
        if self.models is None:
            return tuple(n for n in MODELS if sensitive or n != "device_two_scale_fit")
        if "device_two_scale_fit" in self.models and not sensitive:
            raise ConfigError(NO_READOUT)
        return self.models

    def aggregate(self, cells, results: list, seconds: float) -> Outcome:
        recorded = results[0]
        families = [r for r in results[1:] if isinstance(r, FamilyFits)]
        estimated = [r for r in results[1:] if isinstance(r, EstimatedReplay)]
        analysis = analyse(recorded, families, alpha=self.alpha, seed=self.seed,
                           device=_snapshot(cells[1].device), idle_noise=self.idle_noise,
                           seconds=seconds, estimated=estimated)
        from ..plots import compare_figures  # matplotlib only where figures are drawn

        return Outcome(results=analysis.to_dict(), report=report(analysis),
                       summary=summary(analysis), figures=compare_figures(analysis),
                       files=recorded.run_files())


# ------------------------------------------------------------------ the run
@dataclass(frozen=True)
class RecordedRun:
    """A run's results and measurements (a cell that is already done)."""

    results: dict[str, Any]
    pubs: list[MeasuredPub]
    outcome: Outcome | None = None  # a run done by this compare: written into run/
    config: dict[str, Any] | None = None
    label: str = "run"
    estimates: tuple[EstimatedPub, ...] = ()  # the runtime Estimator's PUBs, if it mitigated
    source: str | None = None  # the run folder it was read from

    def __call__(self, *, progress: bool = False) -> "RecordedRun":
        return self

    @property
    def model(self) -> Path:
        """The model the run measured, found from here (an older run folder recorded the
        path relative to where it was run)."""
        value = self.results["model"]
        return Path(value) if self.source is None else recorded_path(self.source, value)

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
                       config={"command": config.command, **config.to_dict()},
                       estimates=tuple(pub for m in done.estimated.values()
                                       for pub in m.estimates))


def _load_run(folder: Path) -> RecordedRun:
    results = read_run_results(folder)
    pubs = read_measurements(folder)
    _check_pubs(pubs, str(folder))
    return RecordedRun(results=results, pubs=pubs, estimates=tuple(read_estimates(folder)),
                       source=str(folder))


def _check_pubs(pubs: list[MeasuredPub], where: str) -> None:
    if not pubs:
        raise ConfigError(f"{where} measured no circuits: the model is classical, so there is "
                          f"no noise to compare")
    _check_shots(min(pub.shots for pub in pubs), f"{where} has")


def _check_shots(shots: int, where: str) -> None:
    if shots < MIN_SHOTS:
        raise ConfigError(f"{where} {shots} shot{'' if shots == 1 else 's'} per sample; fitting and comparing noise "
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


# ------------------------------------------------------------------ the cells
@dataclass(frozen=True)
class FamilyFits:
    """What one family's cell found: each hypothesis's fit (goodness of fit set), its
    model's predictions and router under the fitted distributions, drift over repeats, and
    how many exact evaluations the table took."""

    family: str
    fits: dict[str, Fit]
    predictions: dict[str, np.ndarray]
    gates: dict[str, np.ndarray]
    drift: Drift | None
    evaluations: int
    router: dict[str, np.ndarray | None] = dataclasses.field(default_factory=dict)  # the
    # router circuit's outputs (⟨Z_i⟩ or probabilities) under each fitted model


@dataclass(frozen=True)
class FamilyCell:
    """The hypotheses ``names`` of one gate-noise ``family``, fitted to the run's counts."""

    family: str
    names: tuple[str, ...]
    pubs: tuple[MeasuredPub, ...]
    device: str | Snapshot
    used: tuple[int, ...]
    basis: tuple[str, ...]
    idle: bool
    alpha: float
    model: str
    samples: int
    split: str = "test"  # the split whose first ``samples`` rows the run measured

    @property
    def label(self) -> str:
        return f"{self.family} models"

    def __call__(self, *, progress: bool = False) -> FamilyFits:
        backend = _snapshot(self.device)  # properties read once, not at every fit step
        repeats = by_repeat(self.pubs)
        together = pooled(self.pubs)
        evaluator = IsaEvaluator([(pub.isa, pub.values) for pub in together],
                                 backend=backend if self.idle else None)
        family = (device_gates(backend, self.used, idle=self.idle)
                  if self.family == DEVICE_FAMILY else depolarizing_gates(self.basis))
        table = GateTable.of(family, evaluator)
        measured = evaluator.measured
        errors = calibrated_readout(backend, sorted({q for m in measured for q in m})).errors
        data = FitData([pub.counts for pub in together], measured, errors)
        fits = {name: fit_and_test(hypothesis(name), table, data, alpha=self.alpha)
                for name in self.names}
        found = None
        if len(repeats) > 1 and "device_scaled_fit" in fits:
            found = drift(hypothesis("device_scaled_fit"), table, data,
                          [[pub.counts for pub in group] for group in repeats],
                          fits["device_scaled_fit"])
        model, _, prepared = load_trained(self.model)
        x, _ = split_rows(prepared, self.split, self.samples)
        tap, replays, router = RouterTap(model), {}, {}
        for name, fit in fits.items():
            replays[name] = replay(model, x, together, fit.probabilities)
            router[name] = tap.last
        tap.close()
        return FamilyFits(self.family, fits, {n: r[0] for n, r in replays.items()},
                          {n: r[1] for n, r in replays.items()}, found, table.evaluations,
                          router)


@dataclass(frozen=True)
class EstimatedReplay:
    """One estimator technique's values replayed through the model: its predictions, router
    gates and router circuit outputs, the exact router outputs on the same samples, and the
    router PUB's z-scores (mitigated - ideal) / reported std (``None`` for a classical
    router)."""

    name: str
    technique: str
    extrapolator: tuple[str, ...] | None
    predictions: np.ndarray
    gates: np.ndarray
    router: np.ndarray | None
    ideal_router: np.ndarray | None
    z: np.ndarray | None


@dataclass(frozen=True)
class EstimatedCell:
    """The run's estimator PUBs of one ``technique`` through the model: the runtime's values,
    or (``extrapolator``) their noise-factor values refitted offline."""

    technique: str
    pubs: tuple[EstimatedPub, ...]
    model: str
    samples: int
    extrapolator: tuple[str, ...] | None = None
    split: str = "test"

    @property
    def name(self) -> str:
        if self.extrapolator is None:
            return self.technique
        return f"{self.technique} (refit: {', '.join(self.extrapolator)})"

    @property
    def label(self) -> str:
        return f"{self.name} values"

    def __call__(self, *, progress: bool = False) -> EstimatedReplay:
        tables = None if self.extrapolator is None else \
            [extrapolate(pub, self.extrapolator) for pub in self.pubs]
        model, _, prepared = load_trained(self.model)
        x, _ = split_rows(prepared, self.split, self.samples)
        predictions, gates, router = replay_estimates(model, x, self.pubs, tables)
        tap = RouterTap(model)
        with torch.no_grad():
            model.forward_with_gates(x)
        tap.close()
        layer = getattr(getattr(model, "router", None), "layer", None)
        z = None
        if layer is not None:
            evs, stds = tables[0] if tables else (self.pubs[0].evs, self.pubs[0].stds)
            z = router_z_scores(layer, self.pubs[0], evs, stds, tap.last)
        return EstimatedReplay(self.name, self.technique, self.extrapolator, predictions,
                               gates, router, tap.last, z)
