"""``RuntimeEstimator``: expectation values of I/Z observables from one sampler measurement.

``EstimatorQNN`` sends one PUB per observable (⟨Z_0⟩, ⟨Z_1⟩, ...), all on the same circuit and
bindings. Here those PUBs become one measurement of the qubits the observables touch, run by a
:class:`~qmoe_qiskit.jobs.RuntimeSampler` (so it is cached, recorded in the ledger and planned
like any other PUB), and every observable is computed from the same counts, with standard errors.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, PrimitiveResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub

from ..errors import UnsupportedCircuitError
from ..counts import (
    diagonal_eigenvalues,
    estimator_pub_result,
    expectations_from_counts,
    outcome_counts,
)
from ..simulation.primitives import _DoneJob
from .sampler import RuntimeSampler

__all__ = ["RuntimeEstimator"]


class RuntimeEstimator(BaseEstimatorV2):
    """A V2 estimator for I/Z observables on top of ``sampler`` (its shots, cache, ledger)."""

    def __init__(self, sampler: RuntimeSampler):
        self.sampler = sampler
        self._measured: dict[tuple, tuple[QuantumCircuit, QuantumCircuit]] = {}

    def run(self, pubs: Iterable, *, precision: float | None = None) -> _DoneJob:
        # precision is set by shots (JobOptions.shots); EstimatorQNN passes 0.0 here.
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        groups: dict[tuple, list[int]] = {}
        for i, pub in enumerate(coerced):  # same circuit and bindings: one measurement
            values = pub.parameter_values.as_array(pub.circuit.parameters)
            groups.setdefault((id(pub.circuit), values.shape, values.tobytes()), []).append(i)
        results = [None] * len(coerced)
        for members in groups.values():
            observables = [obs for i in members for obs in coerced[i].observables.ravel().tolist()]
            support, eig = diagonal_eigenvalues(observables)
            if not support:  # identity terms only: measure one qubit so the PUB is valid
                support, eig = [0], np.repeat(eig, 2, axis=1)
            first = coerced[members[0]]
            measured = self._measure(first.circuit, support)
            sampled = self.sampler.run([(measured, first.parameter_values)]).result()[0]
            counts = outcome_counts(sampled.data.meas)
            table, stds = expectations_from_counts(counts, eig)
            start = 0
            for i in members:
                n = coerced[i].observables.size
                results[i] = estimator_pub_result(coerced[i], table[:, start:start + n],
                                                  stds[:, start:start + n],
                                                  shots=self.sampler.options.shots)
                start += n
        return _DoneJob(PrimitiveResult(results))

    def _measure(self, circuit: QuantumCircuit, support: list[int]) -> QuantumCircuit:
        """``circuit`` with the qubits in ``support`` measured into a register ``meas``."""
        key = (id(circuit), tuple(support))
        hit = self._measured.get(key)
        if hit is not None and hit[0] is circuit:
            return hit[1]
        if circuit.num_clbits:
            raise UnsupportedCircuitError(
                f"estimator circuits must not measure; {circuit.name!r} has "
                f"{circuit.num_clbits} classical bits")
        measured = circuit.copy(name=circuit.name)
        measured.add_register(ClassicalRegister(len(support), "meas"))
        measured.measure(support, measured.cregs[-1])
        self._measured[key] = (circuit, measured)
        return measured

