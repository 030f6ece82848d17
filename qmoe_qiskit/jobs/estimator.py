"""``RuntimeEstimator``: a ``BaseEstimatorV2`` on IBM Quantum (or its local testing mode) through
the job layer, with the runtime's client-side gate- and readout-noise mitigation.

It runs beside a :class:`~.sampler.RuntimeSampler` and shares its :class:`~.layer.JobLayer`
(batch, cache, ledger, locks, repeats, one job per forward pass) and its compiler (the same
layout). ``EstimatorQNN`` sends one PUB per observable on the same circuit and bindings; those
become one runtime PUB (``(isa, observables (k, 1), bindings)``) with its own cache key and
ledger line. Submission goes through qiskit-ibm-runtime's ``executor_estimator.Estimator``,
which does every technique on the client: TREX (measurement twirling with readout rescaling)
and zero-noise extrapolation by gate folding (:class:`Resilience`). Nothing of those techniques
is re-implemented here: results are the runtime's ``evs`` and ``stds``, and the raw values at
each noise factor (``evs_noise_factors``, ``ensemble_stds_noise_factors``) are kept with
every PUB, so :func:`extrapolate` refits them offline with another extrapolator using the
runtime's own fitting function.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import DataBin, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.quantum_info import SparsePauliOp
from qiskit_ibm_runtime.executor_estimator import Estimator as ExecutorEstimator

from ..errors import ConfigError, UnsupportedCircuitError, choices
from ..primitives import SyncEstimator, binding_rows
from ..primitives.counts import estimator_pub_result
from .cache import pub_key
from .layer import Part
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
    """

    trex: bool = False
    zne: bool = False
    zne_factors: tuple[float, ...] = (1.0, 3.0, 5.0)
    zne_extrapolator: tuple[str, ...] = ("exponential", "linear")

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
        if self.zne:
            short = [e for e in extrapolators if EXTRAPOLATORS[e] > len(factors)]
            if short:
                raise ConfigError(f"the {short[0]} extrapolator needs at least "
                                  f"{EXTRAPOLATORS[short[0]]} noise factors; got "
                                  f"{len(factors)} ({', '.join(f'{f:g}' for f in factors)})")

    @property
    def name(self) -> str:
        """The techniques, as ``--mitigate`` spells them (``raw`` for none)."""
        return ",".join(t for t, on in (("trex", self.trex), ("zne", self.zne)) if on) or "raw"

    @property
    def variants(self) -> tuple[float, ...]:
        """How many times longer each variant of a circuit runs: the noise factors under ZNE."""
        return self.zne_factors if self.zne else (1.0,)

    def runtime_options(self) -> dict[str, Any]:
        """The runtime Estimator's resilience options (level 0, then these explicitly)."""
        options: dict[str, Any] = {"measure_mitigation": self.trex, "zne_mitigation": self.zne}
        if self.zne:
            options["zne"] = {"amplifier": "gate_folding",
                              "noise_factors": list(self.zne_factors),
                              "extrapolator": list(self.zne_extrapolator)}
        return {"resilience_level": 0, "resilience": options}

    def to_dict(self) -> dict[str, Any]:
        return {"trex": self.trex, "zne": self.zne, "zne_factors": list(self.zne_factors),
                "zne_extrapolator": list(self.zne_extrapolator)}


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

    def _submit(self, pubs: Sequence[tuple], tag: str):
        """The one place that calls the runtime's Estimator: a job in the layer's batch."""
        o = self.options
        options = {
            "default_shots": int(o.shots),
            "environment": {"job_tags": [tag]},
            "twirling": {"enable_gates": o.twirling,
                         "enable_measure": o.twirling or self.resilience.trex},
            "dynamical_decoupling": {"enable": o.dynamical_decoupling,
                                     "sequence_type": o.dd_sequence},
            **self.resilience.runtime_options(),
            **self.jobs.runtime_extras(),
        }
        estimator = ExecutorEstimator(mode=self.jobs.batch(), options=options)
        return estimator.run(list(pubs))


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
                options = json.loads(str(a[f"resilience_{i}"]))
                resilience = Resilience(trex=options["trex"], zne=options["zne"],
                                        zne_factors=tuple(options["zne_factors"]),
                                        zne_extrapolator=tuple(options["zne_extrapolator"]))
                noise = {name: a[f"{name}_{i}"] for name in NOISE_FIELDS
                         if f"{name}_{i}" in a}
                pubs.append(EstimatedPub(
                    None, None, a[f"values_{i}"], [str(o) for o in a[f"observables_{i}"]],
                    a[f"evs_{i}"], a[f"stds_{i}"], resilience, noise, int(a[f"repeat_{i}"]),
                    str(a[f"circuit_{i}"]), tuple(str(p) for p in a[f"parameters_{i}"])))
    except (OSError, ValueError, KeyError, EOFError, ConfigError) as exc:
        raise DataError(f"the estimates in {path} cannot be read "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    return pubs
