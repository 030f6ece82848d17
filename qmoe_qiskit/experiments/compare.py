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
from ..jobs.outcomes import MeasuredPub, by_repeat, pooled, read_measurements
from ..jobs.readout import check_mitigation
from ..noise_models.evaluate import IsaEvaluator, gate_names
from ..noise_models.factories import calibrated_readout
from ..noise_models.families import GateTable, depolarizing_gates, device_gates
from ..transpile import measured_qubits, used_qubits
from .base import Outcome, folder_writers, load_trained, read_results
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
from .replay import replay
from .run import RunConfig

__all__ = ["CompareConfig", "MODELS", "MIN_SHOTS", "FamilyCell", "FamilyFits", "Snapshot"]

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
    mitigate: str | None = None  # with ``run``: require the run's readout calibration
    idle_noise: bool = True
    models: tuple[str, ...] | None = None

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
        by_repeat(recorded.pubs)  # every repeat measured the same circuits
        device_backend = _calibration(recorded.results)
        used = tuple(sorted({q for pub in recorded.pubs for q in used_qubits(pub.isa)}))
        names = self._chosen(device_backend, recorded.pubs)
        common = dict(pubs=tuple(recorded.pubs), device=device_backend, used=used,
                      basis=tuple(gate_names([pub.isa for pub in recorded.pubs])),
                      idle=self.idle_noise, alpha=self.alpha, model=recorded.results["model"],
                      samples=int(recorded.results["samples"]))
        cells = [recorded]
        for family in dict.fromkeys(hypothesis(n).family for n in names):
            chosen = tuple(n for n in names if hypothesis(n).family == family)
            cells.append(FamilyCell(family=family, names=chosen, **common))
        return cells

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
        recorded, families = results[0], results[1:]
        analysis = analyse(recorded, families, alpha=self.alpha, seed=self.seed,
                           device=_snapshot(cells[1].device), idle_noise=self.idle_noise,
                           seconds=seconds)
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
        x = torch.as_tensor(prepared.x_test[:self.samples], dtype=torch.float32)
        replays = {name: replay(model, x, together, fit.probabilities)
                   for name, fit in fits.items()}
        return FamilyFits(self.family, fits, {n: r[0] for n, r in replays.items()},
                          {n: r[1] for n, r in replays.items()}, found, table.evaluations)
