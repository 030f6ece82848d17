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


def _pub_fields(pub):
    fields = [pub.circuit, pub.shape, pub.parameter_values.as_array(pub.circuit.parameters)
              if pub.circuit.num_parameters else None]
    if hasattr(pub, "observables"):
        fields += [pub.observables.tolist(), pub.precision]
    else:
        fields += [pub.shots]
    return fields


def _same_outcome(ours, theirs):
    """Both return equal PUBs, or both raise the same exception with the same message."""
    try:
        expected = theirs()
    except Exception as exc:  # the reference's own error, whatever it is
        with pytest.raises(type(exc)) as info:
            ours()
        assert str(info.value) == str(exc)
        return
    got = ours()
    for a, b in zip(_pub_fields(got), _pub_fields(expected)):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


def test_fast_pub_coercion_gives_qiskits_pubs_and_qiskits_errors():
    """The QNNs' PUBs skip Qiskit's per-call conversion; every PUB-like, valid or not, must
    come out as ``EstimatorPub.coerce`` / ``SamplerPub.coerce`` make it or fail as they fail."""
    from qiskit.primitives.containers.estimator_pub import EstimatorPub
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    from qmoe_qiskit.primitives.pubs import coerce_estimator_pub, coerce_sampler_pub

    sel = sel_ansatz(2, 2)
    circuit, obs = sel.circuit, sel.observables[0]
    measured = paper_ansatz(2, 2, num_outputs=2).circuit
    p = circuit.num_parameters
    values = _values(circuit, 6)
    estimator_pubs = [
        (circuit, obs, values), (circuit, obs, values.reshape(2, 3, p)), (circuit, obs, values[0]),
        (circuit, obs, values.tolist()), (circuit, [obs, obs], values[:2]),
        (circuit, obs, values[:, :-1]), (circuit, SparsePauliOp("ZZZ"), values),
        (circuit, "ZI", values), (circuit, obs, values.astype(np.float32)),
        (circuit, obs, values, 0.1), (circuit, obs), circuit, (circuit,),
    ]
    for pub in estimator_pubs:
        for precision in (None, 0.0, 0.25, -1.0, "0.1"):
            _same_outcome(lambda: coerce_estimator_pub(pub, precision),
                          lambda: EstimatorPub.coerce(pub, precision))
    fast = [coerce_estimator_pub((circuit, obs, values), None) for _ in range(2)]
    assert fast[0].observables is fast[1].observables  # the fast path was taken
    m = measured.num_parameters
    sampler_values = RNG.uniform(0, 1, (4, m))
    sampler_pubs = [(measured, sampler_values), (measured, sampler_values.reshape(2, 2, m)),
                    (measured, sampler_values[:, 1:]), (measured, sampler_values, 10),
                    (measured, sampler_values[0]), measured, (measured,)]
    for pub in sampler_pubs:
        for shots in (None, 1, 100, 0, -3, True, 2.5):
            _same_outcome(lambda: coerce_sampler_pub(pub, shots),
                          lambda: SamplerPub.coerce(pub, shots))


def test_gradients_check_an_array_of_value_sets_as_they_check_a_list():
    """The QNNs hand the gradients one array for all rows, checked at once: the same errors
    as row by row, naming the same row."""
    from qmoe_qiskit.simulation import ExactEstimatorGradient

    sel = sel_ansatz(2, 1)
    obs = sel.observables[0]
    values = _values(sel.circuit, 3)
    gradient = ExactEstimatorGradient()
    grads = gradient.run([sel.circuit] * 3, [obs] * 3, values).result().gradients
    listed = gradient.run([sel.circuit] * 3, [obs] * 3, list(values)).result().gradients
    np.testing.assert_allclose(np.array(grads), np.array(listed), atol=1e-14)
    for bad, error in ((np.nan, RuntimeError), (np.inf, ZeroDivisionError)):
        broken = values.copy()
        broken[2, 1] = bad
        for given in (broken, list(broken)):
            with pytest.raises(error, match="parameter value set 2"):
                gradient.run([sel.circuit] * 3, [obs] * 3, given)
    with pytest.raises(ValueError, match=rf"number of values \({sel.circuit.num_parameters - 1}\)"):
        gradient.run([sel.circuit] * 3, [obs] * 3, values[:, 1:])
    with pytest.raises(ValueError, match="not all in the circuit"):
        gradient.run([sel.circuit] * 3, [obs] * 3, values,
                     parameters=[list(paper_ansatz(2, 1).circuit.parameters)] * 3)
