"""Mitigation techniques by name, and the primitive that carries gate-noise mitigation to the
circuits a model reads as probabilities.

:func:`parse_mitigation` turns ``--mitigate`` text (``readout``, ``trex``, ``zne``, ``pea``,
``pec`` and their combinations ``trex,zne``, ``trex,pea``, ``trex,pec``) into a
:class:`Mitigation`: ``readout`` is mthree on the sampler's counts (:mod:`.readout`); the others
are the runtime Estimator's own techniques (:class:`~.estimator.Resilience`).

:class:`EstimatorSampler` is a sampler on top of any V2 estimator: a circuit's final
measurements of ``n`` clbits become the ``2**n - 1`` Z strings on the measured qubits, which
the estimator (a :class:`~.estimator.RuntimeEstimator`, mitigating) returns with their stds;
the outcome distribution is their inverse Walsh-Hadamard transform,
``p(b) = 2**-n Σ_S (-1)^{|b ∧ S|} ⟨Z_S⟩`` (``⟨Z_∅⟩ = 1``). Mitigated values need not form a
distribution, so each row is projected onto the probability simplex (the Euclidean projection);
the unprojected quasi-probabilities and their stds are kept in ``outcomes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import SparsePauliOp

from ..errors import ConfigError, UnsupportedCircuitError, choices
from ..primitives import CircuitCache, ExactDistributions, SyncSampler, popcount
from ..transpile import measured_qubits
from .estimator import Resilience

__all__ = ["TECHNIQUES", "Mitigation", "parse_mitigation", "EstimatorSampler",
           "EstimatedDistributions", "project_to_simplex"]

TECHNIQUES = ("readout", "trex", "zne", "pea", "pec")
ESTIMATOR_TECHNIQUES = ("trex", "zne", "pea", "pec")


@dataclass(frozen=True)
class Mitigation:
    """A combination of techniques: mthree ``readout`` alone, or the runtime Estimator's
    ``resilience`` (TREX, ZNE)."""

    techniques: tuple[str, ...]
    resilience: Resilience | None = None

    @property
    def name(self) -> str:
        return ",".join(self.techniques)

    @property
    def readout(self) -> bool:
        return self.techniques == ("readout",)


def parse_mitigation(text: str | None, *, zne_factors=None,
                     zne_extrapolator=None) -> Mitigation | None:
    """``None`` for no mitigation, else the :class:`Mitigation` ``text`` names
    (comma-separated techniques); one-line :class:`ConfigError` for unknown or incompatible
    ones and for ZNE options without ZNE."""
    zne_given = [flag for flag, value in (("--zne-factors", zne_factors),
                                          ("--zne-extrapolator", zne_extrapolator))
                 if value is not None]
    if text is None or not str(text).strip():
        if zne_given:
            raise ConfigError(f"{zne_given[0]} needs --mitigate zne")
        return None
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    unknown = [t for t in names if t not in TECHNIQUES]
    if unknown:
        raise ConfigError(f"unknown mitigation {unknown[0]!r}; valid: {choices(TECHNIQUES)} "
                          f"(comma-separated where they combine: trex,zne, trex,pea, trex,pec)")
    if len(set(names)) != len(names):
        raise ConfigError(f"mitigation {text!r} names a technique twice")
    if "readout" in names and len(names) > 1:
        raise ConfigError("readout (mthree on the sampler's counts) does not combine with the "
                          "runtime Estimator's techniques; for readout with ZNE use trex,zne")
    if zne_given and not {"zne", "pea"} & set(names):
        raise ConfigError(f"{zne_given[0]} needs zne or pea among the techniques "
                          f"(--mitigate zne)")
    ordered = tuple(t for t in TECHNIQUES if t in names)
    if ordered == ("readout",):
        from .readout import require_mthree

        require_mthree()
        return Mitigation(ordered)
    options = {}
    if zne_factors is not None:
        options["zne_factors"] = tuple(zne_factors)
    if zne_extrapolator is not None:
        options["zne_extrapolator"] = zne_extrapolator
    return Mitigation(ordered, Resilience(trex="trex" in names, zne="zne" in names,
                                          pea="pea" in names, pec="pec" in names, **options))


@dataclass(frozen=True)
class EstimatedDistributions:
    """One sampler PUB answered by an estimator: the circuit, its Z-string expectation values
    and stds ``(rows, 2**n - 1)`` (string ``S`` at column ``S - 1``), the quasi-probabilities
    ``(rows, 2**n)`` they imply with their stds (the strings' errors taken as independent),
    and the distributions after projection onto the simplex."""

    circuit: str
    z: np.ndarray
    z_stds: np.ndarray
    quasi: np.ndarray
    quasi_stds: np.ndarray
    distributions: np.ndarray = field(repr=False)


class EstimatorSampler(SyncSampler):
    """A sampler whose outcome distributions come from ``estimator``'s Z strings (mitigated
    when the estimator mitigates); each result is :class:`ExactDistributions` of the PUB's
    one classical register."""

    def __init__(self, estimator: BaseEstimatorV2):
        self.estimator = estimator
        self.outcomes: list[EstimatedDistributions] = []
        self._unmeasured = CircuitCache(_unmeasured)

    def _run_pub(self, pub: SamplerPub) -> SamplerPubResult:
        circuit = pub.circuit
        if len(circuit.cregs) != 1:
            raise UnsupportedCircuitError(
                f"circuit {circuit.name!r} must measure into one classical register to be read "
                f"through an estimator; it has {len(circuit.cregs)}")
        unmeasured, qubits = self._unmeasured(circuit)
        n = len(qubits)
        observables = np.empty((2 ** n - 1, 1), dtype=object)
        for mask in range(1, 2 ** n):
            label = ["I"] * circuit.num_qubits
            for k in range(n):
                if mask >> k & 1:
                    label[circuit.num_qubits - 1 - qubits[k]] = "Z"
            observables[mask - 1, 0] = SparsePauliOp("".join(label))
        values = pub.parameter_values.as_array(circuit.parameters).reshape(
            -1, circuit.num_parameters)
        data = self.estimator.run([(unmeasured, observables, values)]).result()[0].data
        z = np.asarray(data.evs).reshape(2 ** n - 1, -1).T
        z_stds = np.asarray(data.stds).reshape(2 ** n - 1, -1).T
        signs = walsh(n)
        full = np.hstack([np.ones((len(z), 1)), z])
        quasi = full @ signs.T / 2 ** n
        quasi_stds = np.sqrt((z_stds ** 2).sum(axis=1, keepdims=True)) / 2 ** n \
            * np.ones_like(quasi)
        distributions = project_to_simplex(quasi)
        self.outcomes.append(EstimatedDistributions(circuit.name, z, z_stds, quasi, quasi_stds,
                                                    distributions))
        field_ = ExactDistributions(distributions.reshape(pub.shape + (2 ** n,)), n)
        return SamplerPubResult(DataBin(**{circuit.cregs[0].name: field_}, shape=pub.shape))


def walsh(n: int) -> np.ndarray:
    """``H[b, S] = (-1)^{|b ∧ S|}`` for outcomes ``b`` and Z strings ``S`` of ``n`` bits."""
    index = np.arange(2 ** n)
    return 1 - 2 * (popcount(index[:, None] & index[None, :]) & 1)


def project_to_simplex(rows: np.ndarray) -> np.ndarray:
    """Each row's nearest probability distribution in Euclidean distance (the sort-based
    projection onto the simplex); rows that are distributions already are returned as they
    are."""
    rows = np.asarray(rows, dtype=float)
    ordered = -np.sort(-rows, axis=1)
    cumulative = np.cumsum(ordered, axis=1) - 1
    k = np.arange(1, rows.shape[1] + 1)
    last = (ordered - cumulative / k > 0).sum(axis=1)
    theta = cumulative[np.arange(len(rows)), last - 1] / last
    return np.maximum(rows - theta[:, None], 0)


def _unmeasured(circuit: QuantumCircuit) -> tuple[QuantumCircuit, list[int]]:
    """``circuit`` without its measurements or classical bits, and the qubit each clbit
    measured; a circuit that measures before its last gate on that qubit, or uses its clbits
    otherwise, is refused."""
    measured = measured_qubits(circuit)
    if -1 in measured:
        raise UnsupportedCircuitError(
            f"circuit {circuit.name!r} must measure every classical bit it declares")
    bare = QuantumCircuit(*circuit.qregs, name=circuit.name, global_phase=circuit.global_phase)
    done: set[int] = set()
    for inst in circuit.data:
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if inst.operation.name == "measure":
            done.update(qubits)
            continue
        if inst.clbits or (done & set(qubits) and inst.operation.name != "barrier"):
            raise UnsupportedCircuitError(
                f"circuit {circuit.name!r} has a mid-circuit measurement or classical control; "
                f"only final measurements can be read through an estimator")
        bare.append(inst.operation, inst.qubits)
    return bare, measured
