"""Gradients of the noisy primitives.

``AdjointNoisy*Gradient``: reverse-mode gradients from the fast density-matrix engine
(:mod:`.density`). ``Noisy*Gradient`` chooses per circuit between it and parameter shift on
Aer, by the simulation's engine (``NoisySimulation.engine_for``); ``training_primitives``
(``qmoe sweep --retrain``) uses it.

``BatchedShift*Gradient``: parameter shift, exact for noisy expectation values too, on any
noisy primitive (the Aer engine, ``--engine aer``). qiskit-machine-learning's
``ParamShift*Gradient`` sends one PUB per shifted point (one simulator call each); these send
one PUB per circuit, so a batch costs one Aer call.

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
    diagonal_eigenvalues,
    one_register,
    outcome_probabilities,
)
from ..primitives.sampling import final_measurements, register_probabilities

__all__ = ["BatchedShiftSamplerGradient", "BatchedShiftEstimatorGradient",
           "AdjointNoisySamplerGradient", "AdjointNoisyEstimatorGradient", "NoisySamplerGradient",
           "NoisyEstimatorGradient", "training_primitives"]

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


class AdjointNoisySamplerGradient(SyncSamplerGradient):
    """Reverse-mode gradients of a :class:`~qmoe_qiskit.noise_models.NoisySampler`'s exact
    noisy outcome probabilities (the fast density-matrix engine): one forward pass and one
    backward sweep per batch, whatever the number of parameters."""

    def _circuit_gradients(self, circuit: QuantumCircuit, values: np.ndarray) -> np.ndarray:
        simulation = self._sampler.simulation
        layout = final_measurements(circuit)
        if len(layout.registers) != 1:
            raise UnsupportedCircuitError("noisy sampler gradients need a circuit with exactly "
                                          f"one classical register, not {len(layout.registers)}")
        compiled = simulation.compile(circuit)
        physical = [compiled.layout[q] for q in layout.qubits]
        _, grads = simulation.probabilities_and_gradients(circuit, values, physical)
        rows, params, outcomes = grads.shape
        register = register_probabilities(grads.reshape(rows * params, outcomes),
                                          layout.registers[0])
        return register.reshape(rows, params, -1)


class AdjointNoisyEstimatorGradient(SyncEstimatorGradient):
    """Reverse-mode gradients of a :class:`~qmoe_qiskit.noise_models.NoisyEstimator`'s exact
    noisy I/Z expectation values (the fast density-matrix engine)."""

    def _circuit_gradients(self, circuit: QuantumCircuit, observables: list,
                           values: list[np.ndarray]) -> list[np.ndarray]:
        simulation = self._estimator.simulation
        compiled = simulation.compile(circuit)
        if all(v.shape == values[0].shape and np.array_equal(v, values[0]) for v in values):
            # EstimatorQNN repeats the bindings for each observable: one forward pass and one
            # backward sweep over the joint outcomes of all their qubits serve them all.
            support, eig = diagonal_eigenvalues(observables)
            physical = [compiled.layout[q] for q in support]
            _, grads = simulation.probabilities_and_gradients(circuit, values[0], physical)
            return [grads @ row for row in eig]  # each (rows, parameters)
        out = []
        for observable, rows in zip(observables, values):
            support, eig = diagonal_eigenvalues([observable])
            physical = [compiled.layout[q] for q in support]
            _, grads = simulation.probabilities_and_gradients(circuit, rows, physical)
            out.append(grads @ eig[0])
        return out


_METHODS = {"fast": "reverse mode (fast engine)", "aer": "parameter shift (Aer)"}


class NoisySamplerGradient(SyncSamplerGradient):
    """Per circuit, the gradient its simulation's engine gives (``engine_for(circuit,
    gradients=True)``): :class:`AdjointNoisySamplerGradient` on the fast engine,
    :class:`BatchedShiftSamplerGradient` on Aer; what ran is added to ``simulation.ran``."""

    def __init__(self, sampler, options=None):
        super().__init__(sampler, options=options)
        self._by_engine = {"fast": AdjointNoisySamplerGradient(sampler, options=options),
                           "aer": BatchedShiftSamplerGradient(sampler, options=options)}

    def _circuit_gradients(self, circuit: QuantumCircuit, values: np.ndarray) -> np.ndarray:
        simulation = self._sampler.simulation
        engine = simulation.engine_for(circuit, gradients=True)
        simulation.ran["gradients"].add(_METHODS[engine])
        return self._by_engine[engine]._circuit_gradients(circuit, values)


class NoisyEstimatorGradient(SyncEstimatorGradient):
    """:class:`NoisySamplerGradient` for a noisy estimator's expectation values."""

    def __init__(self, estimator, options=None):
        super().__init__(estimator, options=options)
        self._by_engine = {"fast": AdjointNoisyEstimatorGradient(estimator, options=options),
                           "aer": BatchedShiftEstimatorGradient(estimator, options=options)}

    def _circuit_gradients(self, circuit: QuantumCircuit, observables: list,
                           values: list[np.ndarray]) -> list[np.ndarray]:
        simulation = self._estimator.simulation
        engine = simulation.engine_for(circuit, gradients=True)
        simulation.ran["gradients"].add(_METHODS[engine])
        return self._by_engine[engine]._circuit_gradients(circuit, observables, values)


def training_primitives(simulation) -> dict:
    """What ``model.set_primitives(**...)`` needs to train under ``simulation``'s noise: the
    noisy sampler and estimator (exact values) with, per circuit, reverse-mode gradients on
    the fast engine or batched parameter shift on Aer (:class:`NoisySamplerGradient`)."""
    from .primitives import NoisyEstimator, NoisySampler

    sampler, estimator = NoisySampler(simulation), NoisyEstimator(simulation)
    return {"sampler": sampler, "estimator": estimator,
            "sampler_gradient": NoisySamplerGradient(sampler),
            "estimator_gradient": NoisyEstimatorGradient(estimator)}
