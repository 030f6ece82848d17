"""Router and expert circuits: pure builders returning a circuit and its parameter vectors.

Two ansätze:

``paper``
    Angle embedding RY(x_i) on qubit i, then ``L`` layers of RY(θ) on every qubit followed by CZ
    between adjacent qubits; read out from computational-basis probabilities.
``sel``
    RX angle embedding, then ``L`` strongly-entangling layers (RZ·RY·RZ on every qubit, then a
    CNOT ring whose range is ``(l mod (n - 1)) + 1`` in layer ``l``); read out as ⟨Z_i⟩ per qubit.

Routing rule for probability read-out (``paper``): basis state ``k`` (qubit 0 is the least
significant bit, as in Qiskit) goes to output ``k mod N``. When ``N = 2**m`` this is the value of
qubits ``0..m-1``, so only those qubits are measured (the same distribution, fewer outcomes);
otherwise every qubit is measured and outcomes are folded with ``k mod N``.
"""

from __future__ import annotations

from dataclasses import dataclass

from qiskit.circuit import ClassicalRegister, ParameterVector, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from ..errors import ConfigError, choices
from ..names import ANSATZE

__all__ = ["ANSATZE", "AnsatzCircuit", "build_ansatz", "paper_ansatz", "sel_ansatz",
           "reuploading_ansatz"]


@dataclass(frozen=True)
class AnsatzCircuit:
    """A built ansatz.

    ``readout`` is ``"probabilities"`` (measured circuit; ``num_outputs`` outputs by the routing
    rule) or ``"expectations"`` (unmeasured circuit; one output per entry of ``observables``).
    """

    name: str
    circuit: QuantumCircuit
    inputs: ParameterVector
    weights: ParameterVector
    readout: str
    num_outputs: int
    observables: tuple[SparsePauliOp, ...] = ()

    @property
    def num_qubits(self) -> int:
        return self.circuit.num_qubits

    def interpret(self, outcome: int) -> int:
        """The output an outcome of the measured register counts towards (``k mod N``)."""
        return outcome % self.num_outputs


def _validate(num_qubits: int, num_layers: int, num_features: int) -> None:
    for label, value in (("qubits", num_qubits), ("layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"number of {label} must be an integer >= 1, got {value!r}")
    if not isinstance(num_features, int) or num_features < 1:
        raise ConfigError(f"number of input features must be an integer >= 1, got {num_features!r}")
    if num_features > num_qubits:
        raise ConfigError(
            f"input has {num_features} features but the circuit has {num_qubits} qubits; "
            "angle embedding needs one qubit per feature (reduce the features with PCA, "
            "or use more qubits)"
        )


def paper_ansatz(
    num_qubits: int, num_layers: int, *, num_outputs: int | None = None, num_features: int | None = None
) -> AnsatzCircuit:
    """RY embedding + ``num_layers`` × (RY on every qubit, CZ chain), measured per the routing rule.

    ``num_outputs`` defaults to ``2**num_qubits``; ``num_features`` to ``num_qubits``.
    """
    num_features = num_qubits if num_features is None else num_features
    _validate(num_qubits, num_layers, num_features)
    num_outputs = 2**num_qubits if num_outputs is None else num_outputs
    if not isinstance(num_outputs, int) or not 2 <= num_outputs <= 2**num_qubits:
        raise ConfigError(
            f"a {num_qubits}-qubit circuit has {2**num_qubits} basis states; the number of "
            f"outputs must be between 2 and {2**num_qubits}, got {num_outputs!r}"
        )
    x = ParameterVector("x", num_features)
    theta = ParameterVector("θ", num_qubits * num_layers)
    measured = _measured_qubits(num_qubits, num_outputs)
    circuit = QuantumCircuit(num_qubits, name=f"paper_q{num_qubits}_l{num_layers}")
    for i in range(num_features):
        circuit.ry(x[i], i)
    for layer in range(num_layers):
        for q in range(num_qubits):
            circuit.ry(theta[layer * num_qubits + q], q)
        for q in range(num_qubits - 1):
            circuit.cz(q, q + 1)
    creg = ClassicalRegister(len(measured), "meas")
    circuit.add_register(creg)
    circuit.measure(measured, list(range(len(measured))))
    return AnsatzCircuit("paper", circuit, x, theta, "probabilities", num_outputs)


def reuploading_ansatz(num_qubits: int, num_layers: int, *, num_outputs: int,
                       num_features: int | None = None) -> AnsatzCircuit:
    """Data re-uploading: ``num_layers`` × (RY(x_{l,i}) on qubit i, RY(θ) on every qubit, CZ
    chain), measured per the routing rule. Each layer embeds the input again through inputs of
    its own (``x`` has ``num_layers · num_features`` entries), so a model can scale each
    layer's copy of the features by weights of its own before the circuit
    (:class:`~qmoe_qiskit.models.quantum.ReuploadingExpert`); the angles stay affine."""
    num_features = num_qubits if num_features is None else num_features
    _validate(num_qubits, num_layers, num_features)
    if not isinstance(num_outputs, int) or not 2 <= num_outputs <= 2**num_qubits:
        raise ConfigError(
            f"a {num_qubits}-qubit circuit has {2**num_qubits} basis states; the number of "
            f"outputs must be between 2 and {2**num_qubits}, got {num_outputs!r}")
    x = ParameterVector("x", num_layers * num_features)
    theta = ParameterVector("θ", num_qubits * num_layers)
    measured = _measured_qubits(num_qubits, num_outputs)
    circuit = QuantumCircuit(num_qubits, name=f"reupload_q{num_qubits}_l{num_layers}")
    for layer in range(num_layers):
        for i in range(num_features):
            circuit.ry(x[layer * num_features + i], i)
        for q in range(num_qubits):
            circuit.ry(theta[layer * num_qubits + q], q)
        for q in range(num_qubits - 1):
            circuit.cz(q, q + 1)
    circuit.add_register(ClassicalRegister(len(measured), "meas"))
    circuit.measure(measured, list(range(len(measured))))
    return AnsatzCircuit("reupload", circuit, x, theta, "probabilities", num_outputs)


def sel_ansatz(num_qubits: int, num_layers: int, *, num_features: int | None = None) -> AnsatzCircuit:
    """RX embedding + ``num_layers`` strongly-entangling layers, read out as ⟨Z_i⟩ per qubit."""
    num_features = num_qubits if num_features is None else num_features
    _validate(num_qubits, num_layers, num_features)
    x = ParameterVector("x", num_features)
    theta = ParameterVector("θ", 3 * num_qubits * num_layers)
    circuit = QuantumCircuit(num_qubits, name=f"sel_q{num_qubits}_l{num_layers}")
    for i in range(num_features):
        circuit.rx(x[i], i)
    for layer in range(num_layers):
        for q in range(num_qubits):
            base = 3 * (layer * num_qubits + q)
            circuit.rz(theta[base], q)
            circuit.ry(theta[base + 1], q)
            circuit.rz(theta[base + 2], q)
        if num_qubits > 1:
            reach = layer % (num_qubits - 1) + 1
            for q in range(num_qubits):
                circuit.cx(q, (q + reach) % num_qubits)
    observables = tuple(
        SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], num_qubits=num_qubits)
        for q in range(num_qubits)
    )
    return AnsatzCircuit("sel", circuit, x, theta, "expectations", num_qubits, observables)


def build_ansatz(
    name: str,
    num_qubits: int,
    num_layers: int,
    *,
    num_outputs: int | None = None,
    num_features: int | None = None,
) -> AnsatzCircuit:
    """Build the ansatz ``name`` (one of :data:`ANSATZE`)."""
    if name == "paper":
        return paper_ansatz(num_qubits, num_layers, num_outputs=num_outputs, num_features=num_features)
    if name == "sel":
        return sel_ansatz(num_qubits, num_layers, num_features=num_features)
    raise ConfigError(f"unknown ansatz {name!r}; valid ansätze: {choices(ANSATZE)}")


def _measured_qubits(num_qubits: int, num_outputs: int) -> list[int]:
    power = num_outputs.bit_length() - 1
    if num_outputs == 1 << power:
        return list(range(power))
    return list(range(num_qubits))
