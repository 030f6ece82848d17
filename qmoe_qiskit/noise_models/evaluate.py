"""Exact noisy outcome probabilities of circuits that already ran: ISA circuits on physical
qubits, with their recorded bindings, under any noise model. What ``qmoe compare`` sets beside
a backend's counts: the same circuits, qubits and parameter values, evaluated exactly (Aer's
density-matrix method, readout from the model's assignment matrices), optionally with
idle-time relaxation on the circuits as the device schedules them (:mod:`.relaxation`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.providers import BackendV2
from qiskit_aer.noise import NoiseModel

from ..transpile import measured_qubits
from .factories import readout_matrices
from .primitives import aer_simulator, probe_circuit, probe_probabilities
from .relaxation import idle_relaxed, scheduled

__all__ = ["IsaEvaluator", "gate_names"]


class IsaEvaluator:
    """Each ISA circuit's outcome probabilities ``(rows, 2**clbits)`` at its ``values`` rows
    (columns in the order of ``isa.parameters``), clbit 0 least significant, under a noise
    model; the probe circuits are built once. With ``backend``, the circuits are also
    scheduled on it once, for evaluations with idle-time relaxation."""

    def __init__(self, circuits: Sequence[tuple[QuantumCircuit, np.ndarray]], *,
                 backend: BackendV2 | None = None):
        self._items = []
        self.backend = backend
        for isa, values in circuits:
            measured = measured_qubits(isa)
            if -1 in measured:
                raise ValueError(f"circuit {isa.name!r} leaves a classical bit unmeasured")
            timed = scheduled(isa, backend.target) if backend is not None else None
            if timed is not None and not any(i.operation.name == "delay" for i in timed.data):
                timed = None  # no qubit it uses ever waits: nothing to relax
            self._items.append((probe_circuit(isa, measured), timed,
                                np.asarray(values, dtype=float), list(isa.parameters),
                                measured))

    @property
    def measured(self) -> list[list[int]]:
        """The physical qubit of each clbit, per circuit."""
        return [item[4] for item in self._items]

    def __call__(self, noise_model: NoiseModel | None, *,
                 idle_scale: float | None = None) -> list[np.ndarray]:
        """The probabilities under ``noise_model``; with ``idle_scale``, each qubit also
        relaxes while it waits, its T1 and T2 divided by ``idle_scale`` (needs ``backend``)."""
        if idle_scale is not None and self.backend is None:
            raise ValueError("idle-time relaxation needs the evaluator's backend")
        model = noise_model if noise_model is not None else NoiseModel()
        simulator = aer_simulator(model)
        out = []
        for probe, timed, values, parameters, measured in self._items:
            if idle_scale is not None and timed is not None:
                probe = probe_circuit(idle_relaxed(timed, self.backend, scale=idle_scale),
                                      measured)
            out.append(probe_probabilities(simulator, probe, values, parameters,
                                           readout_matrices(model, measured)))
        return out


def gate_names(circuits: Sequence[QuantumCircuit]) -> list[str]:
    """The gate names the circuits use (no measurements, barriers or delays)."""
    skip = {"measure", "barrier", "delay", "reset"}
    return sorted({inst.operation.name for c in circuits for inst in c.data} - skip)
