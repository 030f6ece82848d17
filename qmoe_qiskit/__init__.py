"""qmoe-qiskit."""
