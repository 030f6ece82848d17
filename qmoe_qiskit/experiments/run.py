"""``qmoe run``: a trained model's held-out accuracy measured on a backend through the job layer.

Every quantum part of the model (router, quantum experts) runs on a
:class:`~qmoe_qiskit.jobs.RuntimeSampler` for the backend (estimator-read circuits through a
:class:`~qmoe_qiskit.primitives.SamplerEstimator` on top of it): one PUB per circuit carrying
the bindings of all test samples, all PUBs of the forward pass in one job (more only where
they exceed the service's execution limit), answered from the result cache when they were run
before, and recorded in the job ledger before the run waits on them. The same samples are
also evaluated exactly, so the report sets the backend against the ideal model. ``dry_run``
stops after planning: circuits, bindings, shots and an estimated QPU time; it writes nothing.

Mitigation is a primitive wrapped around the job layer's (:func:`mitigated_primitives`): the
model runs a second time, in the same pass and through ``using()``, on the technique's
primitive, and the report sets it beside the raw pass.

- ``mitigate="readout"``: mthree's :class:`~qmoe_qiskit.jobs.readout.ReadoutSampler` corrects
  the very counts the raw pass read (not measured again) with a balanced readout calibration of
  the measured qubits that joins the same job. The raw counts are what the run keeps, so the
  model's PUBs keep their cache keys.
- ``mitigate="trex"``, ``"zne"`` or ``"trex,zne"``: the runtime's client-side Estimator
  (:class:`~qmoe_qiskit.jobs.RuntimeEstimator`) with ⟨Z⟩ routers as their observables and
  probability circuits as the Z strings of their outcomes
  (:class:`~qmoe_qiskit.jobs.mitigation.EstimatorSampler`), one estimator job beside the
  sampler's.

``results.json`` then has ``mitigated[<technique>]``: accuracy, the router's error against
ideal (mean |value - ideal| of its outputs), the RMS of (mitigated - ideal) / reported std (the
estimator's techniques; mthree reports none), and the estimated QPU seconds of the technique's
PUBs, beside the raw ``router_error_vs_ideal``; readout also keeps its ``mitigation`` block.

``repeats=N`` measures the same circuits in N separate passes, each its own job (spaced
``repeat_interval`` seconds apart, start to start), each cached, ledgered and costed like any
job: what ``qmoe compare`` needs to see drift between jobs. The accuracy and router are then
those of the counts pooled over the repeats; each repeat's accuracy is kept beside them.

The backend is a name (an IBM Quantum backend, or a fake backend for the runtime's local
testing mode), a stand-in of a fake backend with known noise (``noise_scale``, optionally
``readout_scale`` and ``noise_drift``), or any backend object (a stand-in built with
:func:`~qmoe_qiskit.noise_models.stand_in`).

One cell: the backend pass needs every sample's bindings in one PUB per circuit.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from qiskit.providers import BackendV2
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError, check_seed, choices
from ..files import file_sha256
from ..jobs import (
    JobOptions,
    Ledger,
    ResultCache,
    RuntimeSampler,
    connect,
    default_cache_dir,
)
from ..jobs.cache import library_versions
from ..jobs.estimator import RuntimeEstimator, estimate_files
from ..jobs.learning import LEARNER
from ..jobs.layer import MAX_EXECUTIONS, pack
from ..jobs.mitigation import EstimatorSampler, Mitigation, parse_mitigation, walsh
from ..jobs.outcomes import MeasuredPub, by_repeat, measurement_files, pooled
from ..jobs.readout import CIRCUIT_PREFIX as CALIBRATION_PREFIX
from ..jobs.readout import ReadoutCalibration, ReadoutSampler
from ..jobs.sampler import PubOutcome
from ..metrics import accuracy, mean_tvd, routing_stats
from ..models import model_path
from ..noise_models.factories import MAX_SCALE, TOO_NOISY
from ..noise_models.standin import MAX_DRIFT, MAX_DRIFT_WHY, stand_in
from ..plots import router_agreement
from ..primitives import SamplerEstimator
from ..resources import check_memory
from ..simulation import ExactSampler
from ..transpile import measured_qubits
from .base import Outcome, check_fields, load_trained, read_results
from .replay import RouterTap, replay

__all__ = ["RunConfig", "RunCell", "BackendPass", "plan_text", "read_run_results"]

# what a run folder's results.json must hold for compare and calibrate to read it back
RUN_FIELDS = {"model": str, "backend": str, "samples": int, "shots": int,
              "accuracy": (int, float), "labels": list, "predictions": list, "router": dict}


def read_run_results(folder: str | Path) -> dict[str, Any]:
    """The ``results.json`` of a finished ``qmoe run`` that measured something, with every
    field compare and calibrate read, checked; a one-line error naming the file otherwise."""
    _, results = read_results(folder, "run")
    if results.get("dry_run"):
        raise ConfigError(f"{folder} is a dry run: it measured nothing")
    check_fields(results, folder, "run", RUN_FIELDS)  # once it is known to hold measurements
    samples = results["samples"]
    for name in ("labels", "predictions"):
        if len(results[name]) != samples:
            raise DataError(f"{Path(folder) / 'results.json'} is damaged or from another "
                            f"version: {len(results[name])} {name} for {samples} samples; run "
                            f"qmoe run again")
    return results

BYTES_PER_LOCAL_SHOT = 120  # the runtime's local simulator (Aer keeps every shot): 101-115 measured
BYTES_PER_REMOTE_SHOT = 8  # the returned outcomes, their cached copy and decoding


@dataclass(frozen=True)
class RunConfig:
    command: ClassVar[str] = "run"
    model: str
    backend: str | BackendV2  # an IBM Quantum backend, a fake backend (local testing mode),
    # or a backend object (a stand-in) that runs in local testing mode
    shots: int = 1024
    samples: int | None = None  # the first K samples of ``split``; None: all of them
    optimization_level: int = 1
    seed: int = 0  # transpiler seed; in local testing mode also the simulator's
    layout: tuple[int, ...] | None = None  # physical qubits; None: lowest calibrated error
    twirling: bool = False
    dynamical_decoupling: bool = False
    cache_dir: str | None = None  # None: $QMOE_CACHE_DIR or ~/.cache/qmoe-qiskit
    channel: str | None = None
    instance: str | None = None
    dry_run: bool = False
    noise_scale: float | None = None  # a stand-in: the fake backend with every rate times this
    mitigate: str | None = None  # "readout" (mthree, calibrated in the job), or the runtime
    # Estimator's "trex", "zne", "trex,zne"
    zne_factors: tuple[float, ...] | None = None  # None: the runtime's 1, 3, 5
    zne_extrapolator: tuple[str, ...] | None = None  # None: exponential, then linear
    readout_scale: float | None = None  # the stand-in's readout errors times this instead
    noise_drift: float | None = None  # the stand-in's scale drawn per job, sd this x the scale
    repeats: int = 1  # measure the same circuits this many times, each in jobs of its own
    repeat_interval: float = 0.0  # seconds from one repeat's start to the next's
    split: str = "test"  # whose first ``samples`` rows run: "test" (held out) or "train" (what
    # ``qmoe train --calibrate-on`` fits the classical parts to)

    def __post_init__(self):
        object.__setattr__(self, "model", str(self.model))
        if isinstance(self.backend, str):
            if not self.backend.strip():
                raise ConfigError("backend must be a backend name, got ''")
        elif not isinstance(self.backend, BackendV2):
            raise ConfigError(f"backend must be a backend name or a backend object (such as "
                              f"stand_in('fake_manila', scale=2)), got {self.backend!r}")
        self._check_stand_in()
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or \
                self.repeats < 1:
            raise ConfigError(f"repeats must be an integer >= 1, got {self.repeats!r}")
        if isinstance(self.repeat_interval, bool) or \
                not isinstance(self.repeat_interval, (int, float)) or \
                not np.isfinite(self.repeat_interval) or self.repeat_interval < 0:
            raise ConfigError(f"repeat interval must be a number of seconds >= 0, got "
                              f"{self.repeat_interval!r}")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"samples must be >= 1, got {self.samples}")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; valid: {choices(SPLITS)}")
        check_seed(self.seed)
        mitigation = self.mitigation()
        if mitigation is not None and not mitigation.readout and self.repeats > 1:
            raise ConfigError(f"--repeats with --mitigate {mitigation.name} is not supported; "
                              f"measure repeats raw or with --mitigate readout")
        self.job_options()  # validates shots, optimization level

    def mitigation(self) -> Mitigation | None:
        """The techniques ``mitigate`` names (checked; ``None`` for none)."""
        return parse_mitigation(self.mitigate, zne_factors=self.zne_factors,
                                zne_extrapolator=self.zne_extrapolator)

    def _check_stand_in(self) -> None:
        given = [(flag, value) for flag, value in (
            ("--noise-scale", self.noise_scale), ("--readout-scale", self.readout_scale),
            ("--noise-drift", self.noise_drift)) if value is not None]
        if not given:
            return
        if not isinstance(self.backend, str):
            raise ConfigError(f"{given[0][0]} makes a stand-in of a fake backend by name; a "
                              f"backend object already has its noise (give it to stand_in())")
        for flag, value in given:
            check_noise_scale(value, self.backend, flag)
        if self.noise_scale is None:
            raise ConfigError(f"{given[0][0]} describes a stand-in of {self.backend}; give its "
                              f"gate noise scale with --noise-scale too")

    @property
    def local(self) -> bool:
        """Whether it runs in the runtime's local testing mode (fake backends, objects)."""
        return not isinstance(self.backend, str) or self.backend.startswith("fake_")

    @property
    def writes(self) -> bool:
        return not self.dry_run  # a dry run writes nothing

    def inputs(self) -> tuple[Path, ...]:
        return (Path(self.model),)

    def protected(self) -> tuple[Path, ...]:
        """What --out must never be, hold or lie inside: the model, the cache and its ledger
        (the record of paid jobs)."""
        cache, ledger = self.stores()
        return (Path(self.model), Path(cache.root), Path(ledger.path))

    def stores(self) -> tuple[ResultCache, Ledger]:
        """The result cache and job ledger this run reads and writes."""
        root = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        return ResultCache(root), Ledger(root / "ledger.jsonl")

    def target(self) -> str | BackendV2:
        """What to connect to: the backend (name or object), or its stand-in with scaled
        noise (each job its own draw where the stand-in drifts, seeded by ``seed``)."""
        if self.noise_scale is None:
            return self.backend
        return stand_in(self.backend, scale=self.noise_scale, readout_scale=self.readout_scale,
                        drift=self.noise_drift or 0.0, seed=self.seed)

    def job_options(self) -> JobOptions:
        return JobOptions(shots=self.shots, optimization_level=self.optimization_level,
                          seed_transpiler=self.seed, initial_layout=self.layout,
                          twirling=self.twirling, dynamical_decoupling=self.dynamical_decoupling)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not isinstance(self.backend, str):  # an object: its name and what it stands for
            out["backend"] = self.backend.name
            truth = getattr(self.backend, "truth", None)
            if truth is not None:
                out["stand_in"] = {k: v for k, v in truth.items() if k != "job_scales"}
        out["layout"] = list(self.layout) if self.layout is not None else None
        return out

    def plan(self) -> list["RunCell"]:
        """Checks the model, the sample count and (unless planning only) that the cache and
        ledger can be written; the cell checks the account before anything is transpiled."""
        model, _, data = load_trained(self.model)
        if not model.quantum_layers():
            raise ConfigError("the model has no quantum circuits (router and experts are "
                              "classical); there is nothing to run on a backend")
        available = len(split_rows(data, self.split)[1])
        if self.samples is not None and self.samples > available:
            raise ConfigError(f"samples={self.samples} but the model's {self.split} split has "
                              f"{available}")
        self._check_size(self.samples or available)
        if not self.dry_run:
            for store in self.stores():
                store.check_writable()
        return [RunCell(self)]

    def _check_size(self, samples: int) -> None:
        """Refuse what this machine cannot hold, before anything is allocated or submitted (a
        dry run included). Jobs over the service's limit are split, not refused."""
        executions = samples * self.shots  # one repeat at a time
        what = f"{samples} samples x {self.shots:,} shots"
        if self.local:  # the runtime's local simulator keeps every shot
            check_memory(executions * BYTES_PER_LOCAL_SHOT, f"{what} in local testing mode",
                         "use fewer --samples or --shots")
        else:
            check_memory(executions * BYTES_PER_REMOTE_SHOT, what,
                         "use fewer --samples or --shots")

    def aggregate(self, cells, results: list["BackendPass"], seconds: float) -> Outcome:
        [done] = results
        plan = {"command": "run", "model": str(Path(self.model).resolve()),
                "model_sha256": file_sha256(model_path(self.model)), "backend": done.backend,
                "device": done.device, "noise_scale": self.noise_scale,
                "stand_in": done.stand_in, "ran_at": done.ran_at,
                "local_testing_mode": done.local, "calibration": done.calibration,
                "shots": self.shots, "samples": len(done.labels), "split": self.split,
                "repeats": self.repeats,
                "repeat_interval": self.repeat_interval,
                "options": asdict(self.job_options()), "dry_run": self.dry_run,
                **_costs(done.records), "pubs": done.records, "versions": library_versions()}
        if self.dry_run:
            return Outcome(results=plan, report="", summary=plan_text(plan))
        gates, ideal = np.asarray(done.gates), np.asarray(done.ideal_gates)
        results = {
            **plan,
            "accuracy": accuracy(done.labels, done.predictions),
            "repeat_accuracy": [accuracy(done.labels, p) for p in done.repeat_predictions],
            "ideal_accuracy": accuracy(done.labels, done.ideal_predictions),
            "jobs_submitted": done.stats["jobs_submitted"],
            "pubs_submitted": done.stats["pubs_submitted"],
            "jobs_fetched": done.stats["jobs_fetched"],
            "cache_hits": done.stats["cache_hits"],
            "mean_tvd_to_ideal": mean_tvd(gates, ideal),
            "router": {"distributions": gates.tolist(), "ideal": ideal.tolist()},
            "routing": {"measured": routing_stats(gates), "ideal": routing_stats(ideal)},
            "predictions": done.predictions.tolist(),
            "labels": done.labels.tolist(),
            "mitigation": _mitigation(done, ideal),
            "router_error_vs_ideal": _router_error(done.raw_router, done.ideal_router),
            "router_circuit": {"raw": _listed(done.raw_router),  # ⟨Z_i⟩ or probabilities
                               "ideal": _listed(done.ideal_router)},
            "mitigated": _mitigated(done),
            "wall_seconds": seconds,
        }
        repeated = (f"; {self.repeats} repeats pooled, accuracy per repeat "
                    + ", ".join(f"{a:.3f}" for a in results["repeat_accuracy"])
                    if self.repeats > 1 else "")
        summary = "\n".join([
            f"{results['backend']}: accuracy {results['accuracy']:.3f} on {results['samples']} "
            f"{_rows(self.split)} (ideal {results['ideal_accuracy']:.3f}), {results['shots']} "
            f"shots; "
            f"router TVD to ideal {results['mean_tvd_to_ideal']:.4f}" + repeated
            + ("" if results["mitigation"] is None else
               f"; readout-mitigated: accuracy {results['mitigation']['accuracy']:.3f}, "
               f"router TVD to ideal {results['mitigation']['mean_tvd_to_ideal']:.4f}"),
            *_technique_lines(results),
            f"jobs submitted {results['jobs_submitted']} (carrying {results['pubs_submitted']} "
            f"PUBs), fetched {results['jobs_fetched']}, cache hits {results['cache_hits']}; "
            f"QPU time {_seconds(results['qpu_seconds'])} charged, "
            f"{_seconds(results['estimated_qpu_seconds'])} estimated"])
        shots = self.shots * self.repeats
        figure = router_agreement(ideal, gates, title=f"router on {done.backend}, {shots} shots"
                                  + (f" ({self.repeats} repeats)" if self.repeats > 1 else ""))
        return Outcome(results=results, report=_report(results), summary=summary,
                       figures={"router_vs_ideal.png": figure},
                       files={**measurement_files(done.measured),
                              **estimate_files([pub for m in done.estimated.values()
                                                for pub in m.estimates])})


@dataclass(frozen=True)
class BackendPass:
    """The model's outputs on the backend and exactly, for the same samples, and what each
    circuit's PUB cost (its records). With repeats, the outputs are those of the counts pooled
    over the repeats, and each repeat's predictions are kept."""

    backend: str
    local: bool
    calibration: str
    device: str  # the device whose calibration describes the backend (a stand-in's device)
    ran_at: str  # when its jobs ran (UTC; the run's start where the service does not say):
    # the calibration in force then is the one to compare with
    records: list[dict[str, Any]]
    measured: list[MeasuredPub]  # what each PUB that ran measured, every repeat (none for a
    # dry run)
    stats: dict[str, int]
    gates: np.ndarray | None  # None for a dry run
    ideal_gates: np.ndarray | None
    predictions: np.ndarray | None
    ideal_predictions: np.ndarray | None
    labels: np.ndarray
    repeat_predictions: list[np.ndarray] = ()
    stand_in: dict | None = None  # a stand-in's truth (its job scales where it drifts)
    readouts: list[ReadoutCalibration] = ()  # measured in each repeat's job (``mitigate``)
    mitigated_gates: np.ndarray | None = None  # the router on readout-mitigated distributions
    mitigated_predictions: np.ndarray | None = None
    ideal_router: np.ndarray | None = None  # the router circuit's outputs (⟨Z_i⟩ or
    raw_router: np.ndarray | None = None  # probabilities): exact, and measured raw
    mitigated_router: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    estimated: dict[str, "_Mitigated"] = dataclasses.field(default_factory=dict)  # by technique


@dataclass(frozen=True)
class RunCell:
    config: RunConfig
    label: str = "backend"
    runs_in_driver: ClassVar[bool] = True  # submits through this process's ledger and cache

    def __call__(self, *, progress: bool = False) -> BackendPass:
        config = self.config
        ran_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        model, _, data = load_trained(config.model)
        x, y = split_rows(data, config.split, config.samples)
        connection = connect(config.target(), channel=config.channel, instance=config.instance)
        cache, ledger = config.stores()
        verb = "planning" if config.dry_run else "running"
        with tqdm(total=len(model.quantum_layers()) * config.repeats,
                  desc=f"{verb} on {connection.name}", disable=not progress, unit="PUB",
                  leave=False) as bar:
            sampler = RuntimeSampler(
                connection, config.job_options(), cache=cache, ledger=ledger,
                plan_only=config.dry_run, seed=config.seed,
                on_record=lambda record: _advance(bar),
                on_wait=lambda what, state, seconds: bar.set_postfix_str(
                    f"job of {what}: {state.lower()}, {seconds:.0f} s"))
            marks = [0, 0]  # where the model's PUBs start and end among the sampler's outcomes
            mitigated_sampler, mitigated_estimator = mitigated_primitives(
                sampler, config.mitigation())
            router = RouterTap(model)

            def forward():
                marks[0] = len(sampler.outcomes)
                result = model.forward_with_gates(x)
                raw_router = router.last
                marks[1] = len(sampler.outcomes)
                mitigated = None
                if mitigated_sampler is not None:  # the same pass on the mitigating wrapper
                    first = len(mitigated_primitive_outcomes(mitigated_sampler,
                                                             mitigated_estimator, 0))
                    with model.using(sampler=mitigated_sampler, estimator=mitigated_estimator):
                        outputs, gates = model.forward_with_gates(x)
                    mitigated = _Mitigated(outputs.argmax(dim=-1).numpy(), router.last,
                                           mitigated_primitive_outcomes(
                                               mitigated_sampler, mitigated_estimator, first),
                                           gates=gates.numpy())
                return (result, mitigated), raw_router

            passes, measured = [], []
            start = time.monotonic()
            with sampler, model.using(sampler=sampler, estimator=SamplerEstimator(sampler)), \
                    torch.no_grad():
                for repeat in range(config.repeats):
                    wait_for = start + repeat * config.repeat_interval - time.monotonic()
                    if wait_for > 0 and not config.dry_run:
                        bar.set_postfix_str(f"repeat {repeat + 1} starts in {wait_for:.0f} s")
                        time.sleep(wait_for)
                    sampler.repeat = repeat
                    passes.append(sampler.run_together(forward))
                    measured += [_measured(o, repeat)
                                 for o in sampler.outcomes[marks[0]:marks[1]]]
        router.close()
        backend = connection.backend
        truth = getattr(backend, "truth", None)
        common = dict(backend=connection.name, local=connection.local,
                      calibration=connection.calibration,
                      device=getattr(backend, "device", connection.name),
                      ran_at=min((r.ran_at for r in sampler.records if r.ran_at), default=ran_at),
                      records=[asdict(r) for r in sampler.records], stats=sampler.stats(),
                      labels=y, measured=measured,
                      stand_in=dict(truth) if truth is not None else None)
        if config.dry_run:
            return BackendPass(gates=None, ideal_gates=None, predictions=None,
                               ideal_predictions=None, **common)
        tap = RouterTap(model)
        with torch.no_grad():
            ideal_outputs, ideal_gates = model.forward_with_gates(x)
            ideal_router = tap.last
            repeat_predictions = [outputs.argmax(dim=-1).numpy()
                                  for ((outputs, _), _), _ in passes]
            if config.repeats == 1:
                [(((outputs, gates), _), raw_router)] = passes
                predictions, gates = repeat_predictions[0], gates.numpy()
            else:  # the counts of every repeat together
                pubs = pooled(measured)
                predictions, gates = replay(model, x, pubs, [frequencies(p) for p in pubs])
                raw_router = tap.last
            mitigated = {}
            if isinstance(mitigated_sampler, ReadoutSampler):
                readouts = [m.estimates[0].calibration for (_, m), _ in passes]
                if config.repeats == 1:
                    [((_, m), _)] = passes
                    predictions_m, router, router_m = m.predictions, m.gates, m.router
                else:  # every repeat's counts corrected with its own calibration, pooled
                    predictions_m, router = replay(model, x, pooled(measured),
                                                   mitigated_tables(readouts, measured))
                    router_m = tap.last
                mitigated = dict(readouts=readouts, mitigated_gates=router,
                                 mitigated_predictions=predictions_m,
                                 mitigated_router={"readout": router_m})
        tap.close()
        estimated = passes[0][0][1]
        if estimated is not None and not isinstance(mitigated_sampler, ReadoutSampler):
            layer = getattr(model.router, "layer", None)
            estimated = dataclasses.replace(
                estimated, z_rms=_router_z_rms(layer, estimated, ideal_router))
            mitigated["estimated"] = {config.mitigation().name: estimated}  # one pass
        return BackendPass(gates=gates, ideal_gates=ideal_gates.numpy(),
                           predictions=predictions, repeat_predictions=repeat_predictions,
                           ideal_predictions=ideal_outputs.argmax(dim=-1).numpy(),
                           ideal_router=ideal_router, raw_router=raw_router, **common,
                           **mitigated)


@dataclass(frozen=True)
class _Mitigated:
    """The model's pass on a mitigating primitive: predictions, the router circuit's outputs,
    and what the primitive returned for the router (the runtime Estimator's ⟨Z⟩ observables
    or Z strings of its outcomes; mthree's corrected counts)."""

    predictions: np.ndarray
    router: np.ndarray | None
    estimates: list  # the pass's EstimatedPub or ReadoutMitigatedPub, the router's first
    z_rms: float | None = None  # RMS of (estimate - ideal) / reported std, router outputs
    gates: np.ndarray | None = None  # the router's gates on the mitigated values


def mitigated_primitives(sampler: RuntimeSampler, mitigation: Mitigation | None):
    """The sampler and estimator a model runs on for ``mitigation`` (both ``None`` without):
    mthree's :class:`ReadoutSampler` around ``sampler``, or the runtime Estimator with the
    technique's resilience and the sampler it carries probability circuits through."""
    if mitigation is None:
        return None, None
    if mitigation.readout:
        wrapped = ReadoutSampler(sampler)
        return wrapped, SamplerEstimator(wrapped)
    estimator = RuntimeEstimator(sampler, mitigation.resilience)
    return EstimatorSampler(estimator), estimator


def mitigated_primitive_outcomes(sampler, estimator, first: int) -> list:
    """What the mitigating primitive measured in the pass, the router's PUB first: mthree's
    corrected PUBs, or the runtime Estimator's."""
    if isinstance(sampler, ReadoutSampler):
        return sampler.outcomes[first:]
    return estimator.outcomes[first:]


SPLITS = ("test", "train")


def split_rows(data, split: str = "test", count: int | None = None
               ) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``count`` rows (all for ``None``) of ``split`` of a model's data: inputs as
    a float32 tensor, labels."""
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    count = len(y) if count is None else count
    return torch.as_tensor(x[:count], dtype=torch.float32), np.asarray(y[:count])


def _rows(split: str) -> str:
    return "held-out test samples" if split == "test" else "training samples"


def _advance(bar) -> None:
    """One more PUB done; calibration circuits and split PUBs add to the model's circuits."""
    if bar.total is not None and bar.n >= bar.total:
        bar.total = bar.n + 1
        bar.refresh()
    bar.update()


def check_noise_scale(scale: float, backend: str, flag: str = "--noise-scale") -> None:
    """A stand-in's scale (or drift): for fake backends only, finite and >= 0."""
    if not backend.startswith("fake_"):
        raise ConfigError(f"{flag} makes a stand-in of a fake backend whose truth is "
                          f"known; it is refused for the real backend {backend!r}")
    what = flag[2:].replace('-', ' ')
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or \
            not np.isfinite(scale) or scale < 0:
        raise ConfigError(f"{what} must be a finite number >= 0, got {scale!r}")
    top, why = (MAX_DRIFT, MAX_DRIFT_WHY) if flag == "--noise-drift" else (MAX_SCALE, TOO_NOISY)
    if scale > top:
        raise ConfigError(f"{flag} must be at most {top:g}, got {scale:g}: {why}")


def frequencies(pub: MeasuredPub) -> np.ndarray:
    """A PUB's measured outcome frequencies ``(bindings, outcomes)``."""
    return pub.counts / pub.counts.sum(axis=1, keepdims=True)


def mitigated_tables(readouts: list[ReadoutCalibration],
                     pubs: list[MeasuredPub]) -> list[np.ndarray]:
    """Each circuit's readout-mitigated outcome distributions ``(bindings, outcomes)``: every
    repeat's counts corrected with the calibration measured in its own job, averaged over the
    repeats."""
    groups = by_repeat(pubs)
    if len(readouts) != len(groups):
        raise DataError(f"{len(readouts)} readout calibrations for {len(groups)} repeats")
    tables = [[readout.correct(pub.counts, measured_qubits(pub.isa)) for pub in group]
              for readout, group in zip(readouts, groups)]
    return [np.mean([t[i] for t in tables], axis=0) for i in range(len(groups[0]))]


def _mitigation(done: BackendPass, ideal: np.ndarray) -> dict[str, Any] | None:
    if not done.readouts:
        return None
    return {"method": "readout", "calibration": done.readouts[0].to_dict(),
            "repeat_calibrations": [r.to_dict() for r in done.readouts],
            "accuracy": accuracy(done.labels, done.mitigated_predictions),
            "mean_tvd_to_ideal": mean_tvd(done.mitigated_gates, ideal),
            "router": done.mitigated_gates.tolist()}


def _router_error(values: np.ndarray | None, ideal: np.ndarray | None) -> float | None:
    """Mean over samples of the mean |value - ideal value| of the router circuit's outputs."""
    if values is None or ideal is None:
        return None
    return float(np.abs(np.asarray(values) - np.asarray(ideal)).mean())


def _router_z_rms(layer, estimated: "_Mitigated", ideal_router: np.ndarray) -> float | None:
    """RMS over samples and outputs of (mitigated - ideal) / reported std of what the runtime
    estimated for the router: its ⟨Z_i⟩, or the Z strings of its outcomes."""
    if layer is None or not estimated.estimates:
        return None
    pub = estimated.estimates[0]
    return z_rms(router_z_scores(layer, pub, pub.evs, pub.stds, ideal_router))


def router_z_scores(layer, pub, evs: np.ndarray, stds: np.ndarray,
                    ideal_router: np.ndarray) -> np.ndarray:
    """(estimate - ideal) / std ``(rows, observables)`` of the router's estimator PUB ``pub``
    (its ⟨Z_i⟩, or the Z strings of its outcomes) with values ``evs`` and stds ``stds``; NaN
    where a std is 0 (or below :data:`TINY_STD`). ``ideal_router``: the router circuit's
    exact outputs on the same rows."""
    if layer.ansatz.readout == "expectations":
        ideal = np.asarray(ideal_router)
    else:  # the exact Z strings of the router's logical circuit on the same bindings
        circuit = layer.ansatz.circuit
        column = {p.name: i for i, p in enumerate(circuit.parameters)}
        # the QNN's circuit names its parameters inputs[i] and weights[j] (qiskit-machine-
        # learning reparameterizes it): the ansatz's i-th input and j-th weight
        renamed = {**{f"inputs[{i}]": p.name for i, p in enumerate(layer.ansatz.inputs)},
                   **{f"weights[{j}]": p.name for j, p in enumerate(layer.ansatz.weights)}}
        values = np.zeros((len(pub.values), circuit.num_parameters))
        values[:, [column[renamed.get(name, name)] for name in pub.parameters]] = pub.values
        [register] = [c.name for c in circuit.cregs]
        probabilities = ExactSampler(default_shots=None).run(
            [(circuit, values)]).result()[0].data[register].probabilities
        ideal = probabilities @ walsh(circuit.num_clbits)[:, 1:]
    stds = np.where(np.asarray(stds) > TINY_STD, stds, np.nan)
    return (np.asarray(evs) - ideal) / stds


TINY_STD = 1e-12  # a reported std this small is a fit's rounding, not a standard error: its z
# is left undefined


def z_rms(z: np.ndarray) -> float | None:
    """The RMS of the finite z-scores (``None`` for none)."""
    z = np.asarray(z, dtype=float)
    return float(np.sqrt(np.nanmean(z ** 2))) if np.isfinite(z).any() else None


def _mitigated(done: BackendPass) -> dict[str, Any] | None:
    """Per technique: accuracy, router error against ideal, the std calibration of what the
    runtime reported and the estimated QPU seconds of its PUBs (``None`` without
    mitigation)."""
    if not done.readouts and not done.estimated:
        return None
    records = done.records
    raw = sum(r["shot_seconds"] or 0 for r in records
              if r.get("primitive", "sampler") == "sampler"
              and not r["circuit"].startswith(CALIBRATION_PREFIX))
    out = {}
    if done.readouts:
        seconds = sum(r["shot_seconds"] or 0 for r in records
                      if r.get("primitive", "sampler") == "sampler")
        out["readout"] = {
            "accuracy": accuracy(done.labels, done.mitigated_predictions),
            "router_error_vs_ideal": _router_error(done.mitigated_router.get("readout"),
                                                   done.ideal_router),
            "router_z_rms": None, "router_z_rms_note": "mthree reports no standard errors",
            "qpu_seconds_estimate": seconds, "qpu_multiple": seconds / raw if raw else None,
            "router": _listed(done.mitigated_router.get("readout")),
            "predictions": _listed(done.mitigated_predictions)}
    for name, estimated in done.estimated.items():
        seconds = sum(r["shot_seconds"] or 0 for r in records  # its PUBs, and learning
                      if r.get("primitive") in (f"estimator ({name})", f"{LEARNER} ({name})"))
        out[name] = {
            "accuracy": accuracy(done.labels, estimated.predictions),
            "router_error_vs_ideal": _router_error(estimated.router, done.ideal_router),
            "router_z_rms": estimated.z_rms,
            "qpu_seconds_estimate": seconds, "qpu_multiple": seconds / raw if raw else None,
            "router": _listed(estimated.router),
            "predictions": _listed(estimated.predictions)}
    return out


def _listed(values: np.ndarray | None) -> list | None:
    return None if values is None else np.asarray(values).tolist()


def _measured(outcome: PubOutcome, repeat: int) -> MeasuredPub:
    [counts] = outcome.counts.values()  # QNN circuits measure into one register
    return MeasuredPub(outcome.isa, outcome.values, counts, repeat)


def _costs(records: list[dict]) -> dict[str, Any]:
    """What the run's uncached PUBs cost: estimated beforehand (bindings x shots x (circuit
    duration + repetition delay)) and, once run, the QPU seconds each job was charged."""
    pending = [r for r in records if r["source"] in ("planned", "submitted", "fetched")]
    known = [r["shot_seconds"] for r in pending if r["shot_seconds"] is not None]
    planned = [r for r in pending if r["source"] == "planned"]
    charged = {r["job_id"]: r["qpu_seconds"] for r in pending if r["source"] != "planned"}
    groups = sorted({(r.get("repeat", 0), r.get("primitive", "sampler")) for r in planned})
    # each repeat and each primitive: jobs of their own
    return {
        "circuits": len(records),
        "bindings": sum(r["bindings"] for r in records),
        "total_shots": sum(r["bindings"] * r["shots"] for r in records),
        "uncached_circuits": len(pending),
        "jobs": len({r["job_id"] for r in pending if r["source"] != "planned"}) + sum(
            len(pack([r["bindings"] * r["shots"] * r.get("variants", 1) for r in planned
                      if (r.get("repeat", 0), r.get("primitive", "sampler")) == group],
                     MAX_EXECUTIONS)) for group in groups),
        "estimated_qpu_seconds": (float(sum(known)) if len(known) == len(pending) else None),
        "qpu_seconds": (None if planned or None in charged.values()
                        else float(sum(charged.values()))),
    }


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} s"


def plan_text(plan: dict[str, Any]) -> str:
    """The dry run's answer: what would be submitted, and the estimated QPU time."""
    width = max([16, *(len(r["circuit"]) for r in plan["pubs"])])
    lines = [f"dry run on {plan['backend']}"
             + (" (local testing mode)" if plan["local_testing_mode"] else "")
             + ": nothing submitted",
             f"{'circuit':<{width}} {'qubits':<18} {'depth':>5} {'2q':>4} {'bindings':>8} "
             f"{'shots':>6} {'est. s':>8}  status"]
    for r in plan["pubs"]:
        est = "-" if r["shot_seconds"] is None else f"{r['shot_seconds']:.1f}"
        status = "cached" if r["source"] == "cache" else "would submit"
        lines.append(f"{r['circuit']:<{width}} {str(r['layout']):<18} {r['depth']:>5} "
                     f"{r['two_qubit_gates']:>4} {r['bindings']:>8} {r['shots']:>6} "
                     f"{est:>8}  {status}")
    seconds = plan["estimated_qpu_seconds"]
    lines += [
        f"circuits: {plan['circuits']} ({plan['uncached_circuits']} not cached, in "
        f"{plan['jobs']} job{'s' if plan['jobs'] != 1 else ''}), "
        f"bindings: {plan['bindings']}, shots: {plan['total_shots']:,}",
        "estimated QPU time: " + ("unknown (the backend reports no gate durations)"
                                  if seconds is None else f"{seconds:.1f} s")
        + " (bindings x shots x (circuit duration + repetition delay); queueing and "
          "per-job overhead not included)"
        + ("; PEC priced at its sampling-overhead cap, an upper bound"
           if any("pec" in r.get("primitive", "") for r in plan["pubs"]) else ""),
    ]
    return "\n".join(lines)


def _technique_lines(results: dict[str, Any]) -> list[str]:
    """One line per mitigation technique: what it bought against the raw run, and its cost."""
    lines = []
    for name, m in (results.get("mitigated") or {}).items():
        z = m["router_z_rms"]
        multiple = m["qpu_multiple"]
        lines.append(
            f"mitigated ({name}): accuracy {m['accuracy']:.3f}, router error vs ideal "
            f"{m['router_error_vs_ideal']:.4f} (raw {results['router_error_vs_ideal']:.4f})"
            + ("" if z is None else f", RMS of error / reported std {z:.2f} (1 if honest)")
            + f", est. QPU {m['qpu_seconds_estimate']:.1f} s"
            + ("" if multiple is None else f" ({multiple:.2f} x the raw PUBs)"))
    return lines


def _mitigation_lines(mitigation: dict[str, Any] | None) -> list[str]:
    if mitigation is None:
        return []
    rows = [f"| {q} | {e['p10']:.4f} | {e['p01']:.4f} |"
            for q, e in mitigation["calibration"]["qubits"].items()]
    return [f"Readout-mitigated (mthree, balanced calibration of the measured qubits in the same "
            f"job, {mitigation['calibration']['shots']} shots per calibration circuit): accuracy "
            f"{mitigation['accuracy']:.3f}, mean router TVD to ideal "
            f"{mitigation['mean_tvd_to_ideal']:.4f}.", "",
            "| qubit | measured P(1\\|0) | measured P(0\\|1) |", "|---:|---:|---:|", *rows, ""]


def _routing_lines(routing: dict[str, Any] | None) -> list[str]:
    """The expert load measured on the backend beside the exact one, as train reports it."""
    if not routing:
        return []

    def text(r: dict[str, Any]) -> str:
        dead = round(r["dead_fraction"] * len(r["load"]))
        return (f"load {' / '.join(f'{v:.2f}' for v in r['load'])}, entropy "
                f"{r['entropy']:.3f} of 1, {dead} of {len(r['load'])} experts dead")

    return [f"Expert load (the share of samples whose largest gate is each expert's): measured "
            f"{text(routing['measured'])}; exact {text(routing['ideal'])}.", ""]


def _report(results: dict[str, Any]) -> str:
    mode = " (runtime local testing mode: a simulator with the device's noise)" \
        if results["local_testing_mode"] else ""
    lines = [
        f"# Run on {results['backend']}{mode}", "",
        f"Model `{results['model']}`, the first {results['samples']} "
        f"{_rows(results.get('split', 'test'))}, "
        f"{results['shots']} shots per binding. Calibration: {results['calibration']}.", "",
        "| | accuracy |", "|---|---:|",
        f"| {results['backend']} | {results['accuracy']:.3f} |",
        f"| ideal (exact simulation, same samples) | {results['ideal_accuracy']:.3f} |", "",
        f"Mean TVD between the measured and the ideal router distribution: "
        f"{results['mean_tvd_to_ideal']:.4f}.", "",
        *_routing_lines(results.get("routing")),
        *([f"The circuits were measured {results['repeats']} times, each repeat in jobs of its "
           f"own ({results['repeat_interval']:g} s apart, start to start); the figures above "
           f"pool their counts. Accuracy per repeat: "
           + ", ".join(f"{a:.3f}" for a in results["repeat_accuracy"]) + ".", ""]
          if results["repeats"] > 1 else []),
        *_mitigation_lines(results.get("mitigation")),
        *([f"- {line}" for line in _technique_lines(results)] + [""]
          if results.get("mitigated") else []),
        f"Jobs submitted: {results['jobs_submitted']} (carrying {results['pubs_submitted']} "
        f"PUBs), fetched from earlier runs: {results['jobs_fetched']}, cache hits: "
        f"{results['cache_hits']}. QPU time charged: {_seconds(results['qpu_seconds'])} "
        f"(estimated beforehand: {_seconds(results['estimated_qpu_seconds'])}).", "",
        "| circuit | layout | depth | 2q gates | bindings | source | job |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in results["pubs"]:
        lines.append(f"| {r['circuit']} | {r['layout']} ({r['layout_method']}) | {r['depth']} | "
                     f"{r['two_qubit_gates']} | {r['bindings']} | {r['source']} | "
                     f"{r['job_id'] or '-'} |")
    lines += ["", "![router: measured against ideal](router_vs_ideal.png)", ""]
    return "\n".join(lines)
