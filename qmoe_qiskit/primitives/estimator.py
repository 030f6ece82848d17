"""``SamplerEstimator``: expectation values of I/Z observables from one measurement by any V2
sampler.

``EstimatorQNN`` sends one PUB per observable (⟨Z_0⟩, ⟨Z_1⟩, ...), all on the same circuit and
bindings. Here those PUBs become one sampler PUB measuring the qubits the observables touch, and
every observable is computed from the same outcomes: exactly from a sampler that returns
:class:`~qmoe_qiskit.primitives.ExactDistributions`, else from counts, with standard errors. On
a Runtime sampler this is how hardware measures ⟨Z⟩, cached and recorded like any sampler PUB;
on a wrapped sampler (readout mitigation, say) the estimator inherits the wrapping.
"""

from __future__ import annotations

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.primitives import BaseSamplerV2, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub

from ..errors import UnsupportedCircuitError
from .base import ExactDistributions, SyncEstimator
from .cache import CircuitCache
from .counts import (
    diagonal_eigenvalues,
    estimator_pub_result,
    expectations_from_counts,
    outcome_counts,
)

__all__ = ["SamplerEstimator", "MEASURED_REGISTER"]

MEASURED_REGISTER = "meas"


class SamplerEstimator(SyncEstimator):
    """A V2 estimator for I/Z observables on top of ``sampler`` (its shots, cache, noise)."""

    def __init__(self, sampler: BaseSamplerV2):
        self.sampler = sampler
        self._measured = CircuitCache(_with_measurement)

    def _run_pubs(self, pubs: list[EstimatorPub]) -> list[PubResult]:
        groups: dict[tuple, list[int]] = {}
        for i, pub in enumerate(pubs):  # same circuit and bindings: one measurement
            values = pub.parameter_values.as_array(pub.circuit.parameters)
            groups.setdefault((id(pub.circuit), values.shape, values.tobytes()), []).append(i)
        results: list = [None] * len(pubs)
        for members in groups.values():
            observables = [obs for i in members for obs in pubs[i].observables.ravel().tolist()]
            support, eig = diagonal_eigenvalues(observables)
            if not support:  # identity terms only: measure one qubit so the PUB is valid
                support, eig = [0], np.repeat(eig, 2, axis=1)
            first = pubs[members[0]]
            measured = self._measured(first.circuit, tuple(support))
            field = self.sampler.run([(measured, first.parameter_values)]).result()[0].data[
                MEASURED_REGISTER]
            if isinstance(field, ExactDistributions):
                table = field.probabilities.reshape(-1, eig.shape[1]) @ eig.T
                stds, shots = np.zeros_like(table), None
            else:
                table, stds = expectations_from_counts(outcome_counts(field), eig)
                shots = field.num_shots
            start = 0
            for i in members:
                n = pubs[i].observables.size
                results[i] = estimator_pub_result(pubs[i], table[:, start:start + n],
                                                  stds[:, start:start + n], shots=shots)
                start += n
        return results


def _with_measurement(circuit: QuantumCircuit, support: tuple[int, ...]) -> QuantumCircuit:
    """``circuit`` with the qubits in ``support`` measured into a register ``meas``."""
    if circuit.num_clbits:
        raise UnsupportedCircuitError(
            f"estimator circuits must not measure; {circuit.name!r} has "
            f"{circuit.num_clbits} classical bits")
    measured = circuit.copy(name=circuit.name)
    measured.add_register(ClassicalRegister(len(support), MEASURED_REGISTER))
    measured.measure(list(support), measured.cregs[-1])
    return measured
