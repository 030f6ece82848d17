"""The exact simulator against Qiskit's reference simulators and gradients."""

import numpy as np
import pytest
from qiskit.circuit import ClassicalRegister, Parameter, ParameterVector, QuantumCircuit
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_machine_learning.gradients import (
    ParamShiftEstimatorGradient,
    ParamShiftSamplerGradient,
)
from qiskit_machine_learning.neural_networks import EstimatorQNN, SamplerQNN
from qiskit_machine_learning.primitives import QMLSampler

from qmoe_qiskit.circuits import paper_ansatz, sel_ansatz
from qmoe_qiskit.errors import UnsupportedCircuitError
from qmoe_qiskit.simulation import (
    ExactEstimator,
    ExactEstimatorGradient,
    ExactSampler,
    ExactSamplerGradient,
    compile_circuit,
)
from qmoe_qiskit.simulation.statevector import DiagonalOrPauli

RNG = np.random.default_rng(1234)


def all_gates_circuit(n: int = 4) -> QuantumCircuit:
    """Every supported gate, with affine parameter expressions."""
    p = ParameterVector("t", 12)
    qc = QuantumCircuit(n)
    k = 0
    for layer in range(3):
        for q in range(n):
            gate = ["rx", "ry", "rz", "p"][(q + layer) % 4]
            angle = 2 * p[k % 12] - 0.3 * p[(k + 1) % 12] + 0.3 if k % 3 == 0 else p[k % 12]
            getattr(qc, gate)(angle, q)
            k += 1
        qc.h(0), qc.sx(1), qc.sxdg(2), qc.s(3), qc.t(0), qc.tdg(1), qc.sdg(2), qc.y(3)
        qc.x(0), qc.z(1), qc.id(2), qc.barrier()
        qc.cx(0, 1), qc.cz(1, 2), qc.cy(2, 3), qc.swap(3, 0), qc.cx(3, 1)
    return qc


def real_circuit(n: int = 4) -> QuantumCircuit:
    p = ParameterVector("t", 3 * n)
    qc = QuantumCircuit(n)
    for layer in range(3):
        for q in range(n):
            qc.ry(1.5 * p[layer * n + q], q)
        qc.h(1), qc.cz(0, 1), qc.cx(1, 2), qc.swap(2, 3), qc.x(0), qc.z(2)
    return qc


def wide_circuit(n: int = 9) -> QuantumCircuit:
    """Wider than one 4-qubit chunk, with gates interleaved across qubits, fixed gates inside a
    qubit's run of rotations, idle qubits in a layer and a parameter shared by several gates."""
    p = ParameterVector("w", 10)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.rx(p[q % 10], q)
    qc.ry(p[3], 7), qc.h(7), qc.rz(0.5 * p[9] - 1.0, 7), qc.ry(p[1], 2), qc.p(p[8], 0)
    qc.cx(0, 8), qc.cz(3, 4), qc.swap(2, 6)
    for q in (1, 4, 5, 8):  # qubits 0, 2, 3, 6, 7 idle in this layer
        qc.ry(p[(2 * q) % 10] + p[9], q)
        qc.sx(q)
        qc.rz(p[q], q)
    qc.cy(5, 1)
    qc.ry(p[0], 8)
    return qc


def bound(qc, values):
    return qc.assign_parameters(dict(zip(qc.parameters, values)))


def _values(qc, rows, shared):
    """Random rows; ``shared``: the last two thirds of the columns equal in every row, as a
    QNN binds one weight vector to a batch of inputs (those gates are multiplied once)."""
    values = RNG.uniform(-3, 3, (rows, qc.num_parameters))
    if shared:
        values[:, qc.num_parameters // 3:] = values[0, qc.num_parameters // 3:]
    return values


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("make", [all_gates_circuit, real_circuit, wide_circuit])
def test_states_match_statevector(make, shared):
    qc = make()
    program = compile_circuit(qc)
    assert program.real == (make is real_circuit)
    values = _values(qc, 6, shared)
    states = program.states(values)
    for v, state in zip(values, states):
        np.testing.assert_allclose(state, Statevector(bound(qc, v)).data, atol=1e-12)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("make", [all_gates_circuit, real_circuit, wide_circuit])
def test_expectation_gradients_match_finite_differences(make, shared):
    qc = make()
    n = qc.num_qubits
    program = compile_circuit(qc)
    labels = [("XIYZ", 0.7), ("ZZII", -0.3), ("IIIX", 1.1), ("YYII", 0.2)]
    obs = SparsePauliOp.from_list([("I" * (n - 4) + label, c) for label, c in labels])
    op = DiagonalOrPauli.from_pauli_list(obs.to_list(), n)
    values = _values(qc, 4, shared)
    evs, grads = program.expectation_gradients(values, [op])
    ref = [Statevector(bound(qc, v)).expectation_value(obs).real for v in values]
    np.testing.assert_allclose(evs[:, 0], ref, atol=1e-12)
    h = 1e-6
    for j in range(qc.num_parameters):
        step = np.zeros(qc.num_parameters)
        step[j] = h
        plus = program.expectation_gradients(values + step, [op])[0][:, 0]
        minus = program.expectation_gradients(values - step, [op])[0][:, 0]
        np.testing.assert_allclose(grads[:, 0, j], (plus - minus) / (2 * h), atol=1e-7)


def test_marginal_probabilities_follow_clbit_order():
    qc = all_gates_circuit()
    creg = ClassicalRegister(2, "meas")
    qc.add_register(creg)
    qc.measure(2, 0)
    qc.measure(0, 1)
    program = compile_circuit(qc)
    values = RNG.uniform(-3, 3, (3, qc.num_parameters))
    probs = program.probabilities(values)
    for v, row in zip(values, probs):
        unmeasured = bound(qc, v).remove_final_measurements(inplace=False)
        ref = Statevector(unmeasured).probabilities_dict(qargs=[2, 0])
        np.testing.assert_allclose(row, [ref.get(f"{k:02b}", 0.0) for k in range(4)], atol=1e-12)


def test_exact_estimator_matches_statevector_estimator_with_broadcasting():
    built = sel_ansatz(3, 2)
    qc = built.circuit
    values = RNG.uniform(0, np.pi, (4, 1, qc.num_parameters))
    observables = [SparsePauliOp("ZII"), SparsePauliOp.from_list([("XYZ", 0.5), ("IIZ", 2.0)])]
    ours = ExactEstimator().run([(qc, observables, values)]).result()[0].data.evs
    ref = StatevectorEstimator().run([(qc, observables, values)], precision=0.0).result()[0].data.evs
    assert ours.shape == ref.shape == (4, 2)
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_observables_with_equal_labels_and_different_coefficients_are_kept_apart():
    qc = sel_ansatz(2, 1).circuit
    values = RNG.uniform(0, np.pi, (3, qc.num_parameters))
    one, two = SparsePauliOp.from_list([("ZI", 1.0)]), SparsePauliOp.from_list([("ZI", 2.0)])
    evs = [ExactEstimator().run([(qc, obs, values)]).result()[0].data.evs for obs in (one, two)]
    np.testing.assert_allclose(evs[1], 2 * evs[0], atol=1e-12)
    gradient = ExactEstimatorGradient()
    grads = [np.array(gradient.run([qc] * 3, [obs] * 3, values).result().gradients)
             for obs in (one, two)]
    np.testing.assert_allclose(grads[1], 2 * grads[0], atol=1e-12)
    assert np.abs(grads[0]).max() > 1e-3


def test_exact_estimator_precision_adds_seeded_noise():
    qc = sel_ansatz(2, 1).circuit
    values = np.zeros((500, qc.num_parameters))
    exact = ExactEstimator().run([(qc, "ZI", values)]).result()[0].data.evs
    noisy_a = ExactEstimator(seed=3).run([(qc, "ZI", values)], precision=0.1).result()[0].data.evs
    noisy_b = ExactEstimator(seed=3).run([(qc, "ZI", values)], precision=0.1).result()[0].data.evs
    np.testing.assert_array_equal(noisy_a, noisy_b)
    assert 0.08 < np.std(noisy_a - exact) < 0.12


def test_exact_sampler_matches_reference_probabilities():
    built = paper_ansatz(3, 2, num_outputs=4)
    qc = built.circuit
    values = RNG.uniform(0, np.pi, (5, qc.num_parameters))
    data = ExactSampler(default_shots=None).run([(qc, values)]).result()[0].data.meas
    assert data.probabilities.shape == (5, 4)
    for v, row in zip(values, data.probabilities):
        unmeasured = bound(qc, v).remove_final_measurements(inplace=False)
        ref = Statevector(unmeasured).probabilities_dict(qargs=[0, 1])
        np.testing.assert_allclose(row, [ref.get(f"{k:02b}", 0.0) for k in range(4)], atol=1e-12)
    assert data.get_counts(0) == data.get_probabilities(0)
    assert abs(sum(data.get_probabilities(2).values()) - 1.0) < 1e-12


def _qnn_pair(kind):
    if kind == "sampler":
        built = paper_ansatz(3, 2, num_outputs=3)  # 3 outputs: all qubits measured, k mod 3
        common = dict(circuit=built.circuit, input_params=list(built.inputs),
                      weight_params=list(built.weights), interpret=built.interpret,
                      output_shape=3, input_gradients=True)
        ref_sampler = QMLSampler()
        ours = SamplerQNN(sampler=ExactSampler(default_shots=None), gradient=ExactSamplerGradient(), **common)
        ref = SamplerQNN(sampler=ref_sampler,
                         gradient=ParamShiftSamplerGradient(ref_sampler), **common)
    else:
        built = sel_ansatz(3, 2)
        common = dict(circuit=built.circuit, observables=list(built.observables),
                      input_params=list(built.inputs), weight_params=list(built.weights),
                      input_gradients=True, default_precision=0.0)
        ref_est = StatevectorEstimator()
        ours = EstimatorQNN(estimator=ExactEstimator(), gradient=ExactEstimatorGradient(), **common)
        ref = EstimatorQNN(estimator=ref_est, gradient=ParamShiftEstimatorGradient(ref_est),
                           **common)
    return built, ours, ref


@pytest.mark.parametrize("kind", ["sampler", "estimator"])
def test_qnn_forward_and_gradients_match_reference_and_parameter_shift(kind):
    built, ours, ref = _qnn_pair(kind)
    x = RNG.uniform(0, np.pi, (7, len(built.inputs)))
    w = RNG.uniform(0, 2 * np.pi, len(built.weights))
    np.testing.assert_allclose(ours.forward(x, w), ref.forward(x, w), atol=1e-10)
    our_in, our_w = ours.backward(x, w)
    ref_in, ref_w = ref.backward(x, w)
    np.testing.assert_allclose(our_w, ref_w, atol=1e-8)
    np.testing.assert_allclose(our_in, ref_in, atol=1e-8)
    assert np.abs(our_w).max() > 1e-3  # the comparison is not between zeros


def test_sampler_gradient_of_a_complete_distribution_sums_to_zero():
    built = paper_ansatz(2, 2)
    qnn = SamplerQNN(circuit=built.circuit, sampler=ExactSampler(default_shots=None),
                     gradient=ExactSamplerGradient(), input_params=list(built.inputs),
                     weight_params=list(built.weights), interpret=built.interpret,
                     output_shape=built.num_outputs)
    x = RNG.uniform(0, np.pi, (3, 2))
    _, grads = qnn.backward(x, RNG.uniform(0, 6, len(built.weights)))
    np.testing.assert_allclose(grads.sum(axis=1), 0.0, atol=1e-12)


def test_an_instruction_that_is_not_a_gate_is_named():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.reset(0)
    with pytest.raises(UnsupportedCircuitError, match=r"instruction 'reset' is not supported"):
        compile_circuit(qc)


def test_mid_circuit_measurement_is_rejected():
    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    qc.x(0)
    with pytest.raises(UnsupportedCircuitError, match="after it was measured"):
        compile_circuit(qc)


def test_compiled_program_is_cached_per_circuit_and_refreshed_when_it_grows():
    qc = real_circuit()
    first = compile_circuit(qc)
    assert compile_circuit(qc) is first
    qc.ry(0.1, 0)
    assert compile_circuit(qc) is not first


def test_the_gradient_call_reuses_the_forward_pass_of_the_same_values(monkeypatch):
    """A QNN asks for the states, then for the gradients of the same values: the second call
    only sweeps back. Other values, or a state too large to keep, are computed afresh, with
    the same results as a program that never kept anything."""
    import qmoe_qiskit.simulation.statevector as statevector

    qc = wide_circuit()
    program = compile_circuit(qc)
    op = DiagonalOrPauli.from_pauli_list([("Z" * qc.num_qubits, 1.0)], qc.num_qubits)
    values = _values(qc, 5, True)
    other = _values(qc, 5, True)
    fresh = [statevector._compile(qc).expectation_gradients(v, [op]) for v in (values, other)]
    evolved = []
    original = statevector.Program._evolve
    monkeypatch.setattr(statevector.Program, "_evolve",
                        lambda self, *a: evolved.append(1) or original(self, *a))
    states = program.states(values)
    with pytest.raises(ValueError, match="read-only"):
        states[0, 0] = 1.0  # the kept state cannot be changed behind the gradient's back
    evs, grads = program.expectation_gradients(values, [op])
    assert len(evolved) == 1
    np.testing.assert_allclose(grads, fresh[0][1], atol=1e-13)
    np.testing.assert_allclose(evs, fresh[0][0], atol=1e-13)
    program.states(values)
    evs, grads = program.expectation_gradients(other, [op])  # not the values just run
    assert len(evolved) == 3
    np.testing.assert_allclose(grads, fresh[1][1], atol=1e-13)
    monkeypatch.setattr(statevector, "_MEMO_BYTES", 0)
    program.states(values)
    program.expectation_gradients(values, [op])
    assert len(evolved) == 5


def test_rows_split_over_threads_give_the_same_results(monkeypatch):
    """A batch's rows are split over threads where each part is large enough (here: always):
    the states and gradients are those of one thread."""
    from qmoe_qiskit.simulation import kernels

    qc = wide_circuit()
    op = DiagonalOrPauli.from_pauli_list([("Z" * qc.num_qubits, 1.0)], qc.num_qubits)
    values = _values(qc, 7, True)
    results = {}
    parts = []
    monkeypatch.setattr(kernels, "THREAD_AMPLITUDES", 1)
    original = kernels._pool
    monkeypatch.setattr(kernels, "_pool", lambda n: parts.append(n) or original(n))
    for count in (1, 3):
        kernels.set_threads(count)
        program = compile_circuit(qc.copy())  # a fresh program: nothing kept between them
        results[count] = (program.states(values), *program.expectation_gradients(values, [op]))
    kernels.set_threads(None)
    assert parts == [3, 3]  # the forward pass and the backward sweep, each in 3 parts
    for one, three in zip(results[1], results[3]):
        np.testing.assert_allclose(three, one, atol=1e-13)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be an integer >= 1 or None"):
            kernels.set_threads(bad)


@pytest.mark.parametrize("make", [all_gates_circuit, real_circuit, wide_circuit])
def test_single_precision_runs_in_single_and_agrees_with_double(make):
    """``dtype="complex64"`` keeps states in complex64 (float32 for a real circuit) and agrees
    with complex128 to single precision, states and gradients alike."""
    qc = make()
    double, single = compile_circuit(qc), compile_circuit(qc, "complex64")
    assert single is compile_circuit(qc, "complex64") and single is not double
    assert single._forward(_values(qc, 1, False)).state.dtype == (
        np.float32 if make is real_circuit else np.complex64)
    op = DiagonalOrPauli.from_pauli_list([("Z" * qc.num_qubits, 0.7), ("X" * qc.num_qubits, 0.2)],
                                         qc.num_qubits)
    values = _values(qc, 6, True)
    np.testing.assert_allclose(single.states(values), double.states(values), atol=2e-6)
    evs, grads = single.expectation_gradients(values, [op])
    ref_evs, ref_grads = double.expectation_gradients(values, [op])
    np.testing.assert_allclose(evs, ref_evs, atol=2e-6)
    np.testing.assert_allclose(grads, ref_grads, atol=1e-5)
    assert np.abs(grads - ref_grads).max() > 0  # it did run in single precision
    with pytest.raises(ValueError, match="valid dtypes: complex128, complex64"):
        compile_circuit(qc, "float16")


def test_single_precision_primitives_drive_a_qnn_like_double():
    """The QNN seam with single-precision primitives: forward values and weight gradients of
    both QNN kinds within single precision of the double-precision ones."""
    sel, paper = sel_ansatz(3, 2), paper_ansatz(3, 2, num_outputs=2)
    x = RNG.uniform(0, np.pi, (5, 3))
    outputs = {}
    for dtype in ("complex128", "complex64"):
        est = ExactEstimator(dtype=dtype)
        sampler = ExactSampler(default_shots=None, dtype=dtype)
        qnns = [EstimatorQNN(circuit=sel.circuit, observables=list(sel.observables),
                             input_params=list(sel.inputs), weight_params=list(sel.weights),
                             estimator=est, gradient=ExactEstimatorGradient(est),
                             default_precision=0.0),
                SamplerQNN(circuit=paper.circuit, input_params=list(paper.inputs),
                           weight_params=list(paper.weights), sampler=sampler,
                           gradient=ExactSamplerGradient(sampler), interpret=paper.interpret,
                           output_shape=2)]
        outputs[dtype] = []
        for qnn in qnns:
            w = np.linspace(0.1, 2.0, qnn.num_weights)
            outputs[dtype] += [qnn.forward(x, w), qnn.backward(x, w)[1]]
    for a, b in zip(outputs["complex64"], outputs["complex128"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="valid dtypes"):
        ExactSampler(dtype="complex32")
