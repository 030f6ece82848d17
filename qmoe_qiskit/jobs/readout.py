"""Readout mitigation: a calibration measured through the job layer, and mthree's correction.

The calibration circuits are mthree's *balanced* set (its ``HadamardGenerator`` bit strings:
every qubit is prepared in 0 and in 1 equally often, 2-8 circuits for up to 8 qubits), placed on
the very physical qubits a run measures and run by the same :class:`RuntimeSampler` as the
model, so they share its job, its cache, its ledger and its dry-run cost. From their counts
each qubit's 2x2 assignment matrix is estimated (as mthree's own balanced calibration does),
and :class:`mthree.M3Mitigation` corrects measured counts into quasi-probabilities, mapped to
the nearest probability distribution.

mthree is an optional dependency: ``pip install 'qmoe-qiskit[mitigation]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from ..errors import ConfigError, DataError
from .sampler import RuntimeSampler

__all__ = ["MITIGATIONS", "ReadoutCalibration", "calibration_circuits", "calibrate",
           "check_mitigation", "require_mthree"]

MITIGATIONS = ("readout",)
CIRCUIT_PREFIX = "readout_cal"


def check_mitigation(name: str | None) -> None:
    """``None`` (no mitigation) or one of :data:`MITIGATIONS`; checks mthree is installed."""
    if name is None:
        return
    if name not in MITIGATIONS:
        raise ConfigError(f"unknown mitigation {name!r}; valid: {', '.join(MITIGATIONS)}")
    require_mthree()


def require_mthree():
    """The ``mthree`` module, or a one-line error naming the extra that installs it."""
    try:
        import mthree
    except ImportError:
        raise ConfigError("readout mitigation needs mthree, which is not installed: "
                          "pip install 'qmoe-qiskit[mitigation]'") from None
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


def calibrate(sampler: RuntimeSampler, qubits: Sequence[int]) -> ReadoutCalibration | None:
    """Measure the readout calibration of physical ``qubits`` on ``sampler``'s backend (its
    circuits are PUBs like any other: cached, ledgered, in the pass's job under
    :meth:`RuntimeSampler.run_together`). ``None`` when the sampler only plans."""
    qubits = sorted({int(q) for q in qubits})
    if not qubits:
        raise ConfigError("no measured qubits to calibrate")
    circuits = calibration_circuits(len(qubits))
    for circuit in circuits:
        sampler.place(circuit, qubits)
    results = sampler.run([(c,) for c in circuits]).result()
    if sampler.plan_only:
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
