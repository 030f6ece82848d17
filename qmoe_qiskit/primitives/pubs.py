"""PUB coercion without per-call rework, for the shape QNNs send on every call.

``SamplerQNN`` sends ``(circuit, values)`` and ``EstimatorQNN`` ``(circuit, observable,
values)`` with the same circuit and observable objects on every forward pass and a fresh
float array of bindings. Qiskit's ``EstimatorPub.coerce`` converts the observable (a
``SparsePauliOp``) to an ``ObservablesArray`` each time and maps the bindings through
``Parameter`` objects, about 0.1 ms a PUB: at 2 qubits, more than the simulation. Here the
converted observable is kept per content, the bindings are keyed by the parameters' names (as
``BindingsArray`` stores them) and the checks ``coerce`` makes are made once per circuit or
done on the whole array. Anything else goes to Qiskit's own ``coerce``, so every error it
raises is raised unchanged.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.primitives.containers.bindings_array import BindingsArray
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.observables_array import ObservablesArray
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import SparsePauliOp

from .cache import CircuitCache

__all__ = ["coerce_estimator_pub", "coerce_sampler_pub"]

# Each circuit's parameter names in ``circuit.parameters`` order: the key of its bindings.
_NAMES: CircuitCache[tuple[str, ...]] = CircuitCache(
    lambda circuit: tuple(p.name for p in circuit.parameters))
_OBSERVABLES: dict[tuple, ObservablesArray] = {}


def _bindings(circuit: QuantumCircuit, values) -> BindingsArray | None:
    """The bindings of a float array of shape ``(..., num_parameters)``, or ``None`` where
    Qiskit's ``coerce`` should decide (other types, shapes it reads differently)."""
    if not (isinstance(values, np.ndarray) and values.dtype == np.float64 and values.ndim >= 2
            and values.shape[-1] == circuit.num_parameters > 0):
        return None
    return BindingsArray(data={_NAMES(circuit): values}, shape=values.shape[:-1])


def _observables(observable, num_qubits: int) -> ObservablesArray | None:
    """A ``SparsePauliOp``'s ``ObservablesArray``, converted once per content."""
    if not isinstance(observable, SparsePauliOp) or observable.num_qubits != num_qubits:
        return None
    paulis = observable.paulis
    key = (paulis.z.tobytes(), paulis.x.tobytes(), paulis.phase.tobytes(),
           observable.coeffs.tobytes(), paulis.z.shape)
    hit = _OBSERVABLES.get(key)
    if hit is None:
        if len(_OBSERVABLES) >= 256:
            _OBSERVABLES.clear()
        hit = _OBSERVABLES[key] = ObservablesArray.coerce(observable)
    return hit


def coerce_estimator_pub(pub, precision: float | None) -> EstimatorPub:
    """``EstimatorPub.coerce(pub, precision)``, fast for ``(circuit, SparsePauliOp, array)``."""
    if (type(pub) is tuple and len(pub) == 3 and isinstance(pub[0], QuantumCircuit)
            and (precision is None or (isinstance(precision, Real) and precision >= 0))):
        circuit = pub[0]
        bindings = _bindings(circuit, pub[2])
        observables = _observables(pub[1], circuit.num_qubits) if bindings is not None else None
        if observables is not None:
            return EstimatorPub(circuit, observables, bindings, precision, validate=False)
    return EstimatorPub.coerce(pub, precision)


def coerce_sampler_pub(pub, shots: int | None) -> SamplerPub:
    """``SamplerPub.coerce(pub, shots)``, fast for ``(circuit, array)``."""
    if (type(pub) is tuple and len(pub) == 2 and isinstance(pub[0], QuantumCircuit)
            and (shots is None or (isinstance(shots, Integral) and not isinstance(shots, bool)
                                   and shots > 0))):
        bindings = _bindings(pub[0], pub[1])
        if bindings is not None:
            return SamplerPub(pub[0], bindings, shots, validate=False)
    return SamplerPub.coerce(pub, shots)
