"""Exact V2 primitives and adjoint gradients built on :mod:`.statevector`.

``ExactSampler`` / ``ExactEstimator`` implement Qiskit's ``BaseSamplerV2`` / ``BaseEstimatorV2``
and evaluate every parameter binding of a PUB in one vectorised pass. ``ExactSamplerGradient`` /
``ExactEstimatorGradient`` implement qiskit-machine-learning's gradient interfaces with the
adjoint method. Handed to ``SamplerQNN`` / ``EstimatorQNN``, they replace the default
per-binding statevector runs and parameter-shift gradients without changing the QNN API.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    DataBin,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
)
from qiskit.primitives.base.base_primitive_job import BasePrimitiveJob
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.circuit import QuantumCircuit
from qiskit.providers import JobStatus, Options
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.gradients import (
    BaseEstimatorGradient,
    BaseSamplerGradient,
    EstimatorGradientResult,
    SamplerGradientResult,
)
from qiskit_machine_learning.gradients.utils import DerivativeType

from ..errors import UnsupportedCircuitError
from .statevector import DiagonalOrPauli, Program, compile_circuit

__all__ = [
    "ExactSampler",
    "ExactEstimator",
    "ExactSamplerGradient",
    "ExactEstimatorGradient",
    "ExactDistributions",
]


class _DoneJob(BasePrimitiveJob):
    """A job whose result was computed synchronously at submission."""

    def __init__(self, result):
        super().__init__(job_id="exact")
        self._result = result

    def result(self):
        return self._result

    def status(self):
        return JobStatus.DONE

    def done(self) -> bool:
        return True

    def running(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def in_final_state(self) -> bool:
        return True

    def cancel(self):
        return None


class ExactDistributions:
    """Exact outcome distributions of one classical register over a PUB's bindings.

    ``probabilities`` has shape ``pub_shape + (2**num_bits,)``; index ``k`` is the outcome whose
    bitstring is ``format(k, f"0{num_bits}b")`` (clbit 0 rightmost, as in Qiskit).
    """

    def __init__(self, probabilities: np.ndarray, num_bits: int):
        self.probabilities = probabilities
        self.num_bits = num_bits

    @property
    def shape(self) -> tuple[int, ...]:
        return self.probabilities.shape[:-1]

    def get_probabilities(self, loc: int | tuple[int, ...] | None = None) -> dict[str, float]:
        """Bitstring -> probability at ``loc`` (required unless the PUB has shape ``()``)."""
        row = self.probabilities[() if loc is None else loc]
        if row.ndim != 1:
            raise ValueError(f"loc must select one binding of a PUB of shape {self.shape}")
        return {format(k, f"0{self.num_bits}b"): float(p) for k, p in enumerate(row) if p > 0}

    def get_counts(self, loc: int | tuple[int, ...] | None = None) -> dict[str, float]:
        """The exact distribution as weights that sum to one (no shots are drawn).

        Provided so that consumers that normalise counts, such as ``SamplerQNN``, read the
        exact probabilities.
        """
        return self.get_probabilities(loc)


class ExactSampler(BaseSamplerV2):
    """Exact (shot-free) sampler: returns outcome probabilities, not samples.

    Circuits must measure into a single classical register with terminal measurements.
    """

    def run(self, pubs: Iterable, *, shots: int | None = None) -> _DoneJob:
        if shots is not None:
            raise ValueError(
                f"ExactSampler returns exact probabilities and takes no shots (got shots={shots}); "
                "use an Aer sampler to draw samples"
            )
        coerced = [SamplerPub.coerce(pub) for pub in pubs]
        for pub in coerced:
            if pub.shots is not None:
                raise ValueError("ExactSampler takes no shots; remove the shots from the PUB")
        return _DoneJob(PrimitiveResult([self._run_pub(pub) for pub in coerced]))

    @staticmethod
    def _run_pub(pub: SamplerPub) -> SamplerPubResult:
        circuit = pub.circuit
        if len(circuit.cregs) != 1:
            raise UnsupportedCircuitError(
                f"ExactSampler needs exactly one classical register, the circuit has "
                f"{len(circuit.cregs)}"
            )
        program = compile_circuit(circuit)
        values = _binding_rows(pub.parameter_values, circuit, program)
        probs = program.probabilities(values)
        shape = pub.shape
        dist = ExactDistributions(probs.reshape(shape + probs.shape[-1:]), program.num_clbits)
        data = DataBin(**{circuit.cregs[0].name: dist}, shape=shape)
        return SamplerPubResult(data, metadata={"shots": None, "exact": True})


class ExactEstimator(BaseEstimatorV2):
    """Exact estimator. ``precision > 0`` adds Gaussian noise of that standard deviation, as
    Qiskit's ``StatevectorEstimator`` does; the default precision is 0 (exact)."""

    def __init__(self, *, default_precision: float = 0.0, seed: int | None = None):
        if default_precision < 0:
            raise ValueError(f"default_precision must be >= 0, got {default_precision}")
        self._default_precision = default_precision
        self._rng = np.random.default_rng(seed)

    def run(self, pubs: Iterable, *, precision: float | None = None) -> _DoneJob:
        precision = self._default_precision if precision is None else precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        states: list[tuple[object, np.ndarray, np.ndarray]] = []  # (circuit, values, states)
        return _DoneJob(PrimitiveResult([self._run_pub(pub, states) for pub in coerced]))

    def _run_pub(self, pub: EstimatorPub, states: list) -> PubResult:
        circuit = pub.circuit
        program = compile_circuit(circuit)
        bindings = pub.parameter_values
        values = _binding_rows(bindings, circuit, program)
        psi = _shared_states(states, circuit, values, program)
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


def _shared_states(cache: list, circuit, values: np.ndarray, program: Program) -> np.ndarray:
    """Statevectors for ``values``, reused across the PUBs of one run (EstimatorQNN sends one PUB
    per observable, all with the same circuit and bindings)."""
    for cached_circuit, cached_values, psi in cache:
        if cached_circuit is circuit and np.array_equal(cached_values, values):
            return psi
    psi = program.states(values)
    cache.append((circuit, values, psi))
    return psi


class SyncSamplerGradientRun:
    """``run`` of a sampler gradient computed at once (no job thread) and validated once per
    distinct circuit; the class supplies ``_run``."""

    def run(self, circuits, parameter_values, parameters=None, **options) -> _DoneJob:
        circuits, parameters = _normalise(circuits, parameters, parameter_values)
        return _DoneJob(self._run(circuits, parameter_values, parameters, **options))


class SyncEstimatorGradientRun:
    """``run`` of an estimator gradient computed at once (no job thread) and validated once per
    distinct circuit; the class supplies ``_run``."""

    def run(self, circuits, observables, parameter_values, parameters=None, **options) -> _DoneJob:
        circuits, parameters = _normalise(circuits, parameters, parameter_values)
        if not isinstance(observables, (list, tuple)):
            observables = [observables]
        if len(observables) != len(circuits):
            raise ValueError(
                f"The number of circuits ({len(circuits)}) does not match the number of "
                f"observables ({len(observables)})."
            )
        return _DoneJob(self._run(circuits, observables, parameter_values, parameters, **options))


class ExactSamplerGradient(SyncSamplerGradientRun, BaseSamplerGradient):
    """Adjoint gradients of exact outcome probabilities (no parameter shift)."""

    def __init__(self, sampler: BaseSamplerV2 | None = None, options: Options | None = None):
        super().__init__(sampler or ExactSampler(), options=options)

    def _run(self, circuits, parameter_values, parameters, **options) -> SamplerGradientResult:
        gradients: list = [None] * len(circuits)
        for rows, circuit in _group_rows(circuits):
            program = compile_circuit(circuit)
            outcome = program.outcome_index()
            # Probabilities sum to one, so the last outcome's gradient is minus the others'.
            projectors = [
                DiagonalOrPauli.projector(outcome == k)
                for k in range((1 << program.num_clbits) - 1)
            ]
            values = np.asarray([parameter_values[i] for i in rows], dtype=float)
            _, grads = program.expectation_gradients(values, projectors)  # (rows, K - 1, P)
            grads = np.concatenate([grads, -grads.sum(axis=1, keepdims=True)], axis=1)
            grads = np.swapaxes(grads, 1, 2)  # (rows, P, K)
            selected = _Columns(circuit).select(grads, [parameters[i] for i in rows])
            for i, per_param in zip(rows, selected):
                gradients[i] = [dict(enumerate(g)) for g in per_param.tolist()]
        metadata = [{"parameters": p} for p in parameters]
        return SamplerGradientResult(gradients=gradients, metadata=metadata, options=Options())


class ExactEstimatorGradient(SyncEstimatorGradientRun, BaseEstimatorGradient):
    """Adjoint gradients of exact expectation values (no parameter shift)."""

    def __init__(self, estimator: BaseEstimatorV2 | None = None, options: Options | None = None):
        super().__init__(estimator or ExactEstimator(), options=options)

    def _run(
        self, circuits, observables, parameter_values, parameters, **options
    ) -> EstimatorGradientResult:
        if self.derivative_type != DerivativeType.REAL:
            raise ValueError("ExactEstimatorGradient computes real derivatives only")
        gradients: list = [None] * len(circuits)
        for rows, circuit in _group_rows(circuits):
            program = compile_circuit(circuit)
            columns = _Columns(circuit)
            by_observable: dict[int, list[int]] = defaultdict(list)
            for i in rows:
                by_observable[id(observables[i])].append(i)
            groups = list(by_observable.values())
            values = [np.asarray([parameter_values[i] for i in g], dtype=float) for g in groups]
            operators = [_observable(observables[g[0]], program.num_qubits).operator for g in groups]
            if all(v.shape == values[0].shape and np.array_equal(v, values[0]) for v in values):
                # EstimatorQNN repeats the same bindings for each observable: one sweep serves all.
                _, grads = program.expectation_gradients(values[0], operators)
                per_group = [grads[:, k] for k in range(len(groups))]
            else:
                per_group = [
                    program.expectation_gradients(v, [op])[1][:, 0]
                    for v, op in zip(values, operators)
                ]
            for g, grads in zip(groups, per_group):
                for i, row in zip(g, columns.select(grads, [parameters[i] for i in g])):
                    gradients[i] = row
        metadata = [{"parameters": p} for p in parameters]
        return EstimatorGradientResult(gradients=gradients, metadata=metadata, options=Options())


# ------------------------------------------------------------------ helpers
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


def _binding_rows(bindings, circuit, program: Program) -> np.ndarray:
    if program.num_parameters == 0:
        return np.zeros((max(1, bindings.size), 0))
    return bindings.as_array(circuit.parameters).reshape(-1, program.num_parameters)


def _normalise(circuits, parameters, parameter_values):
    """Defaults and checks of the base classes' ``run``, done once per distinct circuit."""
    if isinstance(circuits, QuantumCircuit):
        circuits = [circuits]
    if parameters is None:
        parameters = [None] * len(circuits)
    if len(circuits) != len(parameter_values) or len(parameters) != len(circuits):
        raise ValueError(
            f"The number of circuits ({len(circuits)}) does not match the number of parameter "
            f"value sets ({len(parameter_values)}) or parameter lists ({len(parameters)})."
        )
    seen: set[tuple[int, int]] = set()
    normalised = []
    for circuit, values, params in zip(circuits, parameter_values, parameters):
        if params is None:
            params = circuit.parameters
        key = (id(circuit), id(params))
        if key not in seen:
            seen.add(key)
            if not circuit.num_parameters:
                raise ValueError("The circuit is not parameterised.")
            if not set(params).issubset(circuit.parameters):
                raise ValueError("The parameters to differentiate are not all in the circuit.")
        if len(values) != circuit.num_parameters:
            raise ValueError(
                f"The number of values ({len(values)}) does not match the number of "
                f"parameters ({circuit.num_parameters})."
            )
        normalised.append(params)
    return list(circuits), normalised


def _group_rows(circuits) -> list[tuple[list[int], object]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, circuit in enumerate(circuits):
        groups[id(circuit)].append(i)
    return [(rows, circuits[rows[0]]) for rows in groups.values()]


class _Columns:
    """Maps a sequence of the circuit's parameters to their columns (memoised per sequence)."""

    def __init__(self, circuit):
        self._index = {p: i for i, p in enumerate(circuit.parameters)}
        self._memo: dict[int, tuple[object, list[int]]] = {}

    def __call__(self, params) -> list[int]:
        hit = self._memo.get(id(params))
        if hit is None or hit[0] is not params:
            hit = (params, [self._index[p] for p in params])
            self._memo[id(params)] = hit
        return hit[1]

    def select(self, grads: np.ndarray, params: list) -> list[np.ndarray]:
        """Row ``j`` of ``grads`` (axis 1 indexed by parameter) restricted to ``params[j]``."""
        if all(p is params[0] for p in params):  # the usual case: one slice for all rows
            return list(grads[:, self(params[0])])
        return [row[self(p)] for row, p in zip(grads, params)]
