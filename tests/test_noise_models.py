"""Noise-model factories, the noisy Aer primitives and the batched shift gradients."""

import numpy as np
import pytest
from qiskit_aer.primitives import SamplerV2 as AerSampler

from qmoe_qiskit.backends import get_backend
from qmoe_qiskit.circuits import paper_ansatz, sel_ansatz
from qmoe_qiskit.errors import ConfigError
from qmoe_qiskit.noise_models import (
    NoisyEstimator,
    NoisySampler,
    NoisySimulation,
    aer_primitives,
    depolarizing,
    device,
    gates_without_noise,
    readout_matrices,
    thermal_relaxation,
)
from qmoe_qiskit.noise_models.gradients import (
    BatchedShiftEstimatorGradient,
    BatchedShiftSamplerGradient,
)
from qmoe_qiskit.simulation import (
    ExactEstimator,
    ExactEstimatorGradient,
    ExactSampler,
    ExactSamplerGradient,
)

RNG = np.random.default_rng(7)


def _values(circuit, rows=4):
    return RNG.uniform(0, np.pi, (rows, circuit.num_parameters))


@pytest.mark.parametrize("ansatz", [paper_ansatz(2, 3, num_outputs=2), sel_ansatz(2, 3),
                                    paper_ansatz(4, 2, num_outputs=4)])
def test_every_gate_of_the_transpiled_router_carries_depolarizing_noise(ansatz):
    simulation = NoisySimulation(depolarizing(0.01))
    isa = simulation.compile(ansatz.circuit).isa
    assert set(isa.count_ops()) - {"measure"} <= {"rz", "sx", "x", "cx"}
    assert gates_without_noise(isa, simulation.noise_model) == []
    # the check can fail: a model without rz noise leaves every rz uncovered
    partial = depolarizing(0.01, basis_gates=("sx", "x", "cx"))
    missing = gates_without_noise(isa, partial)
    assert missing and {name for name, _ in missing} == {"rz"}


def test_single_epsilon_convention_and_overrides():
    model = depolarizing(0.02)
    np.testing.assert_allclose(readout_matrices(model, [0])[0], [[0.98, 0.02], [0.02, 0.98]])
    quiet_readout = depolarizing(0.02, readout=0.0)
    assert readout_matrices(quiet_readout, [0]) == [None]
    assert depolarizing(0.0).is_ideal()


@pytest.mark.parametrize("call, message", [
    (lambda: depolarizing(-0.1), "p1"),
    (lambda: depolarizing(1.5), "must be a probability in [0, 1]"),
    (lambda: depolarizing(p1=0.1, p2=0.1), "give epsilon, or all of p1, p2 and readout"),
    (lambda: thermal_relaxation(50e-6, 150e-6), "exceeds 2*t1"),
    (lambda: thermal_relaxation(-1, 1), "positive"),
    (lambda: get_backend("fake_nowhere"), "fake_brisbane"),
    (lambda: device("fake_manila", scale=-1), "scale"),
    (lambda: device("fake_manila", scale=1000), "use a scale <="),
    (lambda: device("fake_manila", qubits=[0, 9]), "not on fake_manila"),
])
def test_invalid_noise_is_a_one_line_config_error(call, message):
    with pytest.raises(ConfigError, match=None) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_noiseless_primitives_match_the_exact_simulator():
    paper, sel = paper_ansatz(3, 2, num_outputs=4), sel_ansatz(3, 2)
    sampler, estimator = aer_primitives(depolarizing(0.0))
    v = _values(paper.circuit)
    ours = sampler.run([(paper.circuit, v)]).result()[0].data.meas.probabilities
    ref = ExactSampler(default_shots=None).run([(paper.circuit, v)]).result()[0].data.meas.probabilities
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    v = _values(sel.circuit)[:, None, :]
    obs = list(sel.observables)
    ours = estimator.run([(sel.circuit, obs, v)]).result()[0].data.evs
    ref = ExactEstimator().run([(sel.circuit, obs, v)]).result()[0].data.evs
    assert ours.shape == (4, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("noise", ["depolarizing", "device"])
def test_exact_noisy_probabilities_match_aer_shot_sampling(noise):
    """An independent path: Aer's own sampler applies gate and readout noise while measuring."""
    circuit = paper_ansatz(2, 2, num_outputs=4).circuit
    if noise == "depolarizing":
        simulation = NoisySimulation(depolarizing(0.05))
    else:
        backend = get_backend("fake_manila")
        base = NoisySimulation(None, backend=backend)
        simulation = base.with_noise(device(backend, qubits=base.used_qubits(circuit), scale=3))
    v = _values(circuit, 3)
    exact = NoisySampler(simulation).run([(circuit, v)]).result()[0].data.meas.probabilities
    isa = simulation.compile(circuit).isa
    shots = 40_000
    aer = AerSampler(default_shots=shots, seed=11,
                     options={"backend_options": {"noise_model": simulation.noise_model}})
    counts = aer.run([(isa, v)]).result()[0].data.meas
    sampled = np.array([[counts.get_int_counts(i).get(k, 0) / shots for k in range(4)]
                        for i in range(3)])
    sigma = np.sqrt(exact * (1 - exact) / shots)
    assert np.all(np.abs(sampled - exact) < 5 * sigma + 1e-3)
    ideal = ExactSampler(default_shots=None).run([(circuit, v)]).result()[0].data.meas.probabilities
    assert np.abs(exact - ideal).max() > 0.01  # the noise is really there


def test_device_model_is_restricted_and_scaled():
    backend = get_backend("fake_manila")
    one = device(backend, qubits=[0, 1])
    two = device(backend, qubits=[0, 1], scale=2)
    assert device(backend, qubits=[0, 1], scale=0).is_ideal()
    touched = {q for e in one.to_dict()["errors"] for qs in e.get("gate_qubits", []) for q in qs}
    assert touched == {0, 1}
    for a, b in zip(readout_matrices(one, [0, 1]), readout_matrices(two, [0, 1])):
        np.testing.assert_allclose(b[0, 1], 2 * a[0, 1])
    # more noise moves the router's distribution further from the ideal one
    circuit = paper_ansatz(2, 2, num_outputs=4).circuit
    base = NoisySimulation(None, backend=backend)
    used = base.used_qubits(circuit)  # the low-error qubits the transpiler placed it on
    v = _values(circuit)
    ideal = ExactSampler(default_shots=None).run([(circuit, v)]).result()[0].data.meas.probabilities
    tvd = [np.abs(NoisySampler(base.with_noise(device(backend, qubits=used, scale=k)))
                  .run([(circuit, v)]).result()[0].data.meas.probabilities - ideal).sum(1).mean()
           for k in (0, 1, 4)]
    assert tvd[0] < 1e-9 < tvd[1] < tvd[2]


def test_sampled_estimator_reports_shot_noise():
    sel = sel_ansatz(2, 2)
    v = _values(sel.circuit, 200)
    exact = NoisyEstimator(NoisySimulation(depolarizing(0.02)))
    sampled = NoisyEstimator(NoisySimulation(depolarizing(0.02)), default_shots=500, seed=1)
    e = exact.run([(sel.circuit, sel.observables[0], v)]).result()[0].data
    s = sampled.run([(sel.circuit, sel.observables[0], v)]).result()[0].data
    z = (s.evs - e.evs) / s.stds
    assert abs(z.mean()) < 0.3 and 0.7 < z.std() < 1.3


def test_batched_shift_gradients_are_exact():
    paper, sel = paper_ansatz(3, 2, num_outputs=4), sel_ansatz(2, 3)
    sampler, estimator = aer_primitives(depolarizing(0.0))
    v = _values(paper.circuit, 3)
    params = [list(paper.weights)] * 3
    ours = BatchedShiftSamplerGradient(sampler).run([paper.circuit] * 3, v, params).result()
    ref = ExactSamplerGradient().run([paper.circuit] * 3, v, params).result()
    flat = lambda g: np.array([[[d.get(k, 0.0) for k in range(4)] for d in row] for row in g])
    np.testing.assert_allclose(flat(ours.gradients), flat(ref.gradients), atol=1e-10)
    v = _values(sel.circuit, 3)
    obs = sel.observables[1]
    ours = BatchedShiftEstimatorGradient(estimator).run([sel.circuit] * 3, [obs] * 3, v).result()
    ref = ExactEstimatorGradient().run([sel.circuit] * 3, [obs] * 3, v).result()
    np.testing.assert_allclose(ours.gradients, ref.gradients, atol=1e-10)


def test_batched_shift_gradient_under_noise_matches_finite_differences():
    sel = sel_ansatz(2, 2)
    estimator = NoisyEstimator(NoisySimulation(depolarizing(0.03)))
    v = _values(sel.circuit, 2)
    obs = sel.observables[0]
    grads = np.array(BatchedShiftEstimatorGradient(estimator).run(
        [sel.circuit] * 2, [obs] * 2, v).result().gradients)
    h = 1e-5
    for j in range(sel.circuit.num_parameters):
        step = np.zeros(sel.circuit.num_parameters)
        step[j] = h
        f = lambda w: estimator.run([(sel.circuit, obs, w)]).result()[0].data.evs
        np.testing.assert_allclose(grads[:, j], (f(v + step) - f(v - step)) / (2 * h), atol=1e-6)


def test_a_device_scale_past_the_bound_is_refused_before_aer_divides_by_zero():
    """Aer's device model divides by zero once relaxation is complete (scale ~1e5 on
    fake_manila); the factory and the stand-in refuse scales above MAX_SCALE in one line."""
    from qmoe_qiskit.errors import ConfigError
    from qmoe_qiskit.noise_models import device
    from qmoe_qiskit.noise_models.factories import MAX_SCALE
    from qmoe_qiskit.noise_models.standin import stand_in

    assert MAX_SCALE == 1000
    device("fake_manila", qubits=[0, 1], scale=MAX_SCALE, clip=True)  # the bound itself builds
    for call in (lambda: device("fake_manila", qubits=[0, 1], scale=1e5, clip=True),
                 lambda: device("fake_manila", qubits=[0], readout_scale=1e5, clip=True),
                 lambda: stand_in("fake_manila", scale=1e6),
                 lambda: stand_in("fake_manila", scale=2, drift=5)):
        with pytest.raises(ConfigError, match="must be at most"):
            call()
