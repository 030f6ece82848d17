"""Ansatz builders: pure functions returning a circuit and its named parameter vectors; and
probe circuits that expose one kind of noise."""

from .ansatze import (
    ANSATZE,
    AnsatzCircuit,
    build_ansatz,
    coherent_ansatz,
    multiplexed_ry,
    paper_ansatz,
    reuploading_ansatz,
    sel_ansatz,
)
from .probes import waiting_circuit

__all__ = ["ANSATZE", "AnsatzCircuit", "build_ansatz", "paper_ansatz", "sel_ansatz",
           "reuploading_ansatz", "coherent_ansatz", "multiplexed_ry", "waiting_circuit"]
