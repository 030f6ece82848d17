"""Readout mitigation: a calibration measured through the job layer, and mthree's correction.

The calibration circuits are mthree's *balanced* set (its ``HadamardGenerator`` bit strings:
every qubit is prepared in 0 and in 1 equally often, 2-8 circuits for up to 8 qubits), placed on
the very physical qubits a run measures and run by the same :class:`RuntimeSampler` as the
model, so they share its job, its cache, its ledger and its dry-run cost. From their counts
each qubit's 2x2 assignment matrix is estimated (as mthree's own balanced calibration does),
and :class:`mthree.M3Mitigation` corrects measured counts into quasi-probabilities, mapped to
the nearest probability distribution.

:class:`ReadoutSampler` is the technique as a primitive: it wraps the job layer's sampler, so
a model takes it through ``using()`` like any sampler. Each PUB's counts come from the wrapped
sampler (inside ``run_together``, the very counts the raw pass read, not measured again), the
calibration of the measured qubits joins the pass's job, and the result is the corrected
distributions; what it corrected, and with what, is kept in ``outcomes``.

mthree is an optional dependency: the ``mitigation`` extra (``bash scripts/setup.sh --test``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from qiskit.primitives import DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub

from ..errors import ConfigError, DataError, install_hint
from ..primitives import ExactDistributions, SyncSampler, outcome_counts
from ..transpile import measured_qubits
from .sampler import RuntimeSampler

__all__ = ["ReadoutCalibration", "ReadoutMitigatedPub", "ReadoutSampler",
           "calibration_circuits", "calibrate", "require_mthree"]

CIRCUIT_PREFIX = "readout_cal"


def require_mthree():
    """The ``mthree`` module, or a one-line error naming the extra that installs it."""
    try:
        import mthree
    except ImportError:
        raise ConfigError("readout mitigation needs mthree, which is not installed: "
                          + install_hint("mitigation")) from None
    return mthree


def _preparations(num_qubits: int) -> np.ndarray:
    """mthree's balanced bit strings, ``(circuits, qubits)``: entry ``[c, k]`` is the state
    qubit ``k`` (clbit ``k``) is prepared in by circuit ``c``."""
    from mthree.generators import HadamardGenerator

    require_mthree()
    return np.array([np.asarray(bits, dtype=int)[::-1] for bits in
                     HadamardGenerator(num_qubits)], dtype=int)


def calibration_circuits(num_qubits: int) -> list[QuantumCircuit]:
    """The balanced calibration circuits on ``num_qubits`` logical qubits, each measuring
    qubit ``k`` into clbit ``k``; place them on physical qubits with
    :meth:`RuntimeSampler.place`."""
    circuits = []
    for c, prepared in enumerate(_preparations(num_qubits)):
        qc = QuantumCircuit(num_qubits, num_qubits, name=f"{CIRCUIT_PREFIX}_{c}")
        for k in np.flatnonzero(prepared):
            qc.x(int(k))
        qc.measure(range(num_qubits), range(num_qubits))
        circuits.append(qc)
    return circuits


@dataclass(frozen=True)
class ReadoutCalibration:
    """Each calibrated physical qubit's assignment matrix ``[[P(0|0), P(0|1)], [P(1|0),
    P(1|1)]]`` (columns: prepared state), and the shots per circuit it was measured with."""

    matrices: dict[int, np.ndarray]
    shots: int

    @property
    def qubits(self) -> list[int]:
        return sorted(self.matrices)

    def errors(self) -> dict[int, tuple[float, float]]:
        """``{qubit: (P(1|0), P(0|1))}``, as measured."""
        return {q: (float(m[1, 0]), float(m[0, 1])) for q, m in sorted(self.matrices.items())}

    def correct(self, counts: np.ndarray, measured: Sequence[int]) -> np.ndarray:
        """Mitigated outcome distributions ``(rows, 2**clbits)`` of ``counts`` (same shape),
        whose clbit ``k`` measured physical qubit ``measured[k]``: mthree's correction, mapped
        to the nearest probability distribution."""
        mthree = require_mthree()
        missing = sorted(set(measured) - set(self.matrices))
        if missing:
            raise DataError(f"the readout calibration does not cover physical qubits {missing} "
                            f"(it covers {self.qubits})")
        mitigator = mthree.M3Mitigation()
        slots = [None] * (max(self.matrices) + 1)
        for q, m in self.matrices.items():
            slots[q] = np.asarray(m, dtype=np.float32)
        mitigator.cals_from_matrices(slots)
        bits = len(measured)
        rows = [{format(i, f"0{bits}b"): int(n) for i, n in enumerate(row) if n}
                for row in np.asarray(counts)]
        quasi = mitigator.apply_correction(rows, qubits=[int(q) for q in measured])
        out = np.zeros((len(rows), 2 ** bits))
        for r, dist in enumerate(quasi):
            for key, p in dist.nearest_probability_distribution().items():
                out[r, int(key, 2)] = float(p)
        return out / out.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "mthree balanced calibration", "shots": self.shots,
                "qubits": {str(q): {"p10": p10, "p01": p01}
                           for q, (p10, p01) in self.errors().items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReadoutCalibration":
        """The calibration a run's ``results.json`` recorded; :class:`DataError` if unreadable."""
        try:
            matrices = {int(q): _matrix(float(e["p10"]), float(e["p01"]))
                        for q, e in data["qubits"].items()}
            return cls(matrices, int(data["shots"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"the run's readout calibration cannot be read ({exc!r})") from None


def _matrix(p10: float, p01: float) -> np.ndarray:
    return np.array([[1 - p10, p01], [p10, 1 - p01]])


def calibrate(sampler: RuntimeSampler, qubits: Sequence[int],
              circuits: Sequence[QuantumCircuit] | None = None) -> ReadoutCalibration | None:
    """Measure the readout calibration of physical ``qubits`` on ``sampler``'s backend (its
    circuits are PUBs like any other: cached, ledgered, in the pass's job under
    :meth:`RuntimeSampler.run_together`). ``circuits``: the calibration circuits already placed
    on those qubits (default: made and placed now). ``None`` when the sampler only plans, or
    gathers the pass's PUBs."""
    qubits = sorted({int(q) for q in qubits})
    if not qubits:
        raise ConfigError("no measured qubits to calibrate")
    if circuits is None:
        circuits = calibration_circuits(len(qubits))
        for circuit in circuits:
            sampler.place(circuit, qubits)
    results = sampler.run([(c,) for c in circuits]).result()
    if sampler.plan_only or sampler.jobs.gathering is not None:
        return None
    prepared = _preparations(len(qubits))
    shots = sampler.default_shots
    correct = np.zeros((len(qubits), 2))  # right answers for prepared 0, prepared 1
    trials = np.zeros((len(qubits), 2))
    for prep, result in zip(prepared, results):
        [field] = result.data.values()
        bits = field.get_int_counts()
        for k in range(len(qubits)):
            right = sum(n for outcome, n in bits.items() if (outcome >> k) & 1 == prep[k])
            correct[k, prep[k]] += right
            trials[k, prep[k]] += shots
    p00, p11 = correct[:, 0] / trials[:, 0], correct[:, 1] / trials[:, 1]
    return ReadoutCalibration({q: _matrix(1 - p00[k], 1 - p11[k]) for k, q in enumerate(qubits)},
                              shots)


@dataclass(frozen=True)
class ReadoutMitigatedPub:
    """One PUB through :class:`ReadoutSampler`: the raw counts ``(bindings, outcomes)`` it
    corrected, the physical qubit each clbit measured, the calibration it used, and the
    corrected distributions (same shape as the counts)."""

    circuit: str
    isa: QuantumCircuit
    counts: np.ndarray
    measured: list[int]
    calibration: ReadoutCalibration
    distributions: np.ndarray
    repeat: int = 0


class ReadoutSampler(SyncSampler):
    """mthree readout mitigation around a :class:`RuntimeSampler`: each result is the PUB's
    corrected outcome distributions (:class:`ExactDistributions` of its one register).

    ``qubits`` are the physical qubits to calibrate; by default every qubit the sampler has
    measured so far, this PUB's included (after the model's raw pass in the same
    ``run_together``, the whole model's: one calibration per pass). While the sampler only
    plans or gathers, results are its placeholders and nothing is corrected."""

    def __init__(self, sampler: RuntimeSampler, qubits: Sequence[int] | None = None):
        require_mthree()
        self.sampler = sampler
        self.qubits = None if qubits is None else sorted({int(q) for q in qubits})
        self.outcomes: list[ReadoutMitigatedPub] = []
        self._circuits: dict[tuple[int, ...], list[QuantumCircuit]] = {}

    @property
    def default_shots(self) -> int:
        return self.sampler.default_shots

    def _run_pub(self, pub: SamplerPub) -> SamplerPubResult:
        circuit = pub.circuit
        if len(circuit.cregs) != 1:
            raise ConfigError(f"readout mitigation reads one classical register; circuit "
                              f"{circuit.name!r} has {len(circuit.cregs)}")
        raw = self.sampler.run([pub]).result()[0]
        qubits = tuple(self.qubits or self.sampler.measured_qubits())
        if qubits not in self._circuits:
            # placed and compiled once; asked for with every PUB, measured once per pass
            self._circuits[qubits] = circuits = calibration_circuits(len(qubits))
            for circuit in circuits:
                self.sampler.place(circuit, qubits)
        calibration = calibrate(self.sampler, qubits, self._circuits[qubits])
        if calibration is None:  # planning or gathering: nothing measured yet
            return raw
        isa = self.sampler.compile(circuit).isa
        measured = measured_qubits(isa)
        register = circuit.cregs[0].name
        counts = outcome_counts(raw.data[register]).reshape(-1, 2 ** circuit.num_clbits)
        distributions = calibration.correct(counts, measured)
        self.outcomes.append(ReadoutMitigatedPub(circuit.name, isa, counts, measured,
                                                 calibration, distributions,
                                                 self.sampler.repeat))
        field = ExactDistributions(distributions.reshape(pub.shape + distributions.shape[-1:]),
                                   circuit.num_clbits)
        return SamplerPubResult(DataBin(**{register: field}, shape=pub.shape))
