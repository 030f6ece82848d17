"""The exact primitives as drop-in V2 primitives: any circuit the reference runs, library
circuits unrolled, non-affine angles with chain-rule gradients, the sampler contract (shots,
seed, BitArray per register, shape ``()``), the estimator contract (precision on every shape,
per-PUB reseeding, reference metadata), and the reference simulator as the fallback.
Qiskit's own suites run against them in tests/upstream."""

import warnings

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import UnitaryGate, real_amplitudes, zz_feature_map
from qiskit.exceptions import QiskitError
from qiskit.primitives import BitArray, StatevectorEstimator, StatevectorSampler
from qiskit.quantum_info import DensityMatrix, SparsePauliOp, Statevector, random_unitary
from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient
from qiskit_machine_learning.neural_networks import EstimatorQNN, SamplerQNN

from qmoe_qiskit.primitives import ExactDistributions
from qmoe_qiskit.simulation import (
    ExactEstimator,
    ExactEstimatorGradient,
    ExactSampler,
    ExactSamplerGradient,
)
from qmoe_qiskit.simulation.statevector import DiagonalOrPauli, compile_circuit

RNG = np.random.default_rng(5)


def _reference_probabilities(circuit, values, qargs):
    bound = circuit.assign_parameters(dict(zip(circuit.parameters, values)))
    return Statevector(bound.remove_final_measurements(inplace=False)).probabilities(qargs)


# ------------------------------------------------------------------ circuits the reference runs
def test_library_circuits_and_unitaries_are_unrolled_and_exact():
    feature_map, ansatz = zz_feature_map(3), real_amplitudes(3, reps=2)
    circuit = feature_map.compose(ansatz)
    circuit.append(UnitaryGate(random_unitary(4, seed=2)), [0, 2])
    circuit.rzz(Parameter("t"), 1, 2)  # a gate with a definition, parameterised
    circuit.measure_all()
    values = RNG.uniform(-2, 2, (6, circuit.num_parameters))
    got = ExactSampler(default_shots=None).run([(circuit, values)]).result()[0].data.meas
    for row, v in zip(got.probabilities, values):
        np.testing.assert_allclose(row, _reference_probabilities(circuit, v, [0, 1, 2]),
                                   atol=1e-12)


def test_non_affine_angles_have_chain_rule_gradients_for_inputs_and_weights():
    """The ZZ feature map's angles are products of inputs, (π - x0)(π - x1); a weight enters
    non-affinely too (w**2). Gradients against central finite differences."""
    x, w = ParameterVector("x", 2), Parameter("w")
    circuit = zz_feature_map(2).assign_parameters(x)
    circuit.ry(w * w + x[0] * w, 0)
    circuit.cx(0, 1)
    program = compile_circuit(circuit)
    assert program.expressions  # evaluated per binding, not refused
    values = RNG.uniform(-1.5, 1.5, (4, 3))
    observable = DiagonalOrPauli.from_pauli_list([("ZZ", 1.0), ("XI", 0.5)], 2)
    evs, grads = program.expectation_gradients(values, [observable])
    reference = [Statevector(circuit.assign_parameters(dict(zip(circuit.parameters, v))))
                 .expectation_value(SparsePauliOp(["ZZ", "XI"], [1.0, 0.5])).real
                 for v in values]
    np.testing.assert_allclose(evs[:, 0], reference, atol=1e-12)
    step, numeric = 1e-6, np.zeros((4, 3))
    for j in range(3):
        up, down = values.copy(), values.copy()
        up[:, j] += step
        down[:, j] -= step
        numeric[:, j] = (program.expectation_gradients(up, [observable])[0][:, 0]
                         - program.expectation_gradients(down, [observable])[0][:, 0]) / (2 * step)
    np.testing.assert_allclose(grads[:, 0], numeric, atol=1e-7)
    assert np.abs(grads).max() > 1e-2


def test_a_stock_estimator_qnn_with_library_circuits_matches_parameter_shift():
    """A qiskit-machine-learning tutorial's QNN, made fast by passing our estimator and
    gradient: forward against the reference estimator, gradients against parameter shift."""
    feature_map, ansatz = zz_feature_map(2), real_amplitudes(2, reps=1)
    circuit = feature_map.compose(ansatz)
    common = dict(circuit=circuit, input_params=feature_map.parameters,
                  weight_params=ansatz.parameters, input_gradients=True,
                  default_precision=0.0)  # the QNN's default 1/64 asks for sampling noise
    ours = EstimatorQNN(estimator=ExactEstimator(), gradient=ExactEstimatorGradient(),
                        **common)
    reference = StatevectorEstimator()
    ref = EstimatorQNN(estimator=reference, gradient=ParamShiftEstimatorGradient(reference),
                       **common)
    x, w = RNG.uniform(0, 1, (5, 2)), RNG.uniform(0, 2, 4)
    np.testing.assert_allclose(ours.forward(x, w), ref.forward(x, w), atol=1e-12)
    for mine, theirs in zip(ours.backward(x, w), ref.backward(x, w)):
        np.testing.assert_allclose(mine, theirs, atol=1e-8)


def test_reset_runs_on_the_reference_with_one_warning():
    circuit = QuantumCircuit(2, 2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.reset(0)
    circuit.measure([0, 1], [0, 1])
    sampler = ExactSampler(default_shots=None)
    with pytest.warns(UserWarning, match="reference simulator.*'reset'"):
        first = sampler.run([circuit]).result()[0].data.c
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same circuit again: no second warning
        sampler.run([circuit]).result()
    expected = DensityMatrix(circuit.remove_final_measurements(inplace=False)).probabilities()
    np.testing.assert_allclose(first.probabilities, expected, atol=1e-12)  # exact, not a trajectory
    sampled = ExactSampler(seed=3).run([circuit], shots=4000).result()[0].data.c
    assert isinstance(sampled, BitArray) and set(sampled.get_int_counts()) <= {0, 2}


def test_what_the_reference_refuses_is_refused_with_its_error():
    circuit = QuantumCircuit(1, 1)
    circuit.h(0)
    circuit.measure(0, 0)
    circuit.x(0)
    circuit.measure(0, 0)
    with pytest.warns(UserWarning), pytest.raises(QiskitError, match="mid-circuit"):
        ExactSampler(default_shots=None).run([circuit]).result()


# ------------------------------------------------------------------ the sampler contract
def test_samples_follow_the_exact_distribution_per_register():
    """Two registers and an unmeasured clbit (reads 0), as the reference lays them out."""
    qr = QuantumRegister(3)
    alpha, beta = ClassicalRegister(2, "alpha"), ClassicalRegister(2, "beta")
    circuit = QuantumCircuit(qr, alpha, beta)
    circuit.ry(Parameter("a"), 0)
    circuit.cx(0, 1)
    circuit.ry(Parameter("b"), 2)
    circuit.measure([0, 2], alpha)
    circuit.measure(1, beta[1])  # beta[0] is never written
    values = np.array([[0.7, 2.1], [2.5, 0.3]])
    shots = 40_000
    result = ExactSampler(seed=11).run([(circuit, values)], shots=shots).result()[0]
    assert result.metadata == {"shots": shots, "circuit_metadata": circuit.metadata}
    exact = ExactSampler(default_shots=None).run([(circuit, values)]).result()[0].data
    for name in ("alpha", "beta"):
        field = result.data[name]
        assert isinstance(field, BitArray) and field.shape == (2,) and field.num_shots == shots
        for i in range(2):
            counts = field.get_int_counts(i)
            freq = np.array([counts.get(k, 0) for k in range(4)]) / shots
            np.testing.assert_allclose(freq, exact[name].probabilities[i], atol=0.01)
    assert set(result.data.beta.get_int_counts(0)) <= {0, 2}  # bit 0 of beta is always 0
    reference = StatevectorSampler(seed=11).run([(circuit, values)], shots=shots).result()[0]
    for i in range(2):  # the same distribution as Qiskit's reference
        ref = reference.data.alpha.get_int_counts(i)
        mine = result.data.alpha.get_int_counts(i)
        assert max(abs(ref.get(k, 0) - mine.get(k, 0)) for k in range(4)) / shots < 0.015


def test_a_seed_repeats_and_shots_come_from_every_level():
    circuit = real_amplitudes(2, reps=1)
    circuit.measure_all()
    values = RNG.uniform(0, 3, circuit.num_parameters)
    sampler = ExactSampler(default_shots=77, seed=4)
    a, b = (sampler.run([(circuit, values)]).result()[0].data.meas for _ in range(2))
    np.testing.assert_array_equal(a.array, b.array)  # the seed is applied on every run
    assert a.num_shots == 77
    assert sampler.run([(circuit, values, 9)]).result()[0].data.meas.num_shots == 9
    assert sampler.run([(circuit, values)], shots=13).result()[0].data.meas.num_shots == 13
    other = ExactSampler(default_shots=77, seed=5).run([(circuit, values)]).result()[0]
    assert not np.array_equal(other.data.meas.array, a.array)
    with pytest.raises(ValueError, match="positive"):
        sampler.run([(circuit, values)], shots=0)


def test_shape_empty_pubs_and_a_parameterless_sampler_qnn():
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    exact = ExactSampler(default_shots=None).run([circuit]).result()[0].data.meas
    assert exact.shape == () and exact.get_counts() == pytest.approx({"00": 0.5, "11": 0.5})
    sampled = ExactSampler(seed=1).run([circuit]).result()[0].data.meas
    assert sampled.shape == () and sum(sampled.get_counts().values()) == 1024
    qnn = SamplerQNN(circuit=circuit, sampler=ExactSampler(default_shots=None),
                     gradient=ExactSamplerGradient(), input_params=[], weight_params=[])
    np.testing.assert_allclose(qnn.forward(None, None), [[0.5, 0, 0, 0.5]], atol=1e-12)


def test_exact_mode_is_the_qnns_fast_path():
    assert isinstance(ExactSampler(default_shots=None).run(
        [_bell()]).result()[0].data.meas, ExactDistributions)
    assert ExactSamplerGradient()._sampler.default_shots is None  # qml keeps it private


def _bell():
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


# ------------------------------------------------------------------ the estimator contract
def test_precision_on_every_shape_is_seeded_per_pub_like_the_reference():
    circuit = QuantumCircuit(1)
    circuit.ry(0.4, 0)
    estimator = ExactEstimator(default_precision=0.5, seed=9)
    scalar = estimator.run([(circuit, "Z")]).result()[0]  # shape (): used to crash
    assert scalar.data.evs.shape == ()
    reference = StatevectorEstimator(default_precision=0.5, seed=9).run(
        [(circuit, "Z")]).result()[0]
    np.testing.assert_allclose(scalar.data.evs, reference.data.evs, atol=1e-12)
    again = estimator.run([(circuit, "Z"), (circuit, "Z")]).result()
    np.testing.assert_array_equal([r.data.evs for r in again], [scalar.data.evs] * 2)
    assert again.metadata == {"version": 2}
    assert scalar.metadata == {"target_precision": 0.5, "circuit_metadata": circuit.metadata}
    exact = estimator.run([(circuit, "Z")], precision=0).result()[0].data.evs
    np.testing.assert_allclose(exact, np.cos(0.4), atol=1e-12)


def test_gradients_of_a_circuit_with_reset_come_from_parameter_shift_on_the_reference():
    """The reference path (qiskit-ml's parameter shift) runs this circuit, so ours does too,
    with one warning: parameter shift on our sampler, whose reset circuits are exact (Qiskit's
    density matrix). Checked against finite differences of the density-matrix distribution."""
    a, b = Parameter("a"), Parameter("b")
    circuit = QuantumCircuit(2, 2)
    circuit.ry(a, 0)
    circuit.cx(0, 1)
    circuit.reset(0)
    circuit.ry(b, 0)
    circuit.measure([0, 1], [0, 1])
    values = np.array([[0.3, 1.1], [2.0, -0.4]])
    with pytest.warns(UserWarning, match="reference simulator"):
        ours = ExactSamplerGradient().run([circuit] * 2, values).result().gradients

    def probabilities(v):
        bound = circuit.assign_parameters(v).remove_final_measurements(inplace=False)
        return DensityMatrix(bound).probabilities()

    step = 1e-6
    for row, v in zip(ours, values):
        for j, derivative in enumerate(row):
            up, down = v.copy(), v.copy()
            up[j] += step
            down[j] -= step
            numeric = (probabilities(up) - probabilities(down)) / (2 * step)
            np.testing.assert_allclose([derivative.get(k, 0.0) for k in range(4)], numeric,
                                       atol=1e-8)
    assert max(abs(v) for row in ours for d in row for v in d.values()) > 0.05


def test_dropping_final_measurements_keeps_the_fused_layers():
    """Qiskit's remove_final_measurements rebuilds the circuit from its DAG and interleaves
    entangling gates with rotations: 12 fused operations became 132 (18% slower training)."""
    from qmoe_qiskit.circuits import paper_ansatz
    from qmoe_qiskit.primitives.sampling import final_measurements

    circuit = paper_ansatz(12, 6, num_outputs=4).circuit
    assert len(compile_circuit(final_measurements(circuit).unmeasured).ops) == \
        len(compile_circuit(circuit).ops) == 12


def test_the_noisy_sampler_keeps_the_same_contract():
    """Same base: registers, shots per PUB, a seed that repeats; noise-free it is the exact
    sampler's distribution."""
    from qmoe_qiskit.noise_models import aer_primitives

    circuit = QuantumCircuit(QuantumRegister(2), ClassicalRegister(1, "a"),
                             ClassicalRegister(1, "b"))
    circuit.ry(Parameter("t"), 0)
    circuit.cx(0, 1)
    circuit.measure(0, 0)
    circuit.measure(1, 1)
    sampler, _ = aer_primitives(None, seed=7)
    exact = sampler.run([(circuit, [[1.0]])]).result()[0].data
    np.testing.assert_allclose(exact.a.probabilities[0], [np.cos(0.5) ** 2, np.sin(0.5) ** 2],
                               atol=1e-9)
    first = sampler.run([(circuit, [[1.0]], 500)]).result()[0]
    again = sampler.run([(circuit, [[1.0]], 500)]).result()[0]
    assert first.data.a.num_shots == 500 and first.metadata["shots"] == 500
    np.testing.assert_array_equal(first.data.b.array, again.data.b.array)
    np.testing.assert_array_equal(first.data.a.array, first.data.b.array)  # perfectly correlated


def test_a_wrong_symbolic_translation_is_caught_and_bound_instead(monkeypatch):
    """Qiskit 2.6's sympify can swap parameters (seen on gradient expressions, depending on
    hash order). Every lambdified angle is checked against Qiskit's bind at a probe point;
    here the translation is made wrong on purpose, and the results stay right."""
    from qmoe_qiskit.primitives import angles

    real = angles._function
    monkeypatch.setattr(angles, "_function",
                        lambda *a: (lambda f: (lambda v: f(v) + 0.5))(real(*a)))
    x = ParameterVector("x", 2)
    circuit = zz_feature_map(2).assign_parameters(x)
    program = compile_circuit(circuit.copy())  # a fresh object: compiled under the patch
    values = RNG.uniform(-1, 1, (3, 2))
    for row, psi in zip(values, program.states(values)):
        ref = Statevector(circuit.assign_parameters(dict(zip(circuit.parameters, row)))).data
        assert abs(np.vdot(ref, psi)) ** 2 == pytest.approx(1.0, abs=1e-12)
