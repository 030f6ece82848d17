"""Ansatz builders: pure functions returning a circuit and its named parameter vectors."""

from .ansatze import ANSATZE, AnsatzCircuit, build_ansatz, paper_ansatz, sel_ansatz

__all__ = ["ANSATZE", "AnsatzCircuit", "build_ansatz", "paper_ansatz", "sel_ansatz"]
