"""Parameter-shift gradients that send every shifted binding of a call in one PUB.

Under noise there is no adjoint method; parameter shift is exact for noisy expectation values
too. qiskit-machine-learning's ``ParamShift*Gradient`` sends one PUB per shifted point (one
simulator call each); these send one PUB per circuit, so a batch costs one Aer call. They are
used to train under noise (``qmoe sweep --retrain``).

Valid for circuits in which each differentiated parameter enters exactly one ``rx``/``ry``/
``rz``/``p`` gate, as ``a * theta + b``: the shift is ``pi / (2a)`` and the derivative
``a * (f(+) - f(-)) / 2``.
"""

from __future__ import annotations

import numpy as np
from qiskit.circuit import ParameterExpression, QuantumCircuit

from ..errors import UnsupportedCircuitError
from ..primitives import (
    SyncEstimatorGradient,
    SyncSamplerGradient,
    one_register,
    outcome_probabilities,
)

__all__ = ["BatchedShiftSamplerGradient", "BatchedShiftEstimatorGradient"]

_ROTATIONS = ("rx", "ry", "rz", "p")


def _slopes(circuit: QuantumCircuit) -> np.ndarray:
    """``a`` of each parameter (columns follow ``circuit.parameters``), checking the rule applies."""
    index = {p: i for i, p in enumerate(circuit.parameters)}
    slopes = np.zeros(len(index))
    seen = np.zeros(len(index), dtype=int)
    for inst in circuit.data:
        for angle in inst.operation.params:
            if not isinstance(angle, ParameterExpression):
                continue
            for param in angle.parameters:
                seen[index[param]] += 1
                slope = angle.gradient(param)
                if inst.operation.name not in _ROTATIONS or (
                        isinstance(slope, ParameterExpression) and slope.parameters):
                    raise UnsupportedCircuitError(
                        f"parameter {param} enters gate {inst.operation.name!r} as {angle}; the "
                        "batched shift rule needs rx/ry/rz/p angles of the form a*theta + b")
                slopes[index[param]] = float(np.real(complex(slope)))
    repeated = [str(p) for p, i in index.items() if seen[i] > 1]
    if repeated:
        raise UnsupportedCircuitError(
            f"parameters {repeated[:5]} enter more than one gate; the batched shift rule needs "
            "each parameter in one gate")
    return slopes


def _shifted(values: np.ndarray, columns: list[int], slopes: np.ndarray) -> np.ndarray:
    """Bindings ``(rows, 2, len(columns), P)``: each row with one column shifted by ±pi/(2a)."""
    rows, width = values.shape
    out = np.repeat(values[:, None, None, :], len(columns), axis=2).repeat(2, axis=1)
    for j, col in enumerate(columns):
        shift = np.pi / (2 * slopes[col]) if slopes[col] else 0.0
        out[:, 0, j, col] += shift
        out[:, 1, j, col] -= shift
    return out


def _combine(plus: np.ndarray, minus: np.ndarray, columns: list[int], slopes: np.ndarray):
    """``a * (f+ - f-) / 2`` along the parameter axis (axis 1)."""
    scale = slopes[columns].reshape((1, -1) + (1,) * (plus.ndim - 2))
    return scale * (plus - minus) / 2


class BatchedShiftSamplerGradient(SyncSamplerGradient):
    """Parameter-shift gradients of a sampler's outcome probabilities, one PUB per circuit."""

    def _circuit_gradients(self, circuit: QuantumCircuit, values: np.ndarray) -> np.ndarray:
        slopes = _slopes(circuit)
        cols = list(range(circuit.num_parameters))
        result = self._sampler.run([(circuit, _shifted(values, cols, slopes))]).result()[0]
        field = result.data[one_register(circuit, "BatchedShiftSamplerGradient")]
        probs = outcome_probabilities(field)  # (rows, 2, P, K)
        return _combine(probs[:, 0], probs[:, 1], cols, slopes)  # (rows, P, K)


class BatchedShiftEstimatorGradient(SyncEstimatorGradient):
    """Parameter-shift gradients of an estimator's expectation values, one PUB per circuit
    and observable."""

    def _circuit_gradients(self, circuit: QuantumCircuit, observables: list,
                           values: list[np.ndarray]) -> list[np.ndarray]:
        slopes = _slopes(circuit)
        cols = list(range(circuit.num_parameters))
        grads = []
        for observable, rows in zip(observables, values):
            evs = self._estimator.run(
                [(circuit, observable, _shifted(rows, cols, slopes))], precision=0.0
            ).result()[0].data.evs  # (rows, 2, P)
            grads.append(_combine(evs[:, 0], evs[:, 1], cols, slopes))
        return grads
