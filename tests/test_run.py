"""`qmoe run` and `qmoe jobs` end to end in the runtime's local testing mode."""

import dataclasses
import json

import numpy as np
import pytest
from qiskit_ibm_runtime.fake_provider.local_runtime_job import LocalRuntimeJob

from qmoe_qiskit.cli import main
from qmoe_qiskit.circuits import paper_ansatz
from qmoe_qiskit.jobs import Ledger, ResultCache, RuntimeSampler, connect
from qmoe_qiskit.jobs.manage import fetch_results, refresh_status
from qmoe_qiskit.jobs.service import _LOCAL_JOBS


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("QMOE_CACHE_DIR", str(root))
    return root


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_run_writes_results_and_a_repeat_costs_nothing(q_experts, cache, tmp_path, capsys):
    argv = ["run", "--model", str(q_experts), "--backend", "fake_manila", "--limit", "30",
            "--shots", "256", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "r1")]) == 0
    first = _results(tmp_path / "r1")
    assert first["backend"] == "fake_manila" and first["shots"] == 256
    # one forward pass is one job: the router's and both experts' PUBs go together
    assert first["jobs_submitted"] == 1 and first["pubs_submitted"] == 3
    assert first["cache_hits"] == 0 and first["jobs"] == 1
    assert len({pub["job_id"] for pub in first["pubs"]}) == 1
    assert [pub["job_pubs"] for pub in first["pubs"]] == [3, 3, 3]
    assert first["qpu_seconds"] == 0.0  # local testing mode charges nothing (job.usage())
    assert first["estimated_qpu_seconds"] > 0
    assert first["samples"] == 30 and len(first["router"]["distributions"]) == 30
    assert all(abs(sum(row) - 1) < 1e-6 for row in first["router"]["distributions"])
    agree = [p == y for p, y in zip(first["predictions"], first["labels"])]
    assert first["accuracy"] == pytest.approx(sum(agree) / 30)
    assert 0 < first["mean_tvd_to_ideal"] < 0.5
    measured = np.asarray(first["router"]["distributions"])  # the expert load, measured
    share = np.bincount(measured.argmax(axis=1), minlength=measured.shape[1]) / 30
    assert first["routing"]["measured"]["load"] == pytest.approx(share.tolist())
    assert set(first["routing"]) == {"measured", "ideal"}
    assert "Expert load (the share of samples" in (tmp_path / "r1" / "report.md").read_text()
    for name in ("report.md", "router_vs_ideal.png"):
        assert (tmp_path / "r1" / name).exists()
    assert main([*argv, "--out", str(tmp_path / "r2")]) == 0
    second = _results(tmp_path / "r2")
    assert second["jobs_submitted"] == 0 and second["cache_hits"] == 3
    assert second["accuracy"] == first["accuracy"]
    assert second["router"] == first["router"]
    assert "cache hits 3" in capsys.readouterr().out


def test_dry_run_prints_the_cost_and_submits_nothing(q_experts, cache, tmp_path, capsys):
    out = tmp_path / "dry"
    assert main(["run", "--model", str(q_experts), "--backend", "fake_brisbane", "--limit", "20",
                 "--shots", "100", "--dry-run", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nothing submitted" in text
    assert "circuits: 3 (3 not cached, in 1 job), bindings: 60" in text
    assert "shots: 6,000" in text and "estimated QPU time:" in text
    assert not out.exists() and not (cache / "ledger.jsonl").exists()


def test_interrupted_run_resumes_by_fetching(q_experts, cache, tmp_path, capsys, monkeypatch):
    original = LocalRuntimeJob.result
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LocalRuntimeJob, "result", interrupted)
    argv = ["run", "--model", str(q_experts), "--backend", "fake_manila", "--limit", "12",
            "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["jobs", "list"]) == 0
    listing = capsys.readouterr().out
    assert "submitted" in listing and "fake_manila" in listing
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    resumed = _results(tmp_path / "b")
    # the interrupted pass's one job carried all three PUBs: fetched, nothing paid twice
    assert resumed["jobs_fetched"] == 1 and resumed["jobs_submitted"] == 0
    assert [pub["source"] for pub in resumed["pubs"]] == ["fetched"] * 3
    entries = Ledger(cache / "ledger.jsonl").entries()
    assert len(entries) == 3 and len({e.job_id for e in entries}) == 1
    assert sorted(e.index for e in entries) == [0, 1, 2]
    assert all(e.status == "done" for e in entries)


def test_jobs_fetch_brings_a_remote_result_into_the_cache(tmp_path):
    """`qmoe jobs fetch` on an IBM Quantum job: stand the service in with one whose job() hands
    back a finished local job, as the real service hands back a finished remote one."""
    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")
    circuit = paper_ansatz(2, 1, num_outputs=2).circuit
    values = [[0.1, 0.2, 0.3, 0.4]]
    sampler = RuntimeSampler(connect("fake_manila"), ledger=ledger)  # no cache: ledger only
    sampler.run([(circuit, values)])
    [entry] = ledger.entries()
    remote = ledger.record(dataclasses.replace(entry, local=False, status="submitted"))
    job = _LOCAL_JOBS[entry.job_id]
    service = type("Service", (), {"job": lambda self, job_id: job})
    [(state_entry, state)] = refresh_status(ledger, [remote], service)
    assert state == "DONE"
    [(_, outcome)] = fetch_results(ledger, cache, [remote], service)
    assert outcome == "fetched into the cache" and cache.get(entry.key) is not None
    again = RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger)
    again.run([(circuit, values)])
    assert again.stats()["cache_hits"] == 1 and again.stats()["jobs_submitted"] == 0
    [(_, outcome)] = fetch_results(ledger, cache, [remote], service)
    assert outcome == "already cached"


def test_jobs_fetch_brings_a_remote_noise_learning_result_into_the_cache(tmp_path):
    """A PEC run's noise-learning job, fetched by `qmoe jobs fetch`: its maps land in the cache
    as the run keeps them (rebuilt exactly), where the next run reads them."""
    pytest.importorskip("qiskit_noise_learning")
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp

    from qmoe_qiskit.jobs.estimator import Resilience, RuntimeEstimator

    circuit = QuantumCircuit(2, name="pair")
    circuit.h(0)
    circuit.cx(0, 1)
    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")
    sampler = RuntimeSampler(connect("fake_manila"), ledger=ledger)  # no cache: ledger only
    RuntimeEstimator(sampler, Resilience(pec=True)).run(
        [(circuit, SparsePauliOp("ZZ"))]).result()
    [entry] = [e for e in ledger.entries() if e.kind == "noise learner"]
    assert entry.status == "done" and cache.get(entry.key) is None
    remote = ledger.record(dataclasses.replace(entry, local=False, status="submitted"))
    job = _LOCAL_JOBS[entry.job_id]
    service = type("Service", (), {"job": lambda self, job_id: job})
    [(_, outcome)] = fetch_results(ledger, cache, [remote], service)
    assert outcome == "fetched into the cache"
    from qmoe_qiskit.jobs.learning import learned_maps

    stored = learned_maps(cache.get(entry.key))
    assert stored and stored == job.result().to_pauli_lindblad_maps()  # exactly, round trip
    [(_, outcome)] = fetch_results(ledger, cache, [remote], service)
    assert outcome == "already cached"


@pytest.mark.parametrize("argv, message", [
    (["--backend", "fake_nowhere"], "fake_manila"),
    (["--backend", "fake_manila", "--limit", "0"], "samples must be >= 1"),
    (["--backend", "fake_manila", "--limit", "100000"], "test split has 40"),
    (["--backend", "fake_manila", "--shots", "0"], "shots must be a positive integer"),
    (["--backend", "fake_manila", "--layout", "0"], "give one per logical qubit"),
    (["--backend", "ibm_brisbane"], "no IBM Quantum account found"),
])
def test_rejected_run_is_one_line_and_writes_nothing(q_experts, cache, tmp_path, capsys,
                                                     monkeypatch, argv, message):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    out = tmp_path / "run"
    assert main(["run", "--model", str(q_experts), "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qmoe run: error:") and message in err and err.count("\n") == 1
    assert not out.exists() and not cache.exists()


def test_rejected_token_never_shows(q_experts, cache, tmp_path, capsys, monkeypatch):
    from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

    from qmoe_qiskit.jobs import service as service_module

    token = "token-that-must-not-leak-0123456789"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("QISKIT_IBM_TOKEN", token)

    def refusing_service(**kwargs):  # IBM Quantum answers, and refuses the token
        raise IBMNotAuthorizedError(f"401 Client Error: Unauthorized (apikey {token})")

    monkeypatch.setattr(service_module, "QiskitRuntimeService", refusing_service)
    out = tmp_path / "run"
    assert main(["run", "--model", str(q_experts), "--backend", "ibm_brisbane", "--out", str(out),
                 "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "did not accept the account" in captured.err
    assert token not in captured.err + captured.out
    assert not out.exists() and not cache.exists()


def test_jobs_commands_on_local_jobs_and_unknown_ids(q_experts, cache, capsys):
    assert main(["jobs", "list"]) == 0
    assert "no jobs recorded" in capsys.readouterr().out
    assert main(["run", "--model", str(q_experts), "--backend", "fake_manila", "--limit", "5",
                 "--shots", "64", "--no-progress", "--out", str(cache.parent / "r")]) == 0
    capsys.readouterr()
    assert main(["jobs", "status"]) == 0
    assert main(["jobs", "fetch"]) == 0
    out = capsys.readouterr().out
    status, fetch = out.splitlines()  # one job of 3 PUBs: one line each
    assert status.endswith("3 PUBs  done") and fetch.endswith("3 PUBs  already cached")
    assert main(["jobs", "fetch", "no-such-job"]) == 2
    assert "not in the ledger" in capsys.readouterr().err


def test_a_classical_model_has_nothing_to_run(tmp_path, capsys):
    model = tmp_path / "linear"
    assert main(["train", "--router", "linear", "--epochs", "2", "--samples", "200",
                 "--no-progress", "--out", str(model)]) == 0
    assert main(["run", "--model", str(model), "--backend", "fake_manila",
                 "--out", str(tmp_path / "r")]) == 2
    assert "no quantum circuits" in capsys.readouterr().err


def test_the_qpu_time_a_job_was_charged_is_recorded_beside_the_estimate(q_experts, tmp_path,
                                                                        monkeypatch):
    """job.usage() is what IBM Quantum charges (0 in local testing mode): stand a charge in,
    and a start time from the job's metrics (the moment whose calibration describes it)."""
    monkeypatch.setattr(LocalRuntimeJob, "usage", lambda self: 2.5)
    monkeypatch.setattr(LocalRuntimeJob, "metrics", lambda self: {
        "timestamps": {"created": "2026-03-14T08:00:00Z", "running": "2026-03-14T09:26:53.5Z",
                       "finished": "2026-03-14T09:27:10Z"}})
    cache = tmp_path / "c"
    argv = ["run", "--model", str(q_experts), "--backend", "fake_manila", "--limit", "10",
            "--shots", "128", "--no-progress", "--cache", str(cache)]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    first = _results(tmp_path / "a")
    assert first["qpu_seconds"] == 2.5  # one job, charged once, whatever its PUB count
    assert first["ran_at"] == "2026-03-14T09:26:53+00:00"  # the job's start, not the run's
    assert [pub["qpu_seconds"] for pub in first["pubs"]] == [2.5] * 3
    assert first["estimated_qpu_seconds"] > 0
    assert "QPU time charged: 2.5 s" in (tmp_path / "a" / "report.md").read_text()
    meta = ResultCache(cache).meta(first["pubs"][0]["key"])
    assert meta["qpu_seconds"] == 2.5 and meta["index"] == 0
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    again = _results(tmp_path / "b")
    assert again["cache_hits"] == 3 and again["qpu_seconds"] == 0.0  # nothing charged again
    assert again["ran_at"] == first["ran_at"]  # cached counts keep the time they were measured
