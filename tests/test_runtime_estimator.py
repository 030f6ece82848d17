"""The job layer's estimator: the runtime's client-side Estimator (TREX, ZNE) through the same
cache, ledger, locks, resume and dry-run cost as the sampler, in local testing mode."""

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from qmoe_qiskit.circuits import sel_ansatz
from qmoe_qiskit.errors import ConfigError, UnsupportedCircuitError
from qmoe_qiskit.jobs import JobOptions, Ledger, ResultCache, RuntimeSampler, connect
from qmoe_qiskit.jobs.estimator import Resilience, RuntimeEstimator, extrapolate
from qmoe_qiskit.noise_models import stand_in
from qmoe_qiskit.simulation import ExactEstimator

OBSERVABLES = [SparsePauliOp("IZ"), SparsePauliOp("ZI")]


def _router(rows=6, seed=1):
    circuit = sel_ansatz(2, 3).circuit
    values = np.random.default_rng(seed).uniform(0, np.pi, (rows, circuit.num_parameters))
    return circuit, values


def _ideal(circuit, values):
    return ExactEstimator().run([(circuit, OBSERVABLES, values[:, None, :])]).result()[0].data.evs


def _estimate(estimator, circuit, values):
    """``EstimatorQNN``'s way: one PUB per observable, same circuit and bindings."""
    results = estimator.run([(circuit, o, values) for o in OBSERVABLES]).result()
    return (np.stack([r.data.evs for r in results], axis=1),
            np.stack([r.data.stds for r in results], axis=1))


def test_zne_brings_z_within_its_std_of_ideal_where_raw_is_many_std_off():
    """Gate noise only (gates x 4, readout exact): the raw ⟨Z⟩ sit many reported std from
    ideal; gate-folding ZNE (the runtime's defaults: factors 1, 3, 5, exponential then linear)
    removes most of the bias, and the typical value lies within about its reported std. The
    median is the statistic: a few of the runtime's fitted stds are far too small (|z| of
    hundreds: a fit covariance from three points)."""
    circuit, values = _router(rows=8)
    ideal = _ideal(circuit, values)
    connection = connect(stand_in("fake_manila", scale=4, readout_scale=0, seed=0))
    out = {}
    for resilience in (Resilience(), Resilience(zne=True)):
        sampler = RuntimeSampler(connection, JobOptions(shots=20000), seed=0)
        evs, stds = _estimate(RuntimeEstimator(sampler, resilience), circuit, values)
        assert sampler.stats()["jobs_submitted"] == 1  # both observables in one PUB, one job
        z = (evs - ideal) / stds
        out[resilience.name] = (np.abs(evs - ideal).mean(), np.median(np.abs(z)))
    (raw_error, raw_z), (zne_error, zne_z) = out["raw"], out["zne"]
    assert raw_z > 5 and zne_z < 2.5, out
    assert zne_error < 0.4 * raw_error, out


def test_the_offline_refit_equals_the_runtimes_own_extrapolation():
    circuit, values = _router(rows=5)
    connection = connect(stand_in("fake_manila", scale=2.5, seed=0))
    for resilience in (Resilience(zne=True), Resilience(trex=True, zne=True)):
        estimator = RuntimeEstimator(RuntimeSampler(connection, JobOptions(shots=2000), seed=0),
                                     resilience)
        evs, _ = _estimate(estimator, circuit, values)
        [pub] = estimator.outcomes
        assert pub.noise["evs_noise_factors"].shape == (5, 2, 3)
        refit, refit_std = extrapolate(pub, resilience.zne_extrapolator)
        np.testing.assert_allclose(refit, evs, atol=1e-6)
        np.testing.assert_allclose(refit, pub.evs, atol=1e-6)
        assert np.all(refit_std > 0)
        linear, _ = extrapolate(pub, "linear")  # another extrapolator, without a job
        assert not np.allclose(linear, evs)
    with pytest.raises(ConfigError, match="ran without ZNE"):
        raw = RuntimeEstimator(RuntimeSampler(connection, JobOptions(shots=100), seed=0))
        _estimate(raw, circuit, values)
        extrapolate(raw.outcomes[0], "linear")


def test_estimator_pubs_are_cached_ledgered_and_priced_like_sampler_pubs(tmp_path):
    circuit, values = _router(rows=4)
    connection = connect("fake_manila")
    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")
    zne = Resilience(zne=True)

    def fresh(resilience, **kwargs):
        sampler = RuntimeSampler(connection, JobOptions(shots=500), cache=cache, ledger=ledger,
                                 seed=3, **kwargs)
        return sampler, RuntimeEstimator(sampler, resilience)

    sampler, estimator = fresh(zne)
    first, _ = _estimate(estimator, circuit, values)
    assert sampler.stats()["jobs_submitted"] == 1
    [entry] = ledger.entries()
    assert entry.status == "done" and entry.bindings == 4
    again_sampler, again = fresh(zne)
    second, _ = _estimate(again, circuit, values)
    assert again_sampler.stats() == {"pubs": 1, "jobs_submitted": 0, "pubs_submitted": 0,
                                     "jobs_fetched": 0, "cache_hits": 1}
    np.testing.assert_array_equal(first, second)
    # another technique is another PUB: its own key, never the cached ZNE values
    other_sampler, other = fresh(Resilience())
    _estimate(other, circuit, values)
    assert other_sampler.stats()["cache_hits"] == 0
    # the dry run prices every noise factor: folded circuits run 1 + 3 + 5 times as long
    planned = {}
    for resilience in (Resilience(), zne):
        plan, estimator = fresh(resilience, plan_only=True)
        evs, _ = _estimate(estimator, circuit, values)
        [record] = plan.records
        planned[resilience.name] = record
        assert record.source in ("planned", "cache") and evs.shape == (4, 2)
    raw, folded = planned["raw"], planned["zne"]
    assert folded.primitive == "estimator (zne)"
    rep = (raw.shot_seconds / (4 * 500)) - raw.duration_s
    np.testing.assert_allclose(folded.shot_seconds,
                               4 * 500 * (9 * raw.duration_s + 3 * rep), rtol=1e-9)


def test_an_estimator_job_interrupted_after_submission_is_resumed_not_resubmitted(
        tmp_path, monkeypatch):
    from qmoe_qiskit.jobs import estimator as estimator_module
    from qmoe_qiskit.jobs import service as service_module

    circuit, values = _router(rows=3)
    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")
    submitted = []
    original = estimator_module.RuntimeEstimator._submit

    def submit_then_die(self, *args, **kwargs):
        submitted.append(original(self, *args, **kwargs))
        raise KeyboardInterrupt  # the service has the job; the ledger has no id for it yet

    monkeypatch.setattr(estimator_module.RuntimeEstimator, "_submit", submit_then_die)
    remote = connect("fake_manila")
    sampler = RuntimeSampler(remote, JobOptions(shots=200), cache=cache, ledger=ledger)
    with pytest.raises(KeyboardInterrupt):
        _estimate(RuntimeEstimator(sampler, Resilience(zne=True)), circuit, values)
    monkeypatch.setattr(estimator_module.RuntimeEstimator, "_submit", original)
    [job] = submitted
    [entry] = ledger.entries()
    assert entry.status == "submitting" and entry.tag

    class Service:  # IBM Quantum as a later process sees it: the job, found by its tag
        def jobs(self, *, job_tags, backend_name, limit):
            return [job] if job_tags == [entry.tag] else []

        def job(self, job_id):
            return job

    later = RuntimeSampler(service_module.Connection(remote.backend, Service()),
                           JobOptions(shots=200), cache=cache, ledger=ledger)
    evs, _ = _estimate(RuntimeEstimator(later, Resilience(zne=True)), circuit, values)
    assert later.stats()["jobs_submitted"] == 0 and later.stats()["jobs_fetched"] == 1
    np.testing.assert_array_equal(evs, np.stack(
        [job.result()[0].data.evs[i] for i in range(2)], axis=1))
    [entry] = ledger.entries()
    assert entry.status == "done"


@pytest.mark.parametrize("kwargs, message", [
    (dict(zne=True, zne_factors=(0.5, 1, 3)), r"must each be >= 1, got \[0.5, 1.0, 3.0\]"),
    (dict(zne=True, zne_factors=(1, 5, 3)), r"strictly increasing, got \[1.0, 5.0, 3.0\]"),
    (dict(zne=True, zne_extrapolator=("cubic",)), r"unknown ZNE extrapolator 'cubic'; valid: "),
    (dict(zne=True, zne_factors=(1, 3), zne_extrapolator=("double_exponential",)),
     r"double_exponential extrapolator needs at least 4 noise factors; got 2"),
])
def test_bad_resilience_options_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as exc:
        Resilience(**kwargs)
    assert "\n" not in str(exc.value)


def test_a_measuring_circuit_is_refused_before_anything_is_submitted(monkeypatch):
    from qmoe_qiskit.jobs import estimator as estimator_module

    def refuse(self, *args, **kwargs):
        raise AssertionError("a job was submitted")

    monkeypatch.setattr(estimator_module.ExecutorEstimator, "run", refuse)
    measured = QuantumCircuit(2, 2)
    measured.h(0)
    measured.measure(0, 0)
    estimator = RuntimeEstimator(RuntimeSampler(connect("fake_manila")), Resilience(zne=True))
    with pytest.raises(UnsupportedCircuitError, match="must not measure"):
        estimator.run([(measured, SparsePauliOp("IZ"))]).result()


# ------------------------------------------------------------------ PEA and PEC
def _pair():
    """A Bell pair behind three CNOTs and an angle: <ZZ> = 1 exactly, whatever the angle."""
    from qiskit.circuit import Parameter

    theta = Parameter("t")
    circuit = QuantumCircuit(2, name="pair")
    circuit.ry(theta, 0)
    for _ in range(3):
        circuit.cx(0, 1)
    return circuit, np.array([[0.3], [1.2], [2.0]])


@pytest.mark.parametrize("resilience", [Resilience(pea=True), Resilience(trex=True, pec=True)],
                         ids=["pea", "trex,pec"])
def test_pea_and_pec_learn_the_layers_noise_in_a_ledgered_cached_job(tmp_path, resilience):
    pytest.importorskip("qiskit_noise_learning")
    circuit, values = _pair()
    target = stand_in("fake_manila", scale=4, readout_scale=0)
    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")

    def fresh(**kwargs):
        sampler = RuntimeSampler(connect(target), JobOptions(shots=500), cache=cache,
                                 ledger=ledger, seed=5, **kwargs)
        return sampler, RuntimeEstimator(sampler, resilience)

    # the dry run prices the learning and the technique before anything is submitted
    plan, estimator = fresh(plan_only=True)
    estimator.run([(circuit, SparsePauliOp("ZZ"), values)]).result()
    learning, pub = sorted(plan.records, key=lambda r: r.primitive != f"noise learner "
                                                                     f"({resilience.name})")
    assert learning.source == pub.source == "planned" and learning.shot_seconds > 0
    assert learning.circuit == "noise learning: pair" and learning.bindings > 100
    if resilience.pec:  # priced at the sampling-overhead cap: 100 x the plain PUB, plus
        # TREX's calibration shots
        rep = getattr(target, "default_rep_delay", None) or 250e-6
        np.testing.assert_allclose(pub.shot_seconds, 3 * 500 * 100 * (pub.duration_s + rep)
                                   + 500 * rep, rtol=1e-9)
    assert not ledger.entries()
    sampler, estimator = fresh()
    data = estimator.run([(circuit, SparsePauliOp("ZZ"), values)]).result()[0].data
    assert np.all(np.isfinite(data.evs)) and np.all(data.stds > 0)
    assert sampler.stats()["jobs_submitted"] == 2  # the learning, then the estimator
    kinds = sorted(e.kind for e in ledger.entries())
    assert kinds == ["noise learner", "pub"] and {e.status for e in ledger.entries()} == {"done"}
    # again: both from the cache, no job
    again, estimator = fresh()
    repeat = estimator.run([(circuit, SparsePauliOp("ZZ"), values)]).result()[0].data
    assert again.stats()["jobs_submitted"] == 0
    np.testing.assert_array_equal(repeat.evs, data.evs)
    # another circuit needs learning of its own: the learning key is the circuit's
    other, estimator = fresh()
    circuit.cx(1, 0)
    estimator.run([(circuit, SparsePauliOp("ZZ"), values)]).result()
    assert [r.source for r in other.records if r.primitive.startswith("noise")] == ["submitted"]


def test_a_learning_job_interrupted_after_submission_is_resumed_not_resubmitted(
        tmp_path, monkeypatch):
    pytest.importorskip("qiskit_noise_learning")
    from qmoe_qiskit.jobs import estimator as estimator_module

    circuit, values = _pair()
    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")
    connection = connect(stand_in("fake_manila", scale=2))
    real = estimator_module.learned_payload
    calls = []

    def die_while_waiting(results):
        calls.append(1)
        raise KeyboardInterrupt  # the job ran; this process died before keeping its result

    monkeypatch.setattr(estimator_module, "learned_payload", die_while_waiting)
    sampler = RuntimeSampler(connection, JobOptions(shots=300), cache=cache, ledger=ledger)
    with pytest.raises(KeyboardInterrupt):
        RuntimeEstimator(sampler, Resilience(pec=True)).run(
            [(circuit, SparsePauliOp("ZZ"), values)]).result()
    [entry] = ledger.entries()  # the estimator's job was not recorded: it waits on learning
    assert entry.kind == "noise learner" and entry.status == "submitted" and entry.job_id
    monkeypatch.setattr(estimator_module, "learned_payload", real)
    later = RuntimeSampler(connection, JobOptions(shots=300), cache=cache, ledger=ledger)
    RuntimeEstimator(later, Resilience(pec=True)).run(
        [(circuit, SparsePauliOp("ZZ"), values)]).result()
    learning = [r for r in later.records if r.primitive.startswith("noise")]
    assert [r.source for r in learning] == ["fetched"] and learning[0].job_id == entry.job_id
    assert later.stats()["jobs_submitted"] == 1  # the estimator's job only


@pytest.mark.parametrize("kwargs, message", [
    (dict(zne=True, pea=True), "zne (gate folding) and pea (probabilistic error amplification)"),
    (dict(pec=True, zne=True), "pec cancels the learned noise; it does not combine with zne"),
    (dict(pec=True, pec_max_overhead=0.5), "sampling-overhead cap must be a number >= 1"),
])
def test_incompatible_learned_techniques_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Resilience(**kwargs)


def test_a_wide_devices_twirled_estimator_job_runs_on_its_stand_in():
    """On fake_brisbane the Estimator twirls and measures all 127 qubits: the stand-in runs
    that as a matrix product state (a state vector of them cannot be held) and TREX still
    brings <ZZ> of a Bell pair near 1."""
    circuit = QuantumCircuit(2, name="bell")
    circuit.h(0)
    circuit.cx(0, 1)
    target = stand_in("fake_brisbane", scale=1.0)
    sampler = RuntimeSampler(connect(target), JobOptions(shots=400), seed=2)
    data = RuntimeEstimator(sampler, Resilience(trex=True)).run(
        [(circuit, SparsePauliOp("ZZ"))]).result()[0].data
    assert abs(float(data.evs) - 1) < 5 * float(data.stds) + 0.05
