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
           "reuploading_ansatz", "coherent_ansatz", "multiplexed_ry"]


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


def _paper_layers(circuit: QuantumCircuit, x, theta, num_qubits: int, num_layers: int,
                  num_features: int) -> None:
    """The paper ansatz's gates on qubits 0..num_qubits-1 of ``circuit``: RY(x_i) on qubit i,
    then ``num_layers`` × (RY(θ) on every qubit, CZ chain)."""
    for i in range(num_features):
        circuit.ry(x[i], i)
    for layer in range(num_layers):
        for q in range(num_qubits):
            circuit.ry(theta[layer * num_qubits + q], q)
        for q in range(num_qubits - 1):
            circuit.cz(q, q + 1)


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
    _paper_layers(circuit, x, theta, num_qubits, num_layers, num_features)
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


def multiplexed_ry(circuit: QuantumCircuit, angles: list, controls: list[int],
                   target: int) -> None:
    """Append RY(``angles[s]``) on ``target`` conditioned on the ``controls`` being in basis state
    ``s`` (bit ``j`` of ``s`` on ``controls[j]``), as ``2**k`` RY and ``2**k`` CX gates (a
    uniformly controlled rotation, Möttönen et al. 2004): the ``i``-th RY turns by
    ``φ_i = 2**-k Σ_s (-1)^{s·gray(i)} angles[s]`` and is followed by a CX from the control
    where ``gray(i)`` and ``gray(i + 1)`` differ. Affine angles stay affine."""
    k = len(controls)
    if len(angles) != 1 << k:
        raise ConfigError(f"{k} controls take {1 << k} angles, got {len(angles)}")
    if k == 0:
        circuit.ry(angles[0], target)
        return
    size = 1 << k
    gray = [i ^ (i >> 1) for i in range(size)]
    for i in range(size):
        phi = sum((-1) ** bin(s & gray[i]).count("1") * angles[s] for s in range(size)) / size
        circuit.ry(phi, target)
        flipped = gray[i] ^ gray[(i + 1) % size]
        circuit.cx(controls[flipped.bit_length() - 1], target)


def coherent_ansatz(num_features: int, num_experts: int, num_classes: int, *,
                    router_qubits: int | None = None, router_layers: int = 3,
                    expert_layers: int = 2, reupload: bool = False) -> AnsatzCircuit:
    """A mixture of experts in one circuit: the router's amplitudes and the experts' combine
    coherently over a routing register and a data register, and are read out together.

    Qubits ``0 .. R-1`` hold the router (the ``paper`` ansatz on ``R = router_qubits``
    qubits, default one per feature); its first ``m = log2(num_experts)`` qubits are the
    routing register, whose basis state ``e`` is the expert the router's routing rule names.
    Qubits ``R .. R+d-1`` hold the data register, on which expert ``e``'s circuit (the
    ``paper`` ansatz, or the re-uploading one with ``reupload``) acts conditioned on the
    routing register being in ``|e⟩``: each of its RY layers is a :func:`multiplexed_ry` over
    the routing register, its CZ chains are shared. Then RY(ω_j) turns routing qubit ``j``
    (the aggregation), and the routing register and the data register's class qubits are
    measured. Outcome ``k`` is read as ``k mod (E·C)`` = ``r + E·c``: routing outcome ``r``,
    class ``c`` by the routing rule; postselected on ``r = 0`` the data register holds
    ``Σ_e a_e(ω) ψ_e`` with ``a_e = ⟨0|RY(ω)|e⟩``, the experts' states superposed with the
    router's amplitudes. Marginalised over ``r`` instead, it is the classical mixture
    ``Σ_e P(e|x) P_e(c|x)``.

    ``inputs``: the ``d`` features, then the router's ``R·router_layers`` angles (fed from the
    router's own weights), then, with ``reupload``, the ``E·expert_layers·d`` scaled features
    (expert-major, then layer, then feature). ``weights``: the experts' ``E·expert_layers·d``
    angles in that order, then the ``m`` aggregation angles ω.
    """
    d, n_e, c = num_features, num_experts, num_classes
    router_qubits = d if router_qubits is None else router_qubits
    _validate(router_qubits, router_layers, d)
    _validate(d, expert_layers, d)
    m = n_e.bit_length() - 1
    if not isinstance(n_e, int) or n_e < 2 or n_e != 1 << m:
        raise ConfigError(f"coherent aggregation addresses experts by the basis states of a "
                          f"routing register of m qubits, so it needs 2, 4, 8, ... experts; "
                          f"got {n_e!r}")
    if m > router_qubits:
        raise ConfigError(f"{n_e} experts need a routing register of {m} qubits but the router "
                          f"has {router_qubits}; give the router more --qubits")
    if not isinstance(c, int) or not 2 <= c <= 2**d:
        raise ConfigError(f"a {d}-qubit data register has {2**d} basis states; the number of "
                          f"classes must be between 2 and {2**d}, got {c!r}")
    per_expert = expert_layers * d
    x = ParameterVector("x", d + router_qubits * router_layers + reupload * n_e * per_expert)
    theta = ParameterVector("θ", n_e * per_expert + m)
    phi = x[d:d + router_qubits * router_layers]
    scaled = x[d + router_qubits * router_layers:]
    data = list(range(router_qubits, router_qubits + d))
    routing = list(range(m))
    name = f"coherent_r{router_qubits}_d{d}_e{n_e}_l{expert_layers}" + "_reupload" * reupload
    circuit = QuantumCircuit(router_qubits + d, name=name)
    _paper_layers(circuit, x, phi, router_qubits, router_layers, d)  # the router, as it runs alone
    if not reupload:
        for i in range(d):
            circuit.ry(x[i], data[i])
    for layer in range(expert_layers):
        for i in range(d):
            index = [e * per_expert + layer * d + i for e in range(n_e)]
            angles = [theta[j] + scaled[j] if reupload else theta[j] for j in index]
            multiplexed_ry(circuit, angles, routing, data[i])
        for i in range(d - 1):
            circuit.cz(data[i], data[i + 1])
    for j in routing:
        circuit.ry(theta[n_e * per_expert + j], j)
    classes = [data[q] for q in _measured_qubits(d, c)]
    circuit.add_register(ClassicalRegister(m + len(classes), "meas"))
    circuit.measure(routing + classes, list(range(m + len(classes))))
    return AnsatzCircuit("coherent", circuit, x, theta, "probabilities", n_e * c)


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
