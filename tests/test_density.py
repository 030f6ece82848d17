"""The fast noisy engine: a batched density matrix with reverse-mode gradients. Probabilities
against Aer's density-matrix method (1e-10), gradients against parameter shift on Aer (1e-8),
for depolarizing, thermal relaxation and a fake device's calibrated model; the bad input it
refuses; and training under noise with it."""

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit_aer.noise import NoiseModel, depolarizing_error

from qmoe_qiskit.backends import get_backend
from qmoe_qiskit.circuits import paper_ansatz, sel_ansatz
from qmoe_qiskit.errors import ConfigError, UnsupportedCircuitError
from qmoe_qiskit.noise_models import (
    AdjointNoisyEstimatorGradient,
    AdjointNoisySamplerGradient,
    BatchedShiftEstimatorGradient,
    BatchedShiftSamplerGradient,
    NoisyEstimator,
    NoisySampler,
    NoisySimulation,
    depolarizing,
    device,
    thermal_relaxation,
)
from qmoe_qiskit.noise_models.density import compile_density

RNG = np.random.default_rng(21)


def _noise(kind):
    if kind == "depolarizing":
        return depolarizing(0.02), None
    if kind == "thermal":
        return thermal_relaxation(40e-6, 30e-6, readout=0.03), None
    backend = get_backend("fake_manila")
    return device(backend, scale=2.0), backend


def _pair(kind):
    model, backend = _noise(kind)
    return (NoisySimulation(model, backend=backend, engine="fast"),
            NoisySimulation(model, backend=backend, engine="aer"))


def _measured(circuit):
    circuit = circuit.copy()
    circuit.measure_all()
    return circuit


@pytest.mark.parametrize("kind", ["depolarizing", "thermal", "device"])
@pytest.mark.parametrize("ansatz", ["sel", "paper"])
def test_probabilities_match_aers_density_matrix(kind, ansatz):
    fast, aer = _pair(kind)
    circuit = (_measured(sel_ansatz(3, 2).circuit) if ansatz == "sel"
               else paper_ansatz(3, 2, num_outputs=4).circuit)
    compiled = fast.compile(circuit)
    values = RNG.uniform(-3, 3, (6, circuit.num_parameters))
    for physical in (compiled.measured, compiled.used_qubits[::-1]):
        got = fast.probabilities(circuit, values, physical)
        np.testing.assert_allclose(got, aer.probabilities(circuit, values, physical),
                                   atol=1e-10)
    assert not np.allclose(got, NoisySimulation(None).probabilities(
        circuit, values, list(range(len(physical)))), atol=1e-3)  # the noise matters


def test_only_the_light_cone_of_the_read_qubits_is_simulated():
    """Reading qubit 0 of a 6-qubit router after one layer: the fast engine holds only the
    qubits that reach it, with the probabilities of Aer and of the whole program, and the
    gradients of the whole program; the engine is chosen by the cone's width."""
    circuit = paper_ansatz(6, 1, num_outputs=2).circuit  # measures qubit 0
    fast, aer = _pair("depolarizing")
    full = fast.program(circuit)
    cone = fast.cone(circuit)
    assert tuple(cone) == fast.program(circuit, [0]).physical and 1 < len(cone) < 6
    assert full.num_qubits == 6 and fast.program(circuit, [0]).num_qubits == len(cone)
    assert fast.program(circuit, list(range(6))).num_qubits == 6  # every qubit read
    values = RNG.uniform(-3, 3, (4, circuit.num_parameters))
    probs, grads = fast.probabilities_and_gradients(circuit, values, [0])
    whole = full.probabilities_and_gradients(values, [0])
    np.testing.assert_allclose(probs, whole[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads, whole[1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(probs, aer.probabilities(circuit, values, [0]), atol=1e-10)
    assert np.abs(grads).max() > 1e-2 and (np.abs(grads).max(axis=(0, 2)) == 0).any()
    auto = NoisySimulation(depolarizing(0.02))
    assert auto.engine_for(circuit) == "fast"  # 6 used qubits, a narrower cone


def test_a_specific_error_overrides_the_all_qubit_one_as_in_aer():
    model = NoiseModel(basis_gates=["rz", "sx", "x", "cx"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.05, 1), ["sx", "x"])
    model.add_quantum_error(depolarizing_error(0.3, 1), "sx", [1], warnings=False)
    model.add_quantum_error(depolarizing_error(0.1, 2), "cx", [0, 1])
    circuit = _measured(sel_ansatz(2, 2).circuit)
    values = RNG.uniform(-3, 3, (4, circuit.num_parameters))
    fast, aer = (NoisySimulation(model, engine=e) for e in ("fast", "aer"))
    np.testing.assert_allclose(fast.probabilities(circuit, values, [0, 1]),
                               aer.probabilities(circuit, values, [0, 1]), atol=1e-10)


@pytest.mark.parametrize("kind", ["depolarizing", "thermal", "device"])
def test_sampler_gradients_match_parameter_shift_on_aer(kind):
    fast, aer = _pair(kind)
    circuit = paper_ansatz(2, 3, num_outputs=4).circuit
    values = RNG.uniform(-3, 3, (5, circuit.num_parameters))
    ours = AdjointNoisySamplerGradient(NoisySampler(fast)).run([circuit] * 5, values)
    shift = BatchedShiftSamplerGradient(NoisySampler(aer)).run([circuit] * 5, values)
    mine = np.array([[[d[k] for k in range(4)] for d in row] for row in ours.result().gradients])
    ref = np.array([[[d[k] for k in range(4)] for d in row] for row in shift.result().gradients])
    np.testing.assert_allclose(mine, ref, atol=1e-8)
    assert np.abs(mine).max() > 1e-2


@pytest.mark.parametrize("kind", ["depolarizing", "thermal", "device"])
def test_estimator_gradients_match_parameter_shift_on_aer(kind):
    fast, aer = _pair(kind)
    built = sel_ansatz(2, 3)
    values = RNG.uniform(-3, 3, (5, built.circuit.num_parameters))
    for observable in built.observables:
        ours = AdjointNoisyEstimatorGradient(NoisyEstimator(fast)).run(
            [built.circuit] * 5, [observable] * 5, values).result().gradients
        ref = BatchedShiftEstimatorGradient(NoisyEstimator(aer)).run(
            [built.circuit] * 5, [observable] * 5, values).result().gradients
        np.testing.assert_allclose(np.array(ours), np.array(ref), atol=1e-8)
        assert np.abs(np.array(ours)).max() > 1e-2


def test_non_affine_angles_get_chain_rule_gradients_under_noise():
    x, w = Parameter("x"), Parameter("w")
    circuit = QuantumCircuit(1)
    circuit.ry(x * w + w * w, 0)
    circuit.rz(x * x, 0)
    circuit.ry(w, 0)
    circuit.measure_all()
    simulation = NoisySimulation(depolarizing(0.03))
    values = RNG.uniform(-1, 1, (3, 2))
    _, grads = simulation.probabilities_and_gradients(circuit, values, [0])
    step = 1e-6
    for j in range(2):
        up, down = values.copy(), values.copy()
        up[:, j] += step
        down[:, j] -= step
        numeric = (simulation.probabilities(circuit, up, [0])
                   - simulation.probabilities(circuit, down, [0])) / (2 * step)
        np.testing.assert_allclose(grads[:, j], numeric, atol=1e-8)


@pytest.mark.parametrize("fold", [True, False])
def test_fused_blocks_of_every_rotation_kind_match_aer_and_finite_differences(fold, monkeypatch):
    """Fusion's edge cases: every rotation kind, a qubit with one-qubit gates only, a
    three-qubit gate (not fused), a reversed pair, and rotations after a qubit's last
    two-qubit gate, with one-qubit operations folded into two-qubit ones and without;
    probabilities against Aer, gradients against finite differences."""
    import qmoe_qiskit.noise_models.density as density

    monkeypatch.setattr(density, "FOLD_MIN_QUBITS", 0 if fold else 99)
    model = NoiseModel(basis_gates=["rx", "ry", "rz", "p", "sx", "cx", "ccx"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.04, 1), ["rx", "ry", "rz", "p", "sx"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.06, 2), ["cx"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.08, 3), ["ccx"])
    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    circuit = QuantumCircuit(4)
    circuit.rx(a, 0)
    circuit.ry(b, 1)
    circuit.sx(2)
    circuit.p(c, 3)
    circuit.rz(a * b, 3)
    circuit.cx(1, 0)
    circuit.ry(c, 2)
    circuit.ccx(0, 1, 2)
    circuit.rz(b, 1)
    circuit.cx(2, 1)
    circuit.rx(a + c, 0)
    circuit.ry(a, 1)
    circuit.rx(b, 3)
    circuit.measure_all()
    fast, aer = (NoisySimulation(model, engine=e) for e in ("fast", "aer"))
    program = fast.program(circuit)
    if fold:
        assert len(program.fused) < len(circuit.data) // 2
        # not fused: the ccx; alone: qubit 2's gates before it, qubit 0's after it (they may
        # not join the cx before it) and qubit 3's
        assert sorted(len(op.qargs) for op in program.fused) == [1, 1, 1, 2, 2, 3]
    else:  # every multi-qubit operation alone, each qubit's gates between them as one
        assert all(isinstance(op, density._Fixed) for op in program.fused if len(op.qargs) > 1)
        assert len(program.fused) < len(circuit.data) - 4
    values = RNG.uniform(-3, 3, (5, 3))
    physical = fast.used_qubits(circuit)
    probs, grads = fast.probabilities_and_gradients(circuit, values, physical)
    np.testing.assert_allclose(probs, aer.probabilities(circuit, values, physical), atol=1e-10)
    step = 1e-6
    for j in range(3):
        up, down = values.copy(), values.copy()
        up[:, j] += step
        down[:, j] -= step
        numeric = (fast.probabilities(circuit, up, physical)
                   - fast.probabilities(circuit, down, physical)) / (2 * step)
        np.testing.assert_allclose(grads[:, j], numeric, atol=1e-8)
    assert np.abs(grads).max() > 1e-2


def test_wide_circuits_reorder_by_strided_copy_with_the_same_results(monkeypatch):
    """Above GATHER_MAX_QUBITS the density matrices are reordered by a strided copy instead
    of a kept gather index: the same probabilities and gradients."""
    import qmoe_qiskit.noise_models.density as density

    circuit = paper_ansatz(3, 2, num_outputs=4).circuit
    values = RNG.uniform(-3, 3, (4, circuit.num_parameters))
    results = []
    for limit in (density.GATHER_MAX_QUBITS, 0):
        monkeypatch.setattr(density, "GATHER_MAX_QUBITS", limit)
        simulation = NoisySimulation(depolarizing(0.02), engine="fast")
        results.append(simulation.probabilities_and_gradients(
            circuit, values, simulation.used_qubits(circuit)))
    for gathered, copied in zip(*results):
        np.testing.assert_allclose(gathered, copied, rtol=0, atol=1e-14)


# ------------------------------------------------------------------ refused, in one line
def test_a_non_cptp_error_is_refused_naming_the_aer_engine(monkeypatch):
    """Aer refuses to build a non-CPTP QuantumError, but a model read from an edited
    dictionary can hold one: injected here by making the channel check fail."""
    from qiskit.quantum_info import Kraus

    from qmoe_qiskit.noise_models import density

    class NotCPTP(Kraus):
        def is_cptp(self, *args, **kwargs):
            return False

    monkeypatch.setattr(density, "Kraus", NotCPTP)
    circuit = _measured(sel_ansatz(1, 1).circuit)
    with pytest.raises(UnsupportedCircuitError, match=r"not CPTP.*--engine aer"):
        NoisySimulation(depolarizing(0.01)).probabilities(
            circuit, np.zeros((1, circuit.num_parameters)), [0])


@pytest.mark.parametrize("what", ["reset", "mid-circuit"])
def test_reset_and_mid_circuit_measurement_are_refused(what):
    circuit = QuantumCircuit(2, 2)
    circuit.ry(Parameter("a"), 0)
    if what == "reset":
        circuit.reset(0)
    else:
        circuit.measure(0, 0)
        circuit.x(0)
    circuit.measure([0, 1], [0, 1])
    with pytest.raises(UnsupportedCircuitError, match="--engine aer"):
        NoisySimulation(depolarizing(0.01)).probabilities(circuit, [[0.3]], [0, 1])


def test_a_model_too_wide_for_memory_is_refused_before_allocating(monkeypatch):
    from qmoe_qiskit import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 1 << 20)  # 1 MiB
    circuit = paper_ansatz(8, 1).circuit  # every qubit read: the light cone is all 8
    with pytest.raises(ConfigError, match=r"density matrices.*--engine aer"):
        NoisySimulation(depolarizing(0.01), engine="fast").probabilities(
            circuit, np.zeros((2, circuit.num_parameters)), list(range(8)))


def test_unknown_engine_is_one_line():
    with pytest.raises(ConfigError, match="valid engines: auto, fast, aer"):
        NoisySimulation(None, engine="gpu")


def test_only_the_used_qubits_are_simulated_on_a_large_device():
    backend = get_backend("fake_brisbane")
    simulation = NoisySimulation(device(backend, qubits=range(127)), backend=backend)
    circuit = paper_ansatz(2, 2, num_outputs=4).circuit
    program = simulation.program(circuit)
    assert program.num_qubits == 2 and len(program.physical) == 2
    assert compile_density(simulation.compile(circuit).isa, simulation.noise_model,
                           circuit.parameters).dim == 4


def test_errors_on_measure_act_before_it_as_in_aer():
    """Aer applies a QuantumError attached to "measure" just before the measurement; the
    reference here appends that very error as an instruction before Aer saves probabilities."""
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import amplitude_damping_error

    damping = amplitude_damping_error(0.2)
    model = depolarizing(0.01)
    model.add_all_qubit_quantum_error(damping, "measure")
    circuit = _measured(sel_ansatz(2, 2).circuit)
    fast = NoisySimulation(model)
    isa = fast.compile(circuit).isa
    values = RNG.uniform(-3, 3, (3, circuit.num_parameters))
    reference = isa.remove_final_measurements(inplace=False)
    for q in (0, 1):
        reference.append(damping, [q])
    reference.save_probabilities([0, 1])
    simulator = AerSimulator(method="density_matrix", noise_model=model)
    expected = []
    for row in values:
        bound = reference.assign_parameters(dict(zip(circuit.parameters, row)))
        expected.append(simulator.run(bound).result().data(0)["probabilities"])
    got = fast.probabilities(circuit, values, [0, 1])
    np.testing.assert_allclose(got, np.array(expected) @ np.kron(*[np.array(
        [[0.99, 0.01], [0.01, 0.99]])] * 2), atol=1e-10)


def test_auto_chooses_the_engine_by_width_and_records_what_ran(monkeypatch):
    """``engine="auto"`` runs the fast engine up to FAST_MEASURED_QUBITS qubits in the light
    cone of those read (here all of them) and, wider, wherever its memory fits (the forward
    pass needs less than the gradients), Aer otherwise; both engines give the same values,
    and ``ran`` says which ran."""
    from qmoe_qiskit.noise_models import primitives, training_primitives

    monkeypatch.setattr(primitives, "FAST_MEASURED_QUBITS", 3)
    narrow = paper_ansatz(3, 1).circuit
    wide = paper_ansatz(4, 1).circuit
    auto = NoisySimulation(depolarizing(0.02))
    program = auto.program(wide, range(4))
    forward, gradients = program.bytes_per_row(16, False), program.bytes_per_row(16, True)
    monkeypatch.setattr(primitives, "available_memory", lambda: (forward + gradients) // 2)
    assert auto.engine_for(narrow) == "fast" == auto.engine_for(narrow, gradients=True)
    assert auto.engine_for(wide) == "fast" and auto.engine_for(wide, gradients=True) == "aer"
    monkeypatch.setattr(primitives, "available_memory", lambda: forward - 1)  # Aer's fits
    assert auto.engine_for(wide) == "aer"
    values = RNG.uniform(0, np.pi, (3, wide.num_parameters))
    physical = list(range(wide.num_qubits))
    got = auto.probabilities(wide, values, physical)
    assert auto.ran == {"forward": {"aer"}, "gradients": set()}
    fast = NoisySimulation(depolarizing(0.02), engine="fast")
    np.testing.assert_allclose(got, fast.probabilities(wide, values, physical), atol=1e-9)
    assert fast.engine_for(wide) == "fast" and fast.ran["forward"] == {"fast"}

    # gradients: wider than measured and too large to hold, a 2-qubit router's go to
    # parameter shift on Aer (whose one density matrix of 256 bytes fits)
    monkeypatch.setattr(primitives, "FAST_MEASURED_QUBITS", 1)
    monkeypatch.setattr(primitives, "available_memory", lambda: 300)
    circuit = paper_ansatz(2, 2, num_outputs=2).circuit
    rows = RNG.uniform(0, np.pi, (4, circuit.num_parameters))
    shifted = training_primitives(NoisySimulation(depolarizing(0.02)))["sampler_gradient"]
    reverse = training_primitives(fast)["sampler_gradient"]
    a = shifted.run([circuit] * 4, rows).result().gradients
    b = reverse.run([circuit] * 4, rows).result().gradients
    np.testing.assert_allclose([[list(d.values()) for d in row] for row in a],
                               [[list(d.values()) for d in row] for row in b], atol=1e-9)
    assert shifted._sampler.simulation.ran["gradients"] == {"parameter shift (Aer)"}
    assert fast.ran["gradients"] == {"reverse mode (fast engine)"}
