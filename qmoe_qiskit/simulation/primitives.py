"""Exact V2 primitives and adjoint gradients built on :mod:`.statevector`.

``ExactSampler`` / ``ExactEstimator`` implement Qiskit's ``BaseSamplerV2`` / ``BaseEstimatorV2``
and evaluate every parameter binding of a PUB in one vectorised pass. ``ExactSamplerGradient`` /
``ExactEstimatorGradient`` implement qiskit-machine-learning's gradient interfaces with the
adjoint method. Handed to ``SamplerQNN`` / ``EstimatorQNN``, they replace the default
per-binding statevector runs and parameter-shift gradients without changing the QNN API.
"""

from __future__ import annotations

import warnings

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.exceptions import QiskitError
from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    DataBin,
    PubResult,
    SamplerPubResult,
    StatevectorEstimator,
    StatevectorSampler,
)
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.observables_array import ObservablesArray
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import Options
from qiskit.quantum_info import DensityMatrix, SparsePauliOp
from qiskit_machine_learning.gradients import (
    ParamShiftEstimatorGradient,
    ParamShiftSamplerGradient,
)
from qiskit_machine_learning.gradients.utils import DerivativeType

from ..errors import UnsupportedCircuitError
from ..primitives import (
    CircuitCache,
    SyncEstimator,
    SyncEstimatorGradient,
    SyncSamplerGradient,
    binding_rows,
)
from ..primitives.sampling import (
    DEFAULT_SHOTS,
    FinalMeasurements,
    ProbabilitySampler,
    final_measurements,
    generator,
    marginal,
)
from .statevector import DiagonalOrPauli, check_dtype, compile_circuit

__all__ = [
    "ExactSampler",
    "ExactEstimator",
    "ExactSamplerGradient",
    "ExactEstimatorGradient",
]


class ExactSampler(ProbabilitySampler):
    """Qiskit's V2 sampler contract (as ``StatevectorSampler``) on the fast exact simulator.

    ``default_shots`` (1024 by default), ``shots`` per run or PUB and ``seed`` behave as in the
    reference: results are ``BitArray`` samples, one field per classical register, drawn from
    the exact distribution (the same distribution, not bit-identical samples). With
    ``default_shots=None`` the fields are :class:`~qmoe_qiskit.primitives.ExactDistributions`
    (``get_probabilities(loc)``): the exact, fast path that the QNNs of this toolkit use.

    Any gate with a definition is unrolled by Qiskit's transpiler once per circuit; angles that
    are not affine in the parameters are evaluated per binding. A circuit this simulator cannot
    run (reset, ``initialize``, more than 24 qubits) runs on Qiskit's reference simulator, with
    one warning per circuit; what the reference refuses (control flow, mid-circuit
    measurement) raises its ``QiskitError``.

    ``dtype="complex64"`` simulates in single precision (float32 for real circuits): half the
    memory and about twice the speed for wide circuits, at about 1e-7 of error in the
    probabilities (``benchmarks/width.py`` measures it).
    """

    def __init__(self, *, default_shots: int | None = DEFAULT_SHOTS,
                 seed: np.random.Generator | int | None = None, dtype: str = "complex128"):
        super().__init__(default_shots=default_shots, seed=seed)
        self.dtype = check_dtype(dtype)

    def _sample_pub(self, pub: SamplerPub, rng: np.random.Generator) -> SamplerPubResult:
        layout = final_measurements(pub.circuit)
        reason = _unsupported(layout.unmeasured)
        if reason is None:
            return super()._sample_pub(pub, rng)
        _warn_once(pub.circuit, reason)
        if pub.shots is not None:
            return StatevectorSampler(seed=rng).run([pub]).result()[0]
        return self._exact_reference(pub, layout)

    def _probabilities(self, circuit: QuantumCircuit, layout: FinalMeasurements,
                       values: np.ndarray) -> np.ndarray:
        program = compile_circuit(layout.unmeasured, self.dtype)
        probs = program.basis_probabilities(values).astype(float, copy=False)
        return marginal(probs, program.num_qubits, layout.qubits)

    def _exact_reference(self, pub: SamplerPub, layout: FinalMeasurements) -> SamplerPubResult:
        """Exact distributions of a circuit the fast simulator cannot run: Qiskit's density
        matrix of each bound circuit (reset included), as the reference would sample them."""
        circuit = layout.unmeasured
        if any(inst.is_control_flow() for inst in circuit.data):
            raise QiskitError("ExactSampler cannot handle ControlFlowOp")
        if any(inst.operation.name == "measure" for inst in circuit.data):
            raise QiskitError("ExactSampler cannot handle mid-circuit measurements")
        bound = pub.parameter_values.bind_all(circuit)
        probs = np.stack([DensityMatrix(c).probabilities(list(layout.qubits))
                          for c in bound.ravel()])
        return self._result(pub, layout, probs, None)


class ExactEstimator(SyncEstimator):
    """Qiskit's V2 estimator contract (as ``StatevectorEstimator``) on the fast exact simulator.

    ``precision > 0`` adds Gaussian noise of that standard deviation to every expectation
    value, any PUB shape; the generator is made from ``seed`` afresh for every PUB, so one seed
    repeats its results, as in the reference. The default precision is 0 (exact). Circuits
    this simulator cannot run go to Qiskit's reference estimator, with one warning each.
    ``dtype="complex64"``: single precision, as for :class:`ExactSampler`.
    """

    def __init__(self, *, default_precision: float = 0.0,
                 seed: np.random.Generator | int | None = None, dtype: str = "complex128"):
        if default_precision < 0:
            raise ValueError(f"default_precision must be >= 0, got {default_precision}")
        self._default_precision = default_precision
        self._seed = seed
        self.dtype = check_dtype(dtype)

    @property
    def default_precision(self) -> float:
        return self._default_precision

    @property
    def seed(self) -> np.random.Generator | int | None:
        return self._seed

    def _resolve_precision(self, precision: float | None) -> float:
        return self._default_precision if precision is None else precision

    def _run_pubs(self, pubs: list[EstimatorPub]) -> list[PubResult]:
        return [self._run_pub(pub) for pub in pubs]

    def _run_pub(self, pub: EstimatorPub) -> PubResult:
        circuit = pub.circuit
        reason = _unsupported(circuit)
        if reason is not None:
            _warn_once(circuit, reason)
            return StatevectorEstimator(seed=self._seed).run([pub]).result()[0]
        program = compile_circuit(circuit, self.dtype)
        bindings = pub.parameter_values
        # EstimatorQNN sends one PUB per observable, with the same circuit and bindings: the
        # program keeps its last forward pass, so the states are computed once for all.
        psi = program.states(binding_rows(bindings, circuit.parameters))
        operators = _operators(pub.observables, program.num_qubits)
        table = np.stack([op.expectation(psi) for op in operators])  # (observables, bindings)
        if pub.observables.shape == ():
            evs = table[0].reshape(bindings.shape)
        else:
            obs_idx = np.arange(len(operators)).reshape(pub.observables.shape)
            val_idx = np.arange(max(1, bindings.size)).reshape(bindings.shape)
            obs_idx, val_idx = np.broadcast_arrays(obs_idx, val_idx)
            evs = np.asarray(table[obs_idx, val_idx], dtype=float)
        stds = np.zeros_like(evs)
        if pub.precision:
            rng = generator(self._seed)
            evs = np.asarray(rng.normal(evs, pub.precision), dtype=float).reshape(evs.shape)
            stds = np.full_like(evs, pub.precision)
        data = DataBin(evs=evs, stds=stds, shape=evs.shape)
        return PubResult(data, metadata={"target_precision": pub.precision,
                                         "circuit_metadata": circuit.metadata})


def _unsupported(circuit: QuantumCircuit) -> str | None:
    """Why the fast simulator cannot run ``circuit``, or ``None`` when it can."""
    try:
        compile_circuit(circuit)
    except UnsupportedCircuitError as exc:
        return str(exc)
    return None


_WARNED: CircuitCache[bool] = CircuitCache(lambda circuit: False)


def _warn_once(circuit: QuantumCircuit, reason: str) -> None:
    if not _WARNED(circuit):
        warnings.warn(f"circuit {circuit.name!r} runs on Qiskit's reference simulator: {reason}",
                      UserWarning, stacklevel=4)
        _WARNED.put(circuit, True)


class ExactSamplerGradient(SyncSamplerGradient):
    """Adjoint gradients of exact outcome probabilities (no parameter shift). A circuit the fast
    simulator cannot run gets qiskit-ml's parameter shift on the sampler instead (one warning),
    as the reference path would compute it."""

    def __init__(self, sampler: BaseSamplerV2 | None = None, options: Options | None = None):
        super().__init__(sampler or ExactSampler(default_shots=None), options=options)

    def _circuit_gradients(self, circuit: QuantumCircuit, values: np.ndarray) -> np.ndarray:
        reason = _unsupported(circuit)
        if reason is not None:  # parameter shift on the sampler, which runs the reference
            _warn_once(circuit, reason)
            shift = ParamShiftSamplerGradient(self._sampler)
            result = shift.run([circuit] * len(values), values).result()
            size = 1 << circuit.num_clbits
            return np.array([[[d.get(k, 0.0) for k in range(size)] for d in row]
                             for row in result.gradients])
        # The gates without the final measurements: the program the sampler ran, whose
        # forward pass of these values it keeps, so only the backward sweep runs here.
        program = compile_circuit(final_measurements(circuit).unmeasured,
                                  getattr(self._sampler, "dtype", "complex128"))
        measured = compile_circuit(circuit)
        outcome = measured.outcome_index()
        # Probabilities sum to one, so the last outcome's gradient is minus the others'.
        projectors = [
            DiagonalOrPauli.projector(outcome == k)
            for k in range((1 << measured.num_clbits) - 1)
        ]
        _, grads = program.expectation_gradients(values, projectors)  # (rows, K - 1, P)
        grads = np.concatenate([grads, -grads.sum(axis=1, keepdims=True)], axis=1)
        return np.swapaxes(grads, 1, 2)  # (rows, P, K)


class ExactEstimatorGradient(SyncEstimatorGradient):
    """Adjoint gradients of exact expectation values (no parameter shift); circuits the fast
    simulator cannot run get parameter shift on the estimator (one warning)."""

    def __init__(self, estimator: BaseEstimatorV2 | None = None, options: Options | None = None):
        super().__init__(estimator or ExactEstimator(), options=options)

    def _circuit_gradients(self, circuit: QuantumCircuit, observables: list,
                           values: list[np.ndarray]) -> list[np.ndarray]:
        if self.derivative_type != DerivativeType.REAL:
            raise ValueError("ExactEstimatorGradient computes real derivatives only")
        reason = _unsupported(circuit)
        if reason is not None:  # parameter shift on the estimator, which runs the reference
            _warn_once(circuit, reason)
            shift = ParamShiftEstimatorGradient(self._estimator)
            return [np.array(shift.run([circuit] * len(v), [obs] * len(v), v).result().gradients)
                    for obs, v in zip(observables, values)]
        program = compile_circuit(circuit, getattr(self._estimator, "dtype", "complex128"))
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
# Per ObservablesArray object (the PUB coercion hands the QNNs' the same one on every call):
# (the array, its number of qubits, its observables converted).
_OPERATORS: dict[int, tuple[ObservablesArray, int, list[_Observable]]] = {}


def _operators(observables: ObservablesArray, num_qubits: int) -> list[_Observable]:
    """Every observable of a PUB's array, flattened, converted once per array object."""
    hit = _OPERATORS.get(id(observables))
    if hit is not None and hit[0] is observables and hit[1] == num_qubits:
        return hit[2]
    converted = [_observable(obs, num_qubits) for obs in observables.ravel().tolist()]
    if len(_OPERATORS) >= 256:
        _OPERATORS.clear()
    _OPERATORS[id(observables)] = (observables, num_qubits, converted)
    return converted


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
