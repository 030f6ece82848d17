"""Synchronous gradient bases in qiskit-machine-learning's interface.

qiskit-machine-learning's gradients run in a job thread and validate every row. These bases
validate once per distinct circuit, compute at once, group rows by circuit (and by observable),
select the requested parameter columns and package the result, so that each gradient method
writes only its per-circuit step: :meth:`SyncSamplerGradient._circuit_gradients` or
:meth:`SyncEstimatorGradient._circuit_gradients`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.providers import Options
from qiskit_machine_learning.gradients import (
    BaseEstimatorGradient,
    BaseSamplerGradient,
    EstimatorGradientResult,
    SamplerGradientResult,
)

from .base import DoneJob, check_finite
from .cache import CircuitCache

__all__ = ["SyncSamplerGradient", "SyncEstimatorGradient", "ParameterColumns",
           "group_by_circuit"]

Circuits = QuantumCircuit | Sequence[QuantumCircuit]
Values = Sequence[Sequence[float]]
Parameters = Sequence[Sequence[Parameter] | None] | None


class SyncSamplerGradient(BaseSamplerGradient):
    """Gradients of a sampler's outcome probabilities, computed at once (no job thread)."""

    def run(self, circuits: Circuits, parameter_values: Values, parameters: Parameters = None,
            **options) -> DoneJob:
        circuits, parameters = _normalise(circuits, parameters, parameter_values)
        return DoneJob(self._run(circuits, parameter_values, parameters, **options))

    def _run(self, circuits, parameter_values, parameters, **options) -> SamplerGradientResult:
        gradients: list = [None] * len(circuits)
        for rows, circuit in group_by_circuit(circuits):
            values = _rows(parameter_values, rows)
            grads = self._circuit_gradients(circuit, values)
            selected = _COLUMNS(circuit).select(grads, [parameters[i] for i in rows])
            for i, per_param in zip(rows, selected):
                gradients[i] = [dict(enumerate(g)) for g in per_param.tolist()]
        metadata = [{"parameters": p} for p in parameters]
        return SamplerGradientResult(gradients=gradients, metadata=metadata, options=Options())

    def _circuit_gradients(self, circuit: QuantumCircuit, values: np.ndarray) -> np.ndarray:
        """``d p_k / d theta_j`` for every row of ``values`` and every parameter of
        ``circuit`` (in ``circuit.parameters`` order): shape ``(rows, parameters, outcomes)``."""
        raise NotImplementedError


class SyncEstimatorGradient(BaseEstimatorGradient):
    """Gradients of an estimator's expectation values, computed at once (no job thread)."""

    def run(self, circuits: Circuits, observables: Sequence | object, parameter_values: Values,
            parameters: Parameters = None, **options) -> DoneJob:
        circuits, parameters = _normalise(circuits, parameters, parameter_values)
        if not isinstance(observables, (list, tuple)):
            observables = [observables]
        if len(observables) != len(circuits):
            raise ValueError(
                f"The number of circuits ({len(circuits)}) does not match the number of "
                f"observables ({len(observables)})."
            )
        return DoneJob(self._run(circuits, observables, parameter_values, parameters, **options))

    def _run(self, circuits, observables, parameter_values, parameters,
             **options) -> EstimatorGradientResult:
        gradients: list = [None] * len(circuits)
        for rows, circuit in group_by_circuit(circuits):
            by_observable: dict[int, list[int]] = defaultdict(list)
            for i in rows:
                by_observable[id(observables[i])].append(i)
            groups = list(by_observable.values())
            values = [_rows(parameter_values, g) for g in groups]
            per_group = self._circuit_gradients(circuit, [observables[g[0]] for g in groups],
                                                values)
            columns = _COLUMNS(circuit)
            for g, grads in zip(groups, per_group):
                for i, row in zip(g, columns.select(grads, [parameters[i] for i in g])):
                    gradients[i] = row
        metadata = [{"parameters": p} for p in parameters]
        return EstimatorGradientResult(gradients=gradients, metadata=metadata, options=Options())

    def _circuit_gradients(self, circuit: QuantumCircuit, observables: list,
                           values: list[np.ndarray]) -> list[np.ndarray]:
        """For each observable and its rows of parameter values, ``d <O> / d theta_j`` of
        every parameter of ``circuit``: one array ``(rows, parameters)`` per observable."""
        raise NotImplementedError


class ParameterColumns:
    """Maps a sequence of the circuit's parameters to their columns (memoised per sequence)."""

    def __init__(self, circuit: QuantumCircuit):
        self._index = {p: i for i, p in enumerate(circuit.parameters)}
        self._memo: dict[int, tuple[object, list[int]]] = {}

    def __call__(self, params: Sequence) -> list[int]:
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


_COLUMNS: CircuitCache[ParameterColumns] = CircuitCache(ParameterColumns)


def group_by_circuit(circuits: Sequence[QuantumCircuit]) -> list[tuple[list[int], QuantumCircuit]]:
    """``(rows, circuit)`` for each distinct circuit object, in order of first appearance."""
    if circuits and all(c is circuits[0] for c in circuits):
        return [(list(range(len(circuits))), circuits[0])]
    groups: dict[int, list[int]] = defaultdict(list)
    for i, circuit in enumerate(circuits):
        groups[id(circuit)].append(i)
    return [(rows, circuits[rows[0]]) for rows in groups.values()]


def _normalise(circuits, parameters, parameter_values):
    """Defaults and checks of the base classes' ``run``, done once per distinct circuit (and
    on the whole array at once where the values are one, as the QNNs send them)."""
    if isinstance(circuits, QuantumCircuit):
        circuits = [circuits]
    if parameters is None:
        parameters = [None] * len(circuits)
    if len(circuits) != len(parameter_values) or len(parameters) != len(circuits):
        raise ValueError(
            f"The number of circuits ({len(circuits)}) does not match the number of parameter "
            f"value sets ({len(parameter_values)}) or parameter lists ({len(parameters)})."
        )
    array = parameter_values if isinstance(parameter_values, np.ndarray) \
        and parameter_values.ndim == 2 and parameter_values.dtype.kind == "f" else None
    if array is None:
        for i, values in enumerate(parameter_values):
            check_finite(values, f"parameter value set {i}")
    elif not np.isfinite(array).all():
        i = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        check_finite(array[i], f"parameter value set {i}")
    if array is not None and len(circuits) > 1 and all(c is circuits[0] for c in circuits) \
            and all(p is parameters[0] for p in parameters):
        # The QNNs' call: one circuit and one parameter list for every row, checked once.
        params = _normalise([circuits[0]], [parameters[0]], array[:1])[1][0]
        return list(circuits), [params] * len(circuits)
    chosen: dict[tuple[int, int], object] = {}
    normalised = []
    for i, (circuit, params) in enumerate(zip(circuits, parameters)):
        key = (id(circuit), id(params))
        hit = chosen.get(key)
        if hit is None:
            if not circuit.num_parameters:
                raise ValueError("The circuit is not parameterised.")
            hit = circuit.parameters if params is None else params
            if params is not None and not set(params).issubset(circuit.parameters):
                raise ValueError("The parameters to differentiate are not all in the circuit.")
            chosen[key] = hit
        size = array.shape[1] if array is not None else len(parameter_values[i])
        if size != circuit.num_parameters:
            raise ValueError(
                f"The number of values ({size}) does not match the number of "
                f"parameters ({circuit.num_parameters})."
            )
        normalised.append(hit)
    return list(circuits), normalised


def _rows(parameter_values, rows: list[int]) -> np.ndarray:
    """The value sets ``rows`` as one float array."""
    if isinstance(parameter_values, np.ndarray):
        return np.asarray(parameter_values[rows], dtype=float)
    return np.asarray([parameter_values[i] for i in rows], dtype=float)
