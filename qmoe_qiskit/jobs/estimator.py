"""``RuntimeEstimator``: a ``BaseEstimatorV2`` on IBM Quantum (or its local testing mode) through
the job layer, with the runtime's client-side gate- and readout-noise mitigation.

It runs beside a :class:`~.sampler.RuntimeSampler` and shares its :class:`~.layer.JobLayer`
(batch, cache, ledger, locks, repeats, one job per forward pass) and its compiler (the same
layout). ``EstimatorQNN`` sends one PUB per observable on the same circuit and bindings; those
become one runtime PUB (``(isa, observables (k, 1), bindings)``) with its own cache key and
ledger line. Submission goes through qiskit-ibm-runtime's ``executor_estimator.Estimator``,
which does every technique on the client: TREX (measurement twirling with readout rescaling),
zero-noise extrapolation by gate folding or by probabilistic error amplification (PEA), and
probabilistic error cancellation (PEC) (:class:`Resilience`). PEA and PEC first learn each
entangling layer's noise with the runtime's ``NoiseLearnerV3``, in a job of its own that is
ledgered, cached and priced like the PUBs (:mod:`.learning`). Nothing of those techniques is
re-implemented here: results are the runtime's ``evs`` and ``stds``, and the raw values at
each noise factor (``evs_noise_factors``, ``ensemble_stds_noise_factors``) are kept with
every PUB, so :func:`extrapolate` refits them offline with another extrapolator using the
runtime's own fitting function.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import DataBin, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.quantum_info import SparsePauliOp
from qiskit_ibm_runtime.executor_estimator import Estimator as ExecutorEstimator

from ..errors import ConfigError, DataError, UnsupportedCircuitError, choices
from ..primitives import SyncEstimator, binding_rows
from ..primitives.counts import estimator_pub_result
from ..transpile import Compiled
from .cache import pub_key
from .layer import Part, PubRecord
from .learning import (
    LEARNER,
    learned_maps,
    learned_payload,
    learner_options,
    learning_key,
    learning_program,
    require_learner,
)
from .sampler import RuntimeSampler

__all__ = ["Resilience", "RuntimeEstimator", "GroupedEstimator", "EstimatedPub", "extrapolate",
           "EXTRAPOLATORS", "ESTIMATES_FILE", "estimate_files", "read_estimates"]

# The runtime's extrapolators (qiskit-ibm-runtime 0.51 ``ZneOptions.extrapolator``) and the
# fewest noise factors each needs.
EXTRAPOLATORS = {"linear": 2, "exponential": 2, "double_exponential": 4, "fallback": 1,
                 **{f"polynomial_degree_{k}": k + 1 for k in range(1, 8)}}
NOISE_FIELDS = ("evs_noise_factors", "stds_noise_factors", "ensemble_stds_noise_factors")
ESTIMATES_FILE = "estimates.npz"  # a run's estimator PUBs, beside its counts


@dataclass(frozen=True)
class Resilience:
    """What the runtime's client-side Estimator mitigates. Every field is part of the cache
    key.

    ``trex``: measurement twirling with TREX rescaling (readout). ``zne``: zero-noise
    extrapolation by gate folding at ``zne_factors`` (each >= 1, increasing), fitted with the
    ``zne_extrapolator`` models in priority order (the runtime keeps the first valid fit).
    ``pea``: the same extrapolation with the noise amplified by probabilistic error
    amplification of each entangling layer's learned noise instead of folding. ``pec``:
    probabilistic error cancellation of the learned noise, its sampling overhead capped at
    ``pec_max_overhead`` (the runtime's default 100; beyond it the noise is cancelled in part).
    PEA and PEC learn each layer's noise first (:mod:`.learning`: a noise-learning job).
    """

    trex: bool = False
    zne: bool = False
    zne_factors: tuple[float, ...] = (1.0, 3.0, 5.0)
    zne_extrapolator: tuple[str, ...] = ("exponential", "linear")
    pea: bool = False
    pec: bool = False
    pec_max_overhead: float = 100.0

    def __post_init__(self):
        factors = tuple(float(f) for f in self.zne_factors)
        object.__setattr__(self, "zne_factors", factors)
        extrapolators = ((self.zne_extrapolator,) if isinstance(self.zne_extrapolator, str)
                         else tuple(self.zne_extrapolator))
        object.__setattr__(self, "zne_extrapolator", extrapolators)
        if not factors or not all(np.isfinite(f) and f >= 1 for f in factors):
            raise ConfigError(f"ZNE noise factors must each be >= 1, got {list(factors)}")
        if any(b <= a for a, b in zip(factors, factors[1:])):
            raise ConfigError(f"ZNE noise factors must be strictly increasing, got "
                              f"{list(factors)}")
        unknown = [e for e in extrapolators if e not in EXTRAPOLATORS]
        if unknown or not extrapolators:
            raise ConfigError(f"unknown ZNE extrapolator {unknown[0] if unknown else ''!r}; "
                              f"valid: {choices(EXTRAPOLATORS)}")
        if self.zne and self.pea:
            raise ConfigError("zne (gate folding) and pea (probabilistic error amplification) "
                              "are two ways to amplify the same noise: choose one")
        if self.pec and (self.zne or self.pea):
            raise ConfigError("pec cancels the learned noise; it does not combine with zne or "
                              "pea (use trex,pec)")
        overhead = self.pec_max_overhead
        if isinstance(overhead, bool) or not isinstance(overhead, (int, float)) or \
                not np.isfinite(overhead) or overhead < 1:
            raise ConfigError(f"the PEC sampling-overhead cap must be a number >= 1, got "
                              f"{overhead!r}")
        object.__setattr__(self, "pec_max_overhead", float(overhead))
        if self.extrapolates:
            short = [e for e in extrapolators if EXTRAPOLATORS[e] > len(factors)]
            if short:
                raise ConfigError(f"the {short[0]} extrapolator needs at least "
                                  f"{EXTRAPOLATORS[short[0]]} noise factors; got "
                                  f"{len(factors)} ({', '.join(f'{f:g}' for f in factors)})")

    @property
    def name(self) -> str:
        """The techniques, as ``--mitigate`` spells them (``raw`` for none)."""
        return ",".join(t for t, on in (("trex", self.trex), ("zne", self.zne),
                                         ("pea", self.pea), ("pec", self.pec)) if on) or "raw"

    @property
    def extrapolates(self) -> bool:
        """Whether values are extrapolated to zero noise (ZNE by folding or by PEA)."""
        return self.zne or self.pea

    @property
    def learns(self) -> bool:
        """Whether each layer's noise must be learned first (PEA, PEC)."""
        return self.pea or self.pec

    @property
    def variants(self) -> tuple[float, ...]:
        """The circuit variants each binding runs, each at the PUB's shots, as durations
        relative to the circuit: the noise factors of gate folding; as many variants as
        factors under PEA (its amplified circuits run as long as the circuit); under PEC the
        overhead cap's worth (an upper bound: the overhead is the learned noise's gamma^2)."""
        if self.zne:
            return self.zne_factors
        if self.pea:
            return (1.0,) * len(self.zne_factors)
        if self.pec:
            return (1.0,) * math.ceil(self.pec_max_overhead)
        return (1.0,)

    def runtime_options(self) -> dict[str, Any]:
        """The runtime Estimator's resilience options (level 0, then these explicitly)."""
        options: dict[str, Any] = {"measure_mitigation": self.trex,
                                   "zne_mitigation": self.extrapolates}
        if self.extrapolates:
            options["zne"] = {"amplifier": "pea" if self.pea else "gate_folding",
                              "noise_factors": list(self.zne_factors),
                              "extrapolator": list(self.zne_extrapolator)}
        if self.pec:
            options["pec_mitigation"] = True
            options["pec"] = {"max_overhead": self.pec_max_overhead}
        return {"resilience_level": 0, "resilience": options}

    def to_dict(self) -> dict[str, Any]:
        out = {"trex": self.trex, "zne": self.zne, "zne_factors": list(self.zne_factors),
               "zne_extrapolator": list(self.zne_extrapolator)}
        if self.pea:  # only where set: the keys of TREX and ZNE PUBs stay as they were
            out["pea"] = True
        if self.pec:
            out |= {"pec": True, "pec_max_overhead": self.pec_max_overhead}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Resilience":
        return cls(trex=data["trex"], zne=data["zne"], zne_factors=tuple(data["zne_factors"]),
                   zne_extrapolator=tuple(data["zne_extrapolator"]),
                   pea=data.get("pea", False), pec=data.get("pec", False),
                   pec_max_overhead=data.get("pec_max_overhead", 100.0))


@dataclass(frozen=True)
class EstimatedPub:
    """What one estimator PUB measured: the ISA circuit, its bindings ``(rows, parameters)``,
    its observables (labels on physical qubits), the mitigated values and their reported
    standard deviations ``(rows, observables)``, and the raw per-noise-factor fields of ZNE
    (``(rows, observables, factors)``; empty without ZNE)."""

    record: Any  # its PubRecord (None when read back from a run folder)
    isa: QuantumCircuit | None  # None when read back from a run folder
    values: np.ndarray
    observables: list[str]
    evs: np.ndarray
    stds: np.ndarray
    resilience: Resilience
    noise: dict[str, np.ndarray] = field(default_factory=dict)
    repeat: int = 0
    circuit: str = ""  # the logical circuit's name
    parameters: tuple[str, ...] = ()  # the names of the columns of ``values``


class GroupedEstimator(SyncEstimator):
    """An estimator answering each circuit and bindings once: ``EstimatorQNN``'s PUBs (one per
    observable) on the same circuit and bindings are one :meth:`_estimate` call, whose table
    ``(rows, observables)`` is split back over them."""

    @property
    def default_shots(self) -> int:
        raise NotImplementedError

    def _estimate(self, pub: EstimatorPub, observables: list[SparsePauliOp]):
        raise NotImplementedError

    def _run_pubs(self, pubs: list[EstimatorPub]) -> list[PubResult]:
        groups: dict[tuple, list[int]] = {}
        for i, pub in enumerate(pubs):  # same circuit and bindings: one runtime PUB
            values = pub.parameter_values.as_array(pub.circuit.parameters)
            groups.setdefault((id(pub.circuit), values.shape, values.tobytes()), []).append(i)
        results: list = [None] * len(pubs)
        for members in groups.values():
            first = pubs[members[0]]
            observables = [SparsePauliOp.from_list(list(obs.items()))
                           for i in members for obs in pubs[i].observables.ravel().tolist()]
            table, stds = self._estimate(first, observables)
            start = 0
            for i in members:
                n = pubs[i].observables.size
                results[i] = estimator_pub_result(pubs[i], table[:, start:start + n],
                                                  stds[:, start:start + n],
                                                  shots=self.default_shots)
                start += n
        return results


class RuntimeEstimator(GroupedEstimator):
    """A V2 estimator on ``sampler``'s backend, jobs and layout, mitigated as ``resilience``
    says. Observables are any Paulis on the logical circuit; the circuit must not measure."""

    def __init__(self, sampler: RuntimeSampler, resilience: Resilience | None = None):
        self.sampler = sampler
        self.jobs = sampler.jobs
        self.resilience = resilience or Resilience()
        self.outcomes: list[EstimatedPub] = []  # every PUB that ran (not planned ones)
        self._compiled: dict[int, Compiled] = {}  # by id of the ISA circuit its parts carry
        self._learned: dict[str, list] = {}  # learning key -> [(layer, noise map), ...]
        if self.resilience.learns:
            require_learner()

    @property
    def default_shots(self) -> int:
        return self.sampler.default_shots

    @property
    def options(self):
        return self.sampler.options

    def _estimate(self, pub: EstimatorPub, observables: list[SparsePauliOp]):
        """The mitigated values and stds ``(rows, observables)`` of ``observables`` on the
        PUB's circuit and bindings."""
        circuit = pub.circuit
        if circuit.num_clbits:
            raise UnsupportedCircuitError(
                f"estimator circuits must not measure (ZNE folds gates around no "
                f"mid-circuit measurement); {circuit.name!r} has {circuit.num_clbits} "
                f"classical bits")
        compiled = self.sampler.compiler(circuit)
        isa = compiled.isa
        physical = [o.apply_layout(isa.layout, num_qubits=isa.num_qubits) for o in observables]
        labels = [_label(o) for o in physical]
        values = binding_rows(pub.parameter_values, isa.parameters)
        k = len(physical)
        parts = self._parts(circuit.name, compiled, values, physical, labels)
        if self.jobs.gathering is not None:
            for part in parts:
                self.jobs.result(part, None, lambda: None)
            zeros = np.zeros((len(values), k))
            return zeros, zeros
        if self.jobs.plan_only and self.resilience.learns:
            self._plan_learning(parts[0])
        records, raw, new = [], [], False
        calibration = self.default_shots if self.resilience.trex else 0
        for part in parts:
            result, record, fresh = self.jobs.answer(
                part, lambda part=part: self.jobs.record(
                    part, shots=self.default_shots,
                    primitive=f"estimator ({self.resilience.name})",
                    variants=self.resilience.variants, calibration_shots=calibration),
                lambda part=part: _placeholder(k, part.bindings))
            records.append(record)
            raw.append(result)
            new = new or fresh
        data = [r.data for r in raw]
        evs = np.concatenate([np.asarray(d.evs).reshape(k, -1) for d in data], axis=1).T
        stds = np.concatenate([np.asarray(d.stds).reshape(k, -1) for d in data], axis=1).T
        if new and records[0].source != "planned":
            noise = {name: np.concatenate([np.asarray(d[name]).reshape(k, -1, len(
                self.resilience.zne_factors)) for d in data], axis=1).transpose(1, 0, 2)
                for name in NOISE_FIELDS if name in data[0].keys()}
            self.outcomes.append(EstimatedPub(
                records[0], isa, values, labels, evs, stds, self.resilience, noise,
                self.jobs.repeat, circuit.name, tuple(p.name for p in isa.parameters)))
        return evs, stds

    def _parts(self, name: str, compiled, values: np.ndarray, observables, labels) -> list[Part]:
        shots = self.default_shots
        per_row = shots * len(self.resilience.variants)
        spans = self.jobs.spans(len(values), per_row)
        column = np.empty((len(observables), 1), dtype=object)
        for i, o in enumerate(observables):
            column[i, 0] = o
        isa = compiled.isa
        self._compiled[id(isa)] = compiled
        options = {"job": asdict(self.options), "estimator": self.resilience.to_dict(),
                   "observables": labels}
        conn = self.jobs.connection
        return [Part(self.jobs.label(name, (a, b), len(spans) == 1), compiled, values[a:b],
                     pub_key(isa, values[a:b], shots=shots, backend=conn.name,
                             calibration=conn.calibration, options=options,
                             repeat=self.jobs.repeat),
                     self, (isa, column, values[a:b]) if isa.num_parameters else
                     (isa, column[:, 0]), (b - a) * per_row)
                for a, b in spans]

    def _prepare(self, pubs: Sequence[tuple]) -> None:
        """Before a job is recorded and submitted: the noise of its circuits' layers, for PEA
        and PEC (learned in jobs of their own, or read back)."""
        if self.resilience.learns:
            for pub in pubs:
                self._layer_noise(pub)

    def _submit(self, pubs: Sequence[tuple], tag: str):
        """The one place that calls the runtime's Estimator: a job in the layer's batch, with
        the learned noise of its layers for PEA and PEC."""
        estimator = ExecutorEstimator(mode=self.jobs.batch(), options=self._runtime_options(tag))
        if self.resilience.learns:
            estimator.options.resilience.layer_noise_model = [
                pair for pub in pubs for pair in self._layer_noise(pub)]
        return estimator.run(list(pubs))

    def _runtime_options(self, tag: str | None) -> dict[str, Any]:
        o = self.options
        return {
            "default_shots": int(o.shots),
            **({"environment": {"job_tags": [tag]}} if tag is not None else {}),
            "twirling": {"enable_gates": o.twirling or self.resilience.learns,  # PEA and PEC
                         "enable_measure": o.twirling or self.resilience.trex  # twirl always
                         or self.resilience.learns},
            "dynamical_decoupling": {"enable": o.dynamical_decoupling,
                                     "sequence_type": o.dd_sequence},
            **self.resilience.runtime_options(),
            **self.jobs.runtime_extras(),
        }

    # ------------------------------------------------------------------ noise learning
    def _layers(self, pub: tuple) -> list:
        """The distinct entangling layers of ``pub``'s circuit, boxed as the Estimator's run
        boxes them (nothing submitted)."""
        finder = ExecutorEstimator(mode=self.jobs.connection.backend,
                                   options=self._runtime_options(None))
        return finder.find_unique_layers([pub], types="gates")

    def _learning_key(self, isa: QuantumCircuit) -> str:
        conn = self.jobs.connection
        return learning_key(isa, backend=conn.name, calibration=conn.calibration,
                            options={"job": asdict(self.options),
                                     "estimator": self.resilience.to_dict()},
                            repeat=self.jobs.repeat)

    def _layer_noise(self, pub: tuple) -> list:
        """``[(layer, learned noise), ...]`` for ``pub``'s circuit: from this pass, the cache,
        a recorded job or a new noise-learning job (:meth:`JobLayer.side_job`)."""
        isa = pub[0]
        key = self._learning_key(isa)
        if key in self._learned:
            return self._learned[key]
        layers = self._layers(pub)
        if not layers:
            self._learned[key] = []
            return []
        learner = require_learner()
        extras = self.jobs.runtime_extras()

        def submit(tag: str):
            return learner(mode=self.jobs.batch(),
                           options=learner_options(tag, extras)).run(layers)

        label = f"noise learning: {isa.name}"
        payload, source, job_id, facts = self.jobs.side_job(key, label, submit,
                                                            learned_payload, kind=LEARNER)
        maps = learned_maps(payload)
        if len(maps) != len(layers):
            raise DataError(f"the learned noise of {isa.name!r} covers {len(maps)} layers; its "
                            f"circuit has {len(layers)} (the cache entry {key[:12]}… does not "
                            f"belong to it)")
        record = self._learning_record(isa, key, layers, label)
        record.source, record.job_id = source, job_id
        record.qpu_seconds, record.ran_at = facts.get("qpu_seconds"), facts.get("ran_at")
        self._learned[key] = list(zip(layers, maps))
        return self._learned[key]

    def _plan_learning(self, part: Part) -> None:
        """A dry run's record of the noise learning ``part``'s circuit needs (cached or
        priced), once per circuit."""
        isa = part.compiled.isa
        key = self._learning_key(isa)
        if key in self._learned:
            return
        self._learned[key] = []
        layers = self._layers(part.payload)
        if layers:
            record = self._learning_record(isa, key, layers, f"noise learning: {isa.name}")
            record.source = "cache" if self.jobs.stored(key) is not None else "planned"

    def _learning_record(self, isa: QuantumCircuit, key: str, layers: list, label: str):
        """A record of learning ``layers``: the learner's circuit instances x shots, priced
        from its own program."""
        compiled = self._compiled[id(isa)]
        instances, shots, seconds = learning_program(layers, self.jobs.connection.backend,
                                                     self.jobs.runtime_extras())
        record = PubRecord(
            circuit=label, key=key, source="", job_id=None, bindings=instances, shots=shots,
            layout=compiled.initial_layout, physical_qubits=compiled.used_qubits,
            layout_method=compiled.layout_method, measured=list(compiled.measured), depth=0,
            two_qubit_gates=0, duration_s=None, shot_seconds=seconds, repeat=self.jobs.repeat,
            primitive=f"{LEARNER} ({self.resilience.name})")
        self.jobs.records.append(record)
        return record


def _label(observable: SparsePauliOp) -> str:
    """A Pauli string for a single unit term (``"IZ"``), else the sum with coefficients."""
    terms = observable.simplify().to_list()
    if len(terms) == 1 and terms[0][1] == 1:
        return terms[0][0]
    return " + ".join(f"{complex(c).real:g}*{label}" for label, c in terms)


def _placeholder(observables: int, rows: int) -> PubResult:
    zeros = np.zeros((observables, rows))
    return PubResult(DataBin(evs=zeros, stds=zeros, shape=zeros.shape),
                     metadata={"planned": True})


def extrapolate(pub: EstimatedPub, extrapolator: str | Sequence[str]) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """The zero-noise values and stds ``(rows, observables)`` of ``pub``'s raw noise-factor
    values refitted with ``extrapolator`` (names in priority order), offline, by the runtime's
    own fitting and selection (``qiskit_mitigation``'s extrapolation, which the Estimator calls
    per observable term). Exact for single-term observables, as the routers' ⟨Z⟩ are."""
    from qiskit_mitigation.zne.extrapolation import _process_extrapolated_expectation_values

    names = [extrapolator] if isinstance(extrapolator, str) else list(extrapolator)
    Resilience(zne=True, zne_factors=pub.resilience.zne_factors, zne_extrapolator=names)
    if "evs_noise_factors" not in pub.noise:
        raise ConfigError("this PUB ran without ZNE: it has no noise-factor values to refit")
    evs, stds = pub.noise["evs_noise_factors"], pub.noise["ensemble_stds_noise_factors"]
    out, err = np.empty(evs.shape[:2]), np.empty(evs.shape[:2])
    for (r, o), _ in np.ndenumerate(out):
        label = pub.observables[o]
        term = label if set(label) <= set("IXYZ") else ""  # a single Pauli term, or a sum
        out[r, o], err[r, o], *_ = _process_extrapolated_expectation_values(
            evs[r, o], stds[r, o], term, list(pub.resilience.zne_factors), names)
    return out, err


def estimate_files(pubs: Sequence[EstimatedPub]) -> dict[str, Any]:
    """``{ESTIMATES_FILE: writer}`` for a run folder: every estimator PUB's bindings, values,
    stds and raw noise-factor fields, with its resilience; nothing for none."""
    if not pubs:
        return {}
    arrays: dict[str, np.ndarray] = {"pubs": np.array(len(pubs))}
    for i, pub in enumerate(pubs):
        arrays |= {f"values_{i}": pub.values, f"evs_{i}": pub.evs, f"stds_{i}": pub.stds,
                   f"observables_{i}": np.array(pub.observables, dtype=str),
                   f"parameters_{i}": np.array(pub.parameters, dtype=str),
                   f"circuit_{i}": np.array(pub.circuit), f"repeat_{i}": np.array(pub.repeat),
                   f"resilience_{i}": np.array(json.dumps(pub.resilience.to_dict())),
                   **{f"{name}_{i}": value for name, value in pub.noise.items()}}

    def write(path) -> None:
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return {ESTIMATES_FILE: write}


def read_estimates(folder) -> list[EstimatedPub]:
    """The estimator PUBs a run wrote (:func:`estimate_files`); ``[]`` where it ran none,
    :class:`DataError` where the file cannot be read."""
    from pathlib import Path

    from ..errors import DataError

    path = Path(folder) / ESTIMATES_FILE
    if not path.is_file():
        return []
    try:
        with np.load(path) as a:
            pubs = []
            for i in range(int(a["pubs"])):
                resilience = Resilience.from_dict(json.loads(str(a[f"resilience_{i}"])))
                noise = {name: a[f"{name}_{i}"] for name in NOISE_FIELDS
                         if f"{name}_{i}" in a}
                pubs.append(EstimatedPub(
                    None, None, a[f"values_{i}"], [str(o) for o in a[f"observables_{i}"]],
                    a[f"evs_{i}"], a[f"stds_{i}"], resilience, noise, int(a[f"repeat_{i}"]),
                    str(a[f"circuit_{i}"]), tuple(str(p) for p in a[f"parameters_{i}"])))
    except Exception as exc:  # truncated or foreign: zipfile, JSON, key and value errors
        raise DataError(f"the estimates in {path} cannot be read "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); it is "
                        f"damaged or not what qmoe run wrote: run the model again") from None
    return pubs
