"""Exact noisy outcome probabilities of circuits that already ran: ISA circuits on physical
qubits, with their recorded bindings, under any noise model. What ``qmoe compare`` sets beside
a backend's counts: the same circuits, qubits and parameter values, evaluated exactly (Aer's
density-matrix method, readout from the model's assignment matrices)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit_aer.noise import NoiseModel

from ..transpile import measured_qubits
from .factories import readout_matrices
from .primitives import aer_simulator, probe_circuit, probe_probabilities

__all__ = ["IsaEvaluator", "gate_names"]


class IsaEvaluator:
    """Each ISA circuit's outcome probabilities ``(rows, 2**clbits)`` at its ``values`` rows
    (columns in the order of ``isa.parameters``), clbit 0 least significant, under a noise
    model; the probe circuits are built once."""

    def __init__(self, circuits: Sequence[tuple[QuantumCircuit, np.ndarray]]):
        self._items = []
        for isa, values in circuits:
            measured = measured_qubits(isa)
            if -1 in measured:
                raise ValueError(f"circuit {isa.name!r} leaves a classical bit unmeasured")
            self._items.append((probe_circuit(isa, measured), np.asarray(values, dtype=float),
                                list(isa.parameters), measured))

    @property
    def measured(self) -> list[list[int]]:
        """The physical qubit of each clbit, per circuit."""
        return [item[3] for item in self._items]

    def __call__(self, noise_model: NoiseModel | None) -> list[np.ndarray]:
        model = noise_model if noise_model is not None else NoiseModel()
        simulator = aer_simulator(model)
        return [probe_probabilities(simulator, probe, values, parameters,
                                    readout_matrices(model, measured))
                for probe, values, parameters, measured in self._items]


def gate_names(circuits: Sequence[QuantumCircuit]) -> list[str]:
    """The gate names the circuits use (no measurements, barriers or delays)."""
    skip = {"measure", "barrier", "delay", "reset"}
    return sorted({inst.operation.name for c in circuits for inst in c.data} - skip)
