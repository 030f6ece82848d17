"""The floor shared by the execution packages: the sampler-based estimator on any sampler,
the per-circuit cache, and outcome probabilities from samples."""

import numpy as np
import pytest
from qiskit.circuit import QuantumCircuit
from qiskit.primitives import BaseSamplerV2, StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp

from qmoe_qiskit.circuits import paper_ansatz, sel_ansatz
from qmoe_qiskit.errors import UnsupportedCircuitError
from qmoe_qiskit.noise_models import NoisyEstimator, NoisySampler, NoisySimulation, depolarizing
from qmoe_qiskit.primitives import (
    CircuitCache,
    SamplerEstimator,
    outcome_counts,
    outcome_probabilities,
)
from qmoe_qiskit.simulation import ExactEstimator, ExactSampler

RNG = np.random.default_rng(5)


def _values(circuit, rows=5):
    return RNG.uniform(0, np.pi, (rows, circuit.num_parameters))


class CountingSampler(BaseSamplerV2):
    """A sampler that wraps another, as a mitigation layer would: it sees every PUB."""

    def __init__(self, inner):
        self.inner, self.pubs = inner, 0

    def run(self, pubs, *, shots=None):
        pubs = list(pubs)
        self.pubs += len(pubs)
        return self.inner.run(pubs, shots=shots)


def test_sampler_estimator_on_an_exact_sampler_is_exact():
    sel = sel_ansatz(3, 2)
    v = _values(sel.circuit)
    observables = [*sel.observables, SparsePauliOp(["ZZI", "IIZ"], [0.5, -1.5]), "III"]
    ours = SamplerEstimator(ExactSampler(default_shots=None)).run(
        [(sel.circuit, obs, v) for obs in observables]).result()
    reference = StatevectorEstimator().run(
        [(sel.circuit, obs, v) for obs in observables]).result()
    for mine, ref in zip(ours, reference):
        np.testing.assert_allclose(mine.data.evs, ref.data.evs, atol=1e-12)
        assert np.all(mine.data.stds == 0) and mine.metadata["shots"] is None


def test_sampler_estimator_works_through_a_wrapping_sampler():
    """Not tied to the Runtime sampler: any V2 sampler, wrapped or not, serves it."""
    sel = sel_ansatz(2, 2)
    v = _values(sel.circuit, 50)
    simulation = NoisySimulation(depolarizing(0.02))
    wrapper = CountingSampler(NoisySampler(simulation, default_shots=4000, seed=3))
    result = SamplerEstimator(wrapper).run(
        [(sel.circuit, obs, v) for obs in sel.observables]).result()
    assert wrapper.pubs == 1  # both observables from one measurement
    exact = NoisyEstimator(simulation).run(
        [(sel.circuit, obs, v) for obs in sel.observables]).result()
    for sampled, ref in zip(result, exact):
        assert sampled.metadata["shots"] == 4000
        z = (sampled.data.evs - ref.data.evs) / sampled.data.stds
        assert np.all(np.abs(z) < 5) and np.abs(sampled.data.evs - ref.data.evs).max() > 0


def test_sampler_estimator_rejects_measured_circuits_and_non_diagonal_observables():
    measured = paper_ansatz(2, 1, num_outputs=2).circuit
    with pytest.raises(UnsupportedCircuitError, match="must not measure"):
        SamplerEstimator(ExactSampler(default_shots=None)).run([(measured, "ZI", _values(measured))])
    sel = sel_ansatz(2, 1)
    with pytest.raises(UnsupportedCircuitError, match="only I/Z Paulis"):
        SamplerEstimator(ExactSampler(default_shots=None)).run([(sel.circuit, "XI", _values(sel.circuit))])


def test_exact_estimator_matches_the_reference_on_pubs_of_several_shapes():
    sel = sel_ansatz(2, 2)
    v = _values(sel.circuit, 6).reshape(2, 3, -1)
    obs = [[sel.observables[0]], [sel.observables[1]]]  # shape (2, 1) broadcast against (2, 3)
    ours = ExactEstimator().run([(sel.circuit, obs, v)]).result()[0].data.evs
    ref = StatevectorEstimator().run([(sel.circuit, obs, v)]).result()[0].data.evs
    assert ours.shape == (2, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_circuit_cache_computes_once_per_object_and_again_after_a_change():
    calls = []
    cache = CircuitCache(lambda circuit, *key: calls.append((circuit, key)) or len(calls))
    a, b = QuantumCircuit(1), QuantumCircuit(1)
    assert cache(a) == cache(a) == 1
    assert cache(b) == 2  # an equal circuit, another object
    assert cache(a, (0,)) == 3 and cache(a, (0,)) == 3  # extra keys are separate entries
    a.x(0)  # changed in place
    assert cache(a) == 4 and len(calls) == 4


def test_outcome_probabilities_of_samples_are_their_frequencies():
    circuit = paper_ansatz(2, 2, num_outputs=4).circuit
    sampler = NoisySampler(NoisySimulation(depolarizing(0.05)), default_shots=300, seed=2)
    field = sampler.run([(circuit, _values(circuit, 6).reshape(2, 3, -1))]).result()[0].data.meas
    probs = outcome_probabilities(field)
    assert probs.shape == (2, 3, 4)
    for index in np.ndindex(2, 3):
        expected = np.zeros(4)
        for outcome, count in field.get_int_counts(index).items():
            expected[outcome] = count / 300
        np.testing.assert_array_equal(probs[index], expected)
    assert outcome_counts(field).sum() == 6 * 300
    exact = ExactSampler(default_shots=None).run([(circuit, _values(circuit))]).result()[0].data.meas
    assert outcome_probabilities(exact) is exact.probabilities


def _reference_error(run):
    with pytest.raises(Exception) as info:
        run()
    return info.type


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_primitive_refuses_nan_and_infinite_values_as_the_reference_does(bad, tmp_path):
    """Qiskit's StatevectorSampler / StatevectorEstimator raise on NaN ("Binding to NaN") and
    on infinities; ours must too, instead of returning a distribution of a meaningless circuit,
    and the job layer must refuse before anything is submitted or recorded."""
    from qiskit.primitives import StatevectorSampler

    from qmoe_qiskit.jobs import Ledger, ResultCache, RuntimeSampler, connect
    from qmoe_qiskit.simulation import ExactEstimatorGradient, ExactSamplerGradient

    sel = sel_ansatz(2, 1)
    measured = sel.circuit.measure_all(inplace=False)
    values = _values(sel.circuit, 3)
    values[1, 2] = bad
    expected = _reference_error(lambda: StatevectorSampler().run([(measured, values)]).result())
    assert expected is _reference_error(
        lambda: StatevectorEstimator().run([(sel.circuit, sel.observables[0], values)]).result())
    simulation = NoisySimulation(depolarizing(0.02))
    ledger = Ledger(tmp_path / "ledger.jsonl")
    samplers = [ExactSampler(), ExactSampler(default_shots=100), NoisySampler(simulation),
                RuntimeSampler(connect("fake_manila"), cache=ResultCache(tmp_path / "c"),
                               ledger=ledger)]
    estimators = [ExactEstimator(), NoisyEstimator(simulation),
                  SamplerEstimator(ExactSampler())]
    for sampler in samplers:
        with pytest.raises(expected, match="PUB 0"):
            sampler.run([(measured, values)])
    for estimator in estimators:
        with pytest.raises(expected, match="PUB 0"):
            estimator.run([(sel.circuit, sel.observables[0], values)])
    with pytest.raises(expected, match="parameter value set 1"):
        ExactSamplerGradient().run([measured] * 3, list(values))
    with pytest.raises(expected, match="parameter value set 1"):
        ExactEstimatorGradient().run([sel.circuit] * 3, [sel.observables[0]] * 3, list(values))
    assert not ledger.path.exists() or not ledger.path.read_text().strip()
    values[1, 2] = 0.5  # the same PUB with finite values runs
    assert ExactSampler().run([(measured, values)]).result()[0].data.meas.num_shots is not None
