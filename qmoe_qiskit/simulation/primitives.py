"""Exact V2 primitives and adjoint gradients built on :mod:`.statevector`.

``ExactSampler`` / ``ExactEstimator`` implement Qiskit's ``BaseSamplerV2`` / ``BaseEstimatorV2``
and evaluate every parameter binding of a PUB in one vectorised pass. ``ExactSamplerGradient`` /
``ExactEstimatorGradient`` implement qiskit-machine-learning's gradient interfaces with the
adjoint method. Handed to ``SamplerQNN`` / ``EstimatorQNN``, they replace the default
per-binding statevector runs and parameter-shift gradients without changing the QNN API.
"""

from __future__ import annotations

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2, DataBin, PubResult, SamplerPubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import Options
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.gradients.utils import DerivativeType

from ..primitives import (
    ExactDistributions,
    SyncEstimator,
    SyncEstimatorGradient,
    SyncSampler,
    SyncSamplerGradient,
    binding_rows,
    one_register,
)
from .statevector import DiagonalOrPauli, compile_circuit

__all__ = [
    "ExactSampler",
    "ExactEstimator",
    "ExactSamplerGradient",
    "ExactEstimatorGradient",
]


class ExactSampler(SyncSampler):
    """Exact (shot-free) sampler: returns outcome probabilities, not samples.

    Circuits must measure into a single classical register with terminal measurements.
    """

    def _resolve_shots(self, shots: int | None) -> None:
        if shots is not None:
            raise ValueError(
                f"ExactSampler returns exact probabilities and takes no shots (got shots={shots}); "
                "use an Aer sampler to draw samples"
            )
        return None

    def _run_pub(self, pub: SamplerPub) -> SamplerPubResult:
        if pub.shots is not None:
            raise ValueError("ExactSampler takes no shots; remove the shots from the PUB")
        circuit = pub.circuit
        register = one_register(circuit, "ExactSampler")
        program = compile_circuit(circuit)
        probs = program.probabilities(binding_rows(pub.parameter_values, circuit.parameters))
        shape = pub.shape
        dist = ExactDistributions(probs.reshape(shape + probs.shape[-1:]), program.num_clbits)
        data = DataBin(**{register: dist}, shape=shape)
        return SamplerPubResult(data, metadata={"shots": None, "exact": True})


class ExactEstimator(SyncEstimator):
    """Exact estimator. ``precision > 0`` adds Gaussian noise of that standard deviation, as
    Qiskit's ``StatevectorEstimator`` does; the default precision is 0 (exact)."""

    def __init__(self, *, default_precision: float = 0.0, seed: int | None = None):
        if default_precision < 0:
            raise ValueError(f"default_precision must be >= 0, got {default_precision}")
        self._default_precision = default_precision
        self._rng = np.random.default_rng(seed)

    def _resolve_precision(self, precision: float | None) -> float:
        return self._default_precision if precision is None else precision

    def _run_pubs(self, pubs: list[EstimatorPub]) -> list[PubResult]:
        # EstimatorQNN sends one PUB per observable, all with the same circuit and bindings:
        # the statevectors are computed once per distinct (circuit, values) of this call.
        states: list[tuple[QuantumCircuit, np.ndarray, np.ndarray]] = []
        return [self._run_pub(pub, states) for pub in pubs]

    def _run_pub(self, pub: EstimatorPub, states: list) -> PubResult:
        circuit = pub.circuit
        program = compile_circuit(circuit)
        bindings = pub.parameter_values
        values = binding_rows(bindings, circuit.parameters)
        psi = _shared_states(states, circuit, values)
        obs_list = pub.observables.ravel().tolist()
        table = np.stack(
            [_observable(obs, program.num_qubits).expectation(psi) for obs in obs_list]
        )  # (num_observables, num_bindings)
        obs_idx = np.arange(len(obs_list)).reshape(pub.observables.shape)
        val_idx = np.arange(max(1, bindings.size)).reshape(bindings.shape)
        obs_idx, val_idx = np.broadcast_arrays(obs_idx, val_idx)
        evs = table[obs_idx, val_idx]
        stds = np.zeros_like(evs)
        if pub.precision and pub.precision > 0:
            evs = self._rng.normal(evs, pub.precision)
            stds = np.full_like(evs, pub.precision)
        data = DataBin(evs=evs, stds=stds, shape=evs.shape)
        return PubResult(data, metadata={"target_precision": pub.precision, "exact": True})


def _shared_states(cache: list, circuit: QuantumCircuit, values: np.ndarray) -> np.ndarray:
    """Statevectors for ``values``, reused across the PUBs of one run."""
    for cached_circuit, cached_values, psi in cache:
        if cached_circuit is circuit and np.array_equal(cached_values, values):
            return psi
    psi = compile_circuit(circuit).states(values)
    cache.append((circuit, values, psi))
    return psi


class ExactSamplerGradient(SyncSamplerGradient):
    """Adjoint gradients of exact outcome probabilities (no parameter shift)."""

    def __init__(self, sampler: BaseSamplerV2 | None = None, options: Options | None = None):
        super().__init__(sampler or ExactSampler(), options=options)

    def _circuit_gradients(self, circuit: QuantumCircuit, values: np.ndarray) -> np.ndarray:
        program = compile_circuit(circuit)
        outcome = program.outcome_index()
        # Probabilities sum to one, so the last outcome's gradient is minus the others'.
        projectors = [
            DiagonalOrPauli.projector(outcome == k)
            for k in range((1 << program.num_clbits) - 1)
        ]
        _, grads = program.expectation_gradients(values, projectors)  # (rows, K - 1, P)
        grads = np.concatenate([grads, -grads.sum(axis=1, keepdims=True)], axis=1)
        return np.swapaxes(grads, 1, 2)  # (rows, P, K)


class ExactEstimatorGradient(SyncEstimatorGradient):
    """Adjoint gradients of exact expectation values (no parameter shift)."""

    def __init__(self, estimator: BaseEstimatorV2 | None = None, options: Options | None = None):
        super().__init__(estimator or ExactEstimator(), options=options)

    def _circuit_gradients(self, circuit: QuantumCircuit, observables: list,
                           values: list[np.ndarray]) -> list[np.ndarray]:
        if self.derivative_type != DerivativeType.REAL:
            raise ValueError("ExactEstimatorGradient computes real derivatives only")
        program = compile_circuit(circuit)
        operators = [_observable(obs, program.num_qubits).operator for obs in observables]
        if all(v.shape == values[0].shape and np.array_equal(v, values[0]) for v in values):
            # EstimatorQNN repeats the same bindings for each observable: one sweep serves all.
            _, grads = program.expectation_gradients(values[0], operators)
            return [grads[:, k] for k in range(len(operators))]
        return [program.expectation_gradients(v, [op])[1][:, 0]
                for v, op in zip(values, operators)]


# ------------------------------------------------------------------ observables
class _Observable:
    def __init__(self, operator: DiagonalOrPauli):
        self.operator = operator

    def expectation(self, states: np.ndarray) -> np.ndarray:
        return np.einsum("rs,rs->r", states.conj(), self.operator.apply(states)).real


_OBSERVABLES: dict[tuple, _Observable] = {}


def _observable(obs, num_qubits: int) -> _Observable:
    """An observable given as a ``{label: coeff}`` dict, ``SparsePauliOp`` or Pauli label,
    converted once per distinct content (the QNNs pass the same observables on every call)."""
    if isinstance(obs, dict):
        key = ("dict", num_qubits, tuple(obs.items()))
    elif isinstance(obs, SparsePauliOp):
        paulis = obs.paulis
        key = ("sparse", num_qubits, paulis.z.tobytes(), paulis.x.tobytes(),
               paulis.phase.tobytes(), obs.coeffs.tobytes(), obs.size)
    else:
        key = None
    hit = _OBSERVABLES.get(key) if key is not None else None
    if hit is not None:
        return hit
    items = list(obs.items()) if isinstance(obs, dict) else SparsePauliOp(obs).to_list()
    converted = _Observable(DiagonalOrPauli.from_pauli_list(items, num_qubits))
    if key is not None:
        if len(_OBSERVABLES) >= 256:
            _OBSERVABLES.clear()
        _OBSERVABLES[key] = converted
    return converted
