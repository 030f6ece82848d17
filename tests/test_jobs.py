"""The job layer: transpilation, runtime submission in local testing mode, cache, ledger."""

import copy
import json
import logging

import numpy as np
import pytest
import torch
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.transpiler import InstructionProperties
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider.local_runtime_job import LocalRuntimeJob

from qmoe_qiskit.backends import get_backend
from qmoe_qiskit.circuits import paper_ansatz, sel_ansatz
from qmoe_qiskit.errors import AccountError, ConfigError, JobError
from qmoe_qiskit.jobs import (
    JobOptions,
    Ledger,
    ResultCache,
    RuntimeSampler,
    connect,
    pub_key,
)
from qmoe_qiskit.jobs import service as service_module
from qmoe_qiskit.models import QuantumRouter
from qmoe_qiskit.primitives import SamplerEstimator
from qmoe_qiskit.simulation import ExactSampler
from qmoe_qiskit.transpile import compile_for_backend, low_error_layout

RNG = np.random.default_rng(11)


def _values(circuit, rows=6):
    return RNG.uniform(0, np.pi, (rows, circuit.num_parameters))


def _noiseless(name="fake_manila"):
    """An ideal simulator with the device's coupling map and ISA (runs in local mode)."""
    sim = AerSimulator.from_backend(get_backend(name))
    sim.set_options(noise_model=None, seed_simulator=5)
    return sim


@pytest.fixture
def store(tmp_path):
    return ResultCache(tmp_path / "cache"), Ledger(tmp_path / "cache" / "ledger.jsonl")


# ------------------------------------------------------------------ transpile
def test_too_wide_circuits_and_bad_layouts_are_rejected():
    backend = get_backend("fake_manila")
    with pytest.raises(ConfigError, match="6 qubits but fake_manila has only 5"):
        compile_for_backend(QuantumCircuit(6), backend)
    circuit = paper_ansatz(2, 1, num_outputs=4).circuit
    for layout, message in [((0,), "names 1 physical qubits"), ((1, 1), "twice"),
                            ((0, 9), r"\[9\] are not on fake_manila")]:
        with pytest.raises(ConfigError, match=message):
            compile_for_backend(circuit, backend, initial_layout=layout)
    with pytest.raises(ConfigError, match="optimization_level"):
        JobOptions(optimization_level=4)
    with pytest.raises(ConfigError, match="shots"):
        JobOptions(shots=0)


def test_user_layout_is_honoured_and_default_layout_avoids_bad_qubits():
    backend = get_backend("fake_manila")
    circuit = paper_ansatz(2, 2, num_outputs=4).circuit
    user = compile_for_backend(circuit, backend, initial_layout=(1, 0))
    assert user.layout == [1, 0] and user.layout_method == "user"
    assert user.measured == [1, 0]  # clbit i still reads logical qubit i
    best = low_error_layout(circuit, backend)
    assert best is not None and compile_for_backend(circuit, backend).layout == best
    # make the chosen qubits terrible: the default placement must move away from them
    worse = copy.deepcopy(backend)
    for q in best:
        for gate in ("sx", "x", "measure"):
            old = worse.target[gate][(q,)]
            worse.target.update_instruction_properties(
                gate, (q,), InstructionProperties(duration=old.duration, error=0.2))
    moved = low_error_layout(circuit, worse)
    assert moved is not None and not set(moved) & set(best)


# ------------------------------------------------------------------ the SamplerQNN layout guard
@pytest.mark.parametrize("ansatz", ["paper", "sel"])
def test_router_on_isa_circuit_with_nontrivial_layout_matches_ideal(ansatz):
    """SamplerQNN given a transpiled circuit with a non-trivial layout returns wrong
    probabilities; the runtime primitives keep the logical circuit, so outputs stay right."""
    torch.manual_seed(3)
    router = QuantumRouter(2, 4, ansatz=ansatz, num_layers=2)
    x = torch.rand(24, 2) * 3
    with torch.no_grad():
        ideal = router.layer(x).numpy()
    shots = 4000
    sampler = RuntimeSampler(connect(_noiseless()), JobOptions(shots=shots, initial_layout=(4, 2)))
    router.layer.set_primitive(sampler if ansatz == "paper" else SamplerEstimator(sampler))
    with torch.no_grad():
        got = router.layer(x).numpy()
    record = sampler.records[0]
    assert record.layout == [4, 2] and record.layout_method == "user"
    if ansatz == "paper":  # probabilities: binomial standard error
        sigma = np.sqrt(np.clip(ideal * (1 - ideal), 1e-4, None) / shots)
    else:  # <Z>: standard error of a ±1 variable
        sigma = np.sqrt(np.clip(1 - ideal**2, 1e-4, None) / shots)
    assert np.all(np.abs(got - ideal) < 5 * sigma + 1e-6)
    assert np.abs(got - ideal).max() > 0  # sampled, not exact: the check has teeth


# ------------------------------------------------------------------ cache and ledger
def test_repeated_experiment_submits_nothing(store):
    cache, ledger = store
    values = _values(paper_ansatz(2, 2, num_outputs=2).circuit)
    first = RuntimeSampler(connect("fake_manila"), JobOptions(shots=300), cache=cache,
                           ledger=ledger)
    a = first.run([(paper_ansatz(2, 2, num_outputs=2).circuit, values)]).result()[0]
    assert first.stats() == {"pubs": 1, "jobs_submitted": 1, "pubs_submitted": 1,
                             "jobs_fetched": 0, "cache_hits": 0}
    # a separately built, identical circuit: same key, answered from the cache
    second = RuntimeSampler(connect("fake_manila"), JobOptions(shots=300), cache=cache,
                            ledger=ledger)
    b = second.run([(paper_ansatz(2, 2, num_outputs=2).circuit, values)]).result()[0]
    assert second.stats()["jobs_submitted"] == 0 and second.stats()["cache_hits"] == 1
    np.testing.assert_array_equal(a.data.meas.array, b.data.meas.array)
    assert second.records[0].job_id == first.records[0].job_id
    [entry] = ledger.entries()
    assert entry.status == "done" and entry.key == first.records[0].key


def test_cache_key_follows_everything_that_decides_the_result():
    backend = get_backend("fake_manila")
    isa = compile_for_backend(paper_ansatz(2, 1, num_outputs=2).circuit, backend).isa
    values = _values(isa)
    base = dict(shots=100, backend="fake_manila", calibration="t0", options={"twirling": False})
    key = pub_key(isa, values, **base)
    assert pub_key(isa, values.copy(), **base) == key
    changed = [pub_key(isa, values + 1e-9, **base),
               pub_key(isa, values[:-1], **base),
               pub_key(isa, values, **{**base, "shots": 101}),
               pub_key(isa, values, **{**base, "backend": "fake_lima"}),
               pub_key(isa, values, **{**base, "calibration": "t1"}),
               pub_key(isa, values, **{**base, "options": {"twirling": True}}),
               pub_key(isa.copy_empty_like(), np.zeros((6, 0)), **base)]
    assert len({key, *changed}) == len(changed) + 1


def test_corrupt_cache_entry_is_reported_and_recomputed(store, caplog):
    cache, ledger = store
    circuit, values = paper_ansatz(2, 1, num_outputs=2).circuit, _values(
        paper_ansatz(2, 1, num_outputs=2).circuit)
    RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger).run([(circuit, values)])
    [path] = list((cache.root / "results").rglob("*.json"))
    key = path.stem
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # truncated
    again = RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger)
    with caplog.at_level(logging.WARNING):
        again.run([(circuit, values)])
    assert "corrupt" in caplog.text and cache.corrupt == [key]
    assert again.stats()["cache_hits"] == 0
    assert cache.get(key) is not None  # rewritten whole
    # a payload edited in place fails its checksum
    entry = json.loads(path.read_text())
    entry["payload"] = entry["payload"].replace("0", "1", 1)
    path.write_text(json.dumps(entry))
    assert cache.get(key) is None and not path.exists()


def test_interrupted_run_resumes_by_fetching_its_job(store, monkeypatch):
    cache, ledger = store
    circuit = paper_ansatz(2, 2, num_outputs=4).circuit
    values = _values(circuit)
    original = LocalRuntimeJob.result
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # Ctrl-C while waiting on the job
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LocalRuntimeJob, "result", interrupted)
    first = RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger)
    with pytest.raises(KeyboardInterrupt):
        first.run([(circuit, values)])
    [entry] = ledger.entries()
    assert entry.status == "submitted"  # recorded before the wait
    resumed = RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger)
    resumed.run([(circuit, values)])
    assert resumed.stats()["jobs_submitted"] == 0 and resumed.stats()["jobs_fetched"] == 1
    assert resumed.records[0].job_id == entry.job_id
    assert [e.status for e in ledger.entries()] == ["done"]


def test_local_job_of_an_ended_process_is_marked_lost_and_resubmitted(store, monkeypatch):
    cache, ledger = store
    circuit = paper_ansatz(2, 1, num_outputs=2).circuit
    values = _values(circuit)
    monkeypatch.setattr(LocalRuntimeJob, "result",
                        lambda self, *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        RuntimeSampler(connect("fake_manila"), ledger=ledger, cache=cache).run([(circuit, values)])
    monkeypatch.undo()
    service_module._LOCAL_JOBS.clear()  # as if the process had ended
    again = RuntimeSampler(connect("fake_manila"), ledger=ledger, cache=cache)
    again.run([(circuit, values)])
    assert again.stats()["jobs_submitted"] == 1
    assert sorted(e.status for e in ledger.entries()) == ["done", "lost"]


def test_failed_job_is_recorded_and_raises_a_clear_error(store, monkeypatch):
    cache, ledger = store
    circuit = paper_ansatz(2, 1, num_outputs=2).circuit

    token = "tok-never-shown-42"
    monkeypatch.setenv("QISKIT_IBM_TOKEN", token)

    def broken(self, *args, **kwargs):
        raise RuntimeError(f"backend went offline (request signed with {token})")

    monkeypatch.setattr(LocalRuntimeJob, "result", broken)
    with pytest.raises(JobError, match="failed: backend went offline") as info:
        RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger).run(
            [(circuit, _values(circuit))])
    [entry] = ledger.entries()
    assert entry.status == "failed" and "backend went offline" in entry.message
    assert token not in str(info.value) and token not in ledger.path.read_text()
    assert not list(cache.root.rglob("*.json"))  # nothing cached from a failed job


def test_ledger_skips_a_line_cut_short_by_a_crash(tmp_path, store):
    cache, ledger = store
    circuit = paper_ansatz(2, 1, num_outputs=2).circuit
    RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger).run(
        [(circuit, _values(circuit))])
    with open(ledger.path, "a") as handle:
        handle.write('{"job_id": "abc", "backe')
    assert [e.status for e in ledger.entries()] == ["done"]


# ------------------------------------------------------------------ estimator, plans, options
def test_estimator_measures_all_observables_of_a_binding_set_once():
    sel = sel_ansatz(3, 1)
    values = _values(sel.circuit, 10)
    sampler = RuntimeSampler(connect(_noiseless()), JobOptions(shots=20000))
    result = SamplerEstimator(sampler).run(
        [(sel.circuit, obs, values) for obs in sel.observables]).result()
    assert sampler.stats()["pubs"] == 1  # three observables, one measurement
    exact = ExactSampler(default_shots=None)
    for q, pub in enumerate(result):
        probs = exact.run([(_measure_all(sel.circuit), values)]).result()[0].data.c.probabilities
        z = (probs * (1 - 2 * ((np.arange(8) >> q) & 1))).sum(axis=1)
        assert np.all(np.abs(pub.data.evs - z) < 5 * pub.data.stds + 1e-3)
        assert np.all(pub.data.stds > 0)


def _measure_all(circuit):
    measured = circuit.copy()
    measured.add_register(ClassicalRegister(circuit.num_qubits, "c"))
    measured.measure(range(circuit.num_qubits), range(circuit.num_qubits))
    return measured


def test_plan_only_submits_nothing_and_estimates_shot_time(store):
    cache, ledger = store
    circuit = paper_ansatz(2, 2, num_outputs=2).circuit
    sampler = RuntimeSampler(connect("fake_brisbane"), JobOptions(shots=500), cache=cache,
                             ledger=ledger, plan_only=True)
    result = sampler.run([(circuit, _values(circuit, 40))]).result()[0]
    assert result.data.meas.shape == (40,)
    assert result.data.meas.num_shots == 1  # a plan allocates no shots; the record counts them
    [record] = sampler.records
    assert record.source == "planned" and record.bindings == 40
    rep_delay = get_backend("fake_brisbane").default_rep_delay
    assert record.shot_seconds == pytest.approx(40 * 500 * (record.duration_s + rep_delay))
    assert ledger.entries() == [] and not cache.root.exists()


def test_twirling_and_dynamical_decoupling_reach_the_runtime(monkeypatch):
    from qiskit_ibm_runtime.executor_sampler import prepare as runtime_prepare

    applied = []
    original = runtime_prepare.apply_dynamical_decoupling

    def spy(*args, **kwargs):
        applied.append(kwargs["dd_options"])
        return original(*args, **kwargs)

    monkeypatch.setattr(runtime_prepare, "apply_dynamical_decoupling", spy)
    circuit = paper_ansatz(2, 1, num_outputs=2).circuit
    plain = RuntimeSampler(connect("fake_manila"), JobOptions(shots=200))
    assert plain.run([(circuit, _values(circuit, 3))]).result()[0].metadata.get(
        "num_randomizations", 1) == 1
    assert applied == []  # off unless asked for
    options = JobOptions(shots=200, twirling=True, dynamical_decoupling=True, dd_sequence="XY4")
    sampler = RuntimeSampler(connect("fake_manila"), options)
    result = sampler.run([(circuit, _values(circuit, 3))]).result()[0]
    assert result.metadata["num_randomizations"] > 1  # twirled
    [dd] = applied  # the runtime inserted the XY4 sequence into the submitted circuits
    assert dd.enable and dd.sequence_type == "XY4"
    with pytest.raises(ConfigError, match="valid sequences: 'XX', 'XpXm', 'XY4'"):
        JobOptions(dd_sequence="XZ")


def test_a_job_the_service_cannot_return_is_one_line_and_kept(tmp_path, capsys, monkeypatch):
    from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

    from qmoe_qiskit.cli import main
    from qmoe_qiskit.jobs import LedgerEntry
    from qmoe_qiskit.jobs.manage import fetch_results, refresh_status

    token = "secret-token-never-printed"
    monkeypatch.setenv("QISKIT_IBM_TOKEN", token)

    class GoneService:
        def job(self, job_id):
            raise RuntimeJobNotFound(f"Job not found: {job_id}\n(request with {token})")

    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")
    entry = ledger.record(LedgerEntry(job_id="d0gone", backend="ibm_brisbane", key="k" * 64,
                                      status="submitted", submitted="t", updated="t",
                                      local=False))
    [(_, state)] = refresh_status(ledger, [entry], GoneService)
    assert state.startswith("unavailable: job d0gone cannot be fetched from IBM Quantum")
    [(_, state)] = fetch_results(ledger, cache, [entry], GoneService)
    assert "Job not found: d0gone" in state and token not in state
    assert [e.status for e in ledger.entries()] == ["submitted"]  # kept, not marked lost
    monkeypatch.setattr(service_module, "runtime_service", lambda **_: GoneService())
    for action in ("status", "fetch"):
        assert main(["jobs", action, "--cache", str(tmp_path / "c")]) == 1
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and token not in captured.out + captured.err
        assert captured.out.count("\n") == 1 and "unavailable" in captured.out
        assert captured.err.startswith("qmoe jobs: error:") and captured.err.count("\n") == 1


def test_jobs_status_asks_once_per_job_and_prints_one_line_per_job(tmp_path, capsys,
                                                                   monkeypatch):
    from qmoe_qiskit.cli import main
    from qmoe_qiskit.jobs import LedgerEntry

    asked = []

    class Job:
        def __init__(self, job_id):
            self.job_id = job_id

        def status(self):
            asked.append(self.job_id)
            return "RUNNING"

    class Service:
        def job(self, job_id):
            return Job(job_id)

    ledger = Ledger(tmp_path / "ledger.jsonl")
    for job_id, pubs in (("d0three", 3), ("d0one", 1)):
        for index in range(pubs):
            ledger.record(LedgerEntry(job_id=job_id, backend="ibm_brisbane",
                                      key=f"{job_id}{index}", index=index,
                                      status="submitted", submitted="t",
                                      updated="t", local=False))
    monkeypatch.setattr(service_module, "runtime_service", lambda **_: Service())
    assert main(["jobs", "status", "--cache", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert asked == ["d0three", "d0one"]
    assert len(lines) == 2 and lines[0].startswith("d0three") and "3 PUBs  RUNNING" in lines[0]
    assert lines[1].startswith("d0one") and "1 PUB  RUNNING" in lines[1]


def test_jobs_without_an_action_is_one_line_and_ids_are_optional(tmp_path, capsys):
    from qmoe_qiskit.cli import main

    assert main(["jobs", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qmoe jobs: error: give an action: list, status or fetch")
    assert err.count("\n") == 1 and "required" not in err
    assert main(["jobs", "list", "--cache", str(tmp_path)]) == 0


def test_the_command_line_starts_without_qiskit_torch_or_scikit_learn(tmp_path):
    # qmoe --help and qmoe jobs list import only the standard library and the ledger
    import subprocess
    import sys

    code = ("import sys; from qmoe_qiskit.cli import build_parser, main; build_parser();"
            f"main(['jobs', 'list', '--cache', {str(tmp_path)!r}]);"
            "print(sorted(m for m in ('torch', 'qiskit', 'sklearn', 'qiskit_ibm_runtime', "
            "'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "[]"


# ------------------------------------------------------------------ accounts
def test_missing_or_rejected_account_fails_clearly_without_the_token(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "QISKIT_IBM_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(AccountError, match="no IBM Quantum account found.*save_account"):
        connect("ibm_brisbane")
    token = "very-secret-token-1234567890"
    monkeypatch.setenv("QISKIT_IBM_TOKEN", token)

    def refusing_service(**kwargs):  # IBM Quantum answers, and refuses the token
        from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

        raise IBMNotAuthorizedError(f"401 Client Error: Unauthorized (apikey {token})")

    with monkeypatch.context() as patch:
        patch.setattr(service_module, "QiskitRuntimeService", refusing_service)
        with pytest.raises(AccountError) as info:
            connect("ibm_brisbane")
    assert token not in str(info.value) and "did not accept" in str(info.value)
    with pytest.raises(ConfigError, match="valid channels"):
        connect("ibm_brisbane", channel="ibm_quantum")
    with pytest.raises(ConfigError, match="fake_manila"):
        connect("fake_nowhere")


# ------------------------------------------------------------------ one job per pass, limits
def test_a_pass_goes_out_as_one_job_and_large_pubs_are_split_at_the_limit(store):
    """Every job holds at most max_executions (bindings x shots); a PUB over it is split by
    rows, its slices cached one by one, and the answer is the PUB's rows in order."""
    from qmoe_qiskit.jobs.layer import pack

    cache, ledger = store
    big, small = paper_ansatz(2, 2, num_outputs=4).circuit, sel_ansatz(2, 1).circuit
    small.measure_all()
    xb, xs = _values(big, 25), _values(small, 5)
    ideal = ExactSampler(default_shots=None).run([(big, xb)]).result()[0]
    sampler = RuntimeSampler(connect(_noiseless()), JobOptions(shots=400), cache=cache,
                             ledger=ledger, max_executions=4000, seed=3)

    def forward():
        return sampler.run([(big, xb), (small, xs)]).result()

    a, b = sampler.run_together(forward)
    assert a.data.meas.shape == (25,) and b.data.meas.shape == (5,)
    counts = a.data.meas.get_int_counts
    freq = np.array([[counts(i).get(k, 0) for k in range(4)] for i in range(25)]) / 400
    exact = np.array([[ideal.data.meas.get_probabilities(i).get(format(k, "02b"), 0)
                       for k in range(4)] for i in range(25)])  # same rows, same order
    assert np.abs(freq - exact).sum(axis=1).max() / 2 < 0.12
    # slices of 10, 10 and 5 rows (4000, 4000, 2000 executions) and the small PUB (2000)
    assert [r.bindings for r in sampler.records] == [10, 10, 5, 5]
    assert [r.circuit.endswith(s) for r, s in zip(sampler.records[:3],
                                                  ("[0:10]", "[10:20]", "[20:25]"))] == [True] * 3
    entries = ledger.entries()
    jobs = {}
    for e in entries:
        jobs.setdefault(e.job_id, []).append(e)
    assert len(jobs) == 3 == sampler.stats()["jobs_submitted"]
    assert all(sum(e.bindings * e.shots for e in es) <= 4000 for es in jobs.values())
    assert [len(es) for es in jobs.values()] == [1, 1, 2]  # the last job carries two PUBs
    assert pack([4000, 4000, 2000, 2000], 4000) == [[0], [1], [2, 3]]
    # the PUB's outcome, as a later analysis reads it, is whole
    assert len(sampler.outcomes) == 2 and sampler.outcomes[0].values.shape == (25, 6)
    assert sampler.outcomes[0].counts["meas"].sum(axis=1).tolist() == [400] * 25
    # a repeat is four cache hits and the same counts
    again = RuntimeSampler(connect(_noiseless()), JobOptions(shots=400), cache=cache,
                           ledger=ledger, max_executions=4000)
    c, _ = again.run_together(lambda: again.run([(big, xb), (small, xs)]).result())
    assert again.stats()["cache_hits"] == 4 and again.stats()["jobs_submitted"] == 0
    np.testing.assert_array_equal(c.data.meas.array, a.data.meas.array)


def test_a_pass_without_a_cache_still_runs_as_one_job(store):
    _, ledger = store
    big = paper_ansatz(2, 2, num_outputs=4).circuit
    other = paper_ansatz(2, 1, num_outputs=2).circuit
    pubs = [(big, _values(big, 3)), (other, _values(other, 4))]
    sampler = RuntimeSampler(connect(_noiseless()), JobOptions(shots=100), ledger=ledger)
    results = sampler.run_together(lambda: sampler.run(pubs).result())
    assert [r.data.meas.num_shots for r in results] == [100, 100]
    assert sampler.stats() == {"pubs": 2, "jobs_submitted": 1, "pubs_submitted": 2,
                               "jobs_fetched": 0, "cache_hits": 0}
    assert [e.index for e in ledger.entries()] == [0, 1]


def test_max_executions_below_one_binding_is_refused():
    with pytest.raises(ConfigError, match="below the shots of one binding"):
        RuntimeSampler(connect("fake_manila"), JobOptions(shots=500), max_executions=100)
