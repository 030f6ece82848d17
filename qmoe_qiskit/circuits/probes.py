"""Probe circuits: small circuits built to expose one kind of noise, not to learn."""

from __future__ import annotations

from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector

__all__ = ["waiting_circuit"]


def waiting_circuit(cnots: int = 6) -> QuantumCircuit:
    """Three qubits: qubit 0 is rotated and entangled with qubit 1, then waits while qubits 1
    and 2 run ``cnots`` CNOTs, and all three are measured. Scheduling as late as possible
    cannot move the wait before the entangling gate, so qubit 0 relaxes while idle: the
    circuit tells a device model with idle-time relaxation from one without. Two parameters
    (``t[0]``, ``t[1]``): the rotations of qubits 0 and 1."""
    theta = ParameterVector("t", 2)
    circuit = QuantumCircuit(3, 3, name=f"waiting_{cnots}cx")
    circuit.rx(theta[0], 0)
    circuit.ry(theta[1], 1)
    circuit.cx(0, 1)
    for _ in range(cnots):
        circuit.cx(1, 2)
    circuit.barrier()
    circuit.measure(range(3), range(3))
    return circuit
