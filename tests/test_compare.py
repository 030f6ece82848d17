"""``qmoe compare``: calibrated readout, hardware stand-ins with a known truth, fits that
recover it, and the run folder it reads."""

import json

import numpy as np
import pytest
from qiskit.circuit.library import RXGate
from qiskit.quantum_info import hellinger_fidelity
from qiskit_aer.noise import coherent_unitary_error
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qmoe_qiskit.cli import main
from qmoe_qiskit.experiments import CompareConfig, RunConfig, run_experiment
from qmoe_qiskit.jobs import connect
from qmoe_qiskit.jobs.outcomes import COUNTS_FILE, read_measurements
from qmoe_qiskit.metrics import hellinger_distance, profile_fit, shot_noise_tvd
from qmoe_qiskit.noise_models import depolarizing, device, readout_matrices
from qmoe_qiskit.noise_models.factories import calibrated_readout, device_readout
from qmoe_qiskit.noise_models.standin import stand_in

MANILA_BASIS = ["cx", "id", "rz", "sx", "x"]


def _compare(model, tmp_path, monkeypatch=None, backend=None, **run):
    if backend is not None:  # a custom stand-in, as a user's own rehearsal would build it
        monkeypatch.setattr(RunConfig, "target", lambda self: backend)
    config = CompareConfig(backend_run=RunConfig(model=str(model), backend="fake_manila",
                                                 cache_dir=str(tmp_path / "cache"),
                                                 **{"shots": 2000, "samples": 60, **run}))
    outcome, folder = run_experiment(config, tmp_path / "compare", progress=False)
    return outcome.results, folder


# ------------------------------------------------------------------ calibrated readout
def test_device_readout_is_the_calibrations_asymmetric_pair():
    props = FakeManilaV2().properties()
    p10 = props.qubit_property(3)["prob_meas1_prep0"][0]
    p01 = props.qubit_property(3)["prob_meas0_prep1"][0]
    assert abs(p10 - p01) > 0.01  # the calibration is asymmetric on this qubit
    expected = np.array([[1 - p10, p10], [p01, 1 - p01]])
    np.testing.assert_allclose(readout_matrices(device("fake_manila", qubits=[3]), [3])[0],
                               expected, atol=1e-12)
    np.testing.assert_allclose(readout_matrices(device_readout("fake_manila", qubits=[3]), [3])[0],
                               expected, atol=1e-12)
    scaled = readout_matrices(device("fake_manila", qubits=[3], scale=2), [3])[0]
    np.testing.assert_allclose([scaled[0, 1], scaled[1, 0]], [2 * p10, 2 * p01], atol=1e-12)
    # the target keeps one symmetric number: what the device model no longer uses
    target_error = FakeManilaV2().target["measure"][(3,)].error
    assert calibrated_readout(FakeManilaV2(), [3]).source == "properties (asymmetric)"
    assert min(abs(target_error - p10), abs(target_error - p01)) > 0.004


def test_device_readout_model_has_no_gate_noise():
    model = device_readout("fake_manila", qubits=[0, 1])
    assert {e["type"] for e in model.to_dict()["errors"]} == {"roerror"}


def test_the_device_model_without_readout_keeps_its_gates_only():
    """What mitigated counts are compared with: the same gate noise, no assignment errors."""
    full, gates = device("fake_manila", qubits=[3, 4]), device("fake_manila", qubits=[3, 4],
                                                               readout=False)
    assert "roerror" not in {e["type"] for e in gates.to_dict()["errors"]}

    def errors(model, keep):
        return [{k: v for k, v in e.items() if k != "id"}  # ids are random per error
                for e in model.to_dict()["errors"] if keep(e)]

    assert errors(full, lambda e: e["type"] != "roerror") == errors(gates, lambda e: True)


def test_a_readout_scale_past_one_is_refused_or_clipped():
    with pytest.raises(Exception, match="readout error of qubit 5 of fake_brisbane"):
        device_readout("fake_brisbane", qubits=[5], scale=3)
    clipped = readout_matrices(device_readout("fake_brisbane", qubits=[5], scale=3, clip=True),
                               [5])[0]
    assert clipped.max() == 1.0 and np.allclose(clipped.sum(axis=1), 1)


def test_a_stand_in_carries_the_scaled_device_model_under_its_own_name():
    backend = stand_in("fake_manila", scale=2.5)
    assert backend.name == "fake_manila_noise_x2.5" and backend.device == "fake_manila"
    assert backend.target is FakeManilaV2().target or backend.target.num_qubits == 5
    ours = readout_matrices(backend.options.noise_model, [3])[0]
    np.testing.assert_allclose(ours, readout_matrices(device("fake_manila", scale=2.5), [3])[0])
    connection = connect(backend)
    assert connection.local and "noise_scale" in connection.calibration


def test_a_seeded_local_run_repeats_exactly():
    """Rehearsals (and the recovery tests below) are reproducible: the seed reaches the
    local simulator."""
    from qiskit import QuantumCircuit

    from qmoe_qiskit.jobs import JobOptions, RuntimeSampler

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    counts = []
    for _ in range(2):
        with RuntimeSampler(connect(stand_in("fake_manila", scale=2)), JobOptions(shots=500),
                            seed=7) as sampler:
            counts.append(sampler.run([circuit]).result()[0].data.meas.get_counts())
    assert counts[0] == counts[1] and len(counts[0]) == 4  # noise reaches 01 and 10 too


@pytest.mark.parametrize("argv, message", [
    (["--backend", "ibm_brisbane", "--noise-scale", "2"], "refused for the real backend"),
    (["--backend", "fake_manila", "--noise-scale", "-1"], "finite number >= 0"),
    (["--backend", "fake_manila", "--noise-scale", "nan"], "finite number >= 0"),
])
def test_a_bad_noise_scale_is_one_line(sel_model, tmp_path, capsys, argv, message):
    assert main(["run", "--model", str(sel_model), "--out", str(tmp_path / "out"),
                 "--cache", str(tmp_path / "c"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "c").exists()


# ------------------------------------------------------------------ statistics
def test_hellinger_distance_and_qiskits_fidelity():
    assert hellinger_distance(np.array([1.0, 0]), np.array([0.0, 1])) == pytest.approx(1)
    assert hellinger_distance(np.array([0.3, 0.7]), np.array([0.3, 0.7])) == pytest.approx(0)
    p, q = np.array([0.1, 0.2, 0.7]), np.array([0.3, 0.3, 0.4])
    h = hellinger_distance(p, q)
    fidelity = hellinger_fidelity({"0": 0.1, "1": 0.2, "2": 0.7}, {"0": 0.3, "1": 0.3, "2": 0.4})
    assert fidelity == pytest.approx((1 - h ** 2) ** 2)  # not 1 - H


def test_shot_noise_floor_matches_the_binomial_mean_absolute_deviation():
    p, shots = 0.3, 2000
    floor = shot_noise_tvd(np.array([[p, 1 - p]]), shots, repetitions=20_000)[0]
    assert floor == pytest.approx(np.sqrt(2 * p * (1 - p) / (np.pi * shots)), rel=0.03)


def test_profile_fit_finds_a_known_maximum_and_its_interval():
    fit = profile_fit(lambda x: -(x - 2.0) ** 2 / (2 * 0.1 ** 2), np.linspace(0, 5, 26))
    assert fit.converged and fit.estimate == pytest.approx(2.0, abs=1e-3)
    assert fit.interval[0] == pytest.approx(2 - 1.96 * 0.1, abs=1e-3)
    assert fit.interval[1] == pytest.approx(2 + 1.96 * 0.1, abs=1e-3)


def test_a_fit_whose_likelihood_rises_to_the_edge_is_not_converged():
    fit = profile_fit(lambda x: 3 * x, [0, 1, 2, 3], name="epsilon")
    assert not fit.converged and fit.estimate == 3 and "grid optimum" in fit.message
    at_zero = profile_fit(lambda x: -x, [0, 1, 2, 3])  # a maximum on the lower bound is valid
    assert at_zero.converged and at_zero.estimate == 0 and at_zero.interval[0] == 0


# ------------------------------------------------------------------ the run folder
def test_run_keeps_what_it_measured_and_replays_to_its_own_router(q_experts, tmp_path):
    results, folder = _compare(q_experts, tmp_path, shots=500, samples=20)
    run = folder / "run"
    recorded = json.loads((run / "results.json").read_text())
    pubs = read_measurements(run)
    assert len(pubs) == 3  # the router and two quantum experts
    assert all(p.counts.shape == (20, 2 ** p.isa.num_clbits) and p.shots == 500 for p in pubs)
    assert [r["measured"] for r in recorded["pubs"]] == [
        [p.isa.find_bit(i.qubits[0]).index for i in p.isa.data if i.operation.name == "measure"]
        for p in pubs]
    # the hardware's counts, replayed through the model, give the run's own router output
    np.testing.assert_allclose(results["hardware_router"], recorded["router"]["distributions"],
                               atol=1e-6)
    assert results["hardware_accuracy"] == recorded["accuracy"]
    for name in ("ideal", "device", "depolarizing_fit", "device_scaled_fit", "readout_only"):
        assert set(results["models"][name]) >= {"mean_tvd", "mean_hellinger_distance",
                                                "log_likelihood", "routing_agreement",
                                                "accuracy"}
    for name in ("scatter.png", "tvd_histograms.png", "profiles.png", "readout.png",
                 "report.md", "run/circuits.qpy", "run/counts.npz"):
        assert (folder / name).is_file()
    # compare --run on the folder it wrote gives the same fits, and submits nothing
    again, _ = run_experiment(CompareConfig(run=str(run)), tmp_path / "again", progress=False)
    assert again.results["fit"]["scale"] == pytest.approx(results["fit"]["scale"], rel=1e-9)


# ------------------------------------------------------------------ recovery of a known truth
def test_a_scaled_stand_in_is_recovered(sel_model, tmp_path):
    results, folder = _compare(sel_model, tmp_path, noise_scale=2.5)
    fit, models = results["fit"], results["models"]
    assert abs(fit["scale"] - 2.5) <= 0.2 * 2.5
    assert fit["scale_ci"][0] <= 2.5 <= fit["scale_ci"][1]
    assert models["device_scaled_fit"]["tvd_over_floor"] <= 1.5
    assert models["device_scaled_fit"]["explains_within_shot_noise"]
    assert not models["ideal"]["explains_within_shot_noise"]
    assert models["ideal"]["tvd_over_floor"] > 1.5
    best = max(models, key=lambda n: models[n]["log_likelihood"])
    assert best == "device_scaled_fit"
    assert "stand-in" in (folder / "report.md").read_text()


def test_a_depolarizing_stand_in_is_recovered(sel_model, tmp_path, monkeypatch):
    truth = stand_in("fake_manila", noise_model=depolarizing(0.02, basis_gates=MANILA_BASIS),
                     name="fake_manila_depolarizing_0.02")
    results, _ = _compare(sel_model, tmp_path, monkeypatch, backend=truth)
    fit, models = results["fit"], results["models"]
    assert abs(fit["epsilon"] - 0.02) <= 0.2 * 0.02
    assert fit["epsilon_ci"][0] <= 0.02 <= fit["epsilon_ci"][1]
    assert models["depolarizing_fit"]["tvd_over_floor"] <= 1.5
    assert not models["ideal"]["explains_within_shot_noise"]


def test_a_coherent_error_is_explained_by_no_model(sel_model, tmp_path, monkeypatch):
    noise = depolarizing(0.005, basis_gates=MANILA_BASIS)  # composed with an over-rotation:
    noise.add_all_qubit_quantum_error(coherent_unitary_error(RXGate(0.35).to_matrix()), "sx")
    truth = stand_in("fake_manila", noise_model=noise, name="fake_manila_overrotated")
    results, folder = _compare(sel_model, tmp_path, monkeypatch, backend=truth)
    assert not any(m["explains_within_shot_noise"] for m in results["models"].values())
    assert "No model explains the hardware within shot noise" in (folder / "report.md").read_text()


# ------------------------------------------------------------------ bad input
def _run_folder(sel_model, tmp_path, shots):
    out = tmp_path / f"run{shots}"
    assert main(["run", "--model", str(sel_model), "--backend", "fake_manila", "--samples", "5",
                 "--shots", str(shots), "--cache", str(tmp_path / "cache"), "--no-progress",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("case, message", [
    ("missing", "no run folder at"),
    ("train", "is not a qmoe run folder (it was written by qmoe train)"),
    ("few_shots", "needs at least 100"),
    ("no_counts", "has no counts.npz"),
    ("both", "--model is for running a model first"),
    ("neither", "give a finished run folder (--run DIR)"),
    ("tolerance", "tolerance must be a number >= 1"),
    ("ibm", "IBM Quantum account"),
])
def test_bad_compare_input_is_one_line_and_writes_nothing(sel_model, tmp_path, capsys, monkeypatch,
                                                          case, message):
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "")
    monkeypatch.setattr("qiskit_ibm_runtime.accounts.management._DEFAULT_ACCOUNT_CONFIG_JSON_FILE",
                        str(tmp_path / "no-account.json"))
    argv = {"missing": ["--run", str(tmp_path / "nothing")],
            "train": ["--run", str(sel_model)],
            "both": ["--run", str(sel_model), "--model", str(sel_model)],
            "neither": [],
            "tolerance": ["--run", str(sel_model), "--tolerance", "0.5"]}.get(case)
    if case in ("few_shots", "no_counts", "ibm"):
        run = _run_folder(sel_model, tmp_path, 50 if case == "few_shots" else 200)
        if case == "no_counts":
            (run / COUNTS_FILE).unlink()
        if case == "ibm":
            results = json.loads((run / "results.json").read_text())
            results["device"] = results["backend"] = "ibm_nowhere"
            (run / "results.json").write_text(json.dumps(results))
        argv = ["--run", str(run)]
        capsys.readouterr()
    out = tmp_path / "compare"
    assert main(["compare", *argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not out.exists()


def test_an_ibm_run_is_compared_with_the_calibration_in_force_when_it_ran(sel_model, tmp_path,
                                                                          monkeypatch):
    """Offline stand-in of IBM Quantum: a backend whose calibration history answers by date.
    compare must ask for the run's own time (ran_at), not today's calibration."""
    from datetime import datetime

    import qmoe_qiskit.jobs as jobs_module
    from qmoe_qiskit.jobs.service import Connection

    manila = FakeManilaV2()
    asked = []

    class HistoricalBackend:
        name = "ibm_history"
        num_qubits = manila.num_qubits

        def target_history(self, datetime=None):
            asked.append(("target", datetime))
            return manila.target

        def properties(self, datetime=None, refresh=False):
            asked.append(("properties", datetime))
            return manila.properties()

    def connect(name, **kwargs):
        assert name == "ibm_history"
        return Connection(HistoricalBackend(), service=object())

    monkeypatch.setattr(jobs_module, "connect", connect)
    run = _run_folder(sel_model, tmp_path, 200)
    results = json.loads((run / "results.json").read_text())
    results["device"] = results["backend"] = "ibm_history"
    results["ran_at"] = "2026-03-14T09:26:53+00:00"
    results["local_testing_mode"] = False
    (run / "results.json").write_text(json.dumps(results))
    outcome, _ = run_experiment(CompareConfig(run=str(run)), tmp_path / "cmp", progress=False)
    when = datetime.fromisoformat("2026-03-14T09:26:53+00:00")
    assert ("target", when) in asked and ("properties", when) in asked
    assert all(moment == when for _, moment in asked)  # never today's calibration
    assert outcome.results["device"] == "ibm_history"
    # the models are the calibration's: the device model's readout is manila's own
    readout = {row["qubit"]: row for row in outcome.results["readout"]}
    for q, row in readout.items():
        p10, p01 = calibrated_readout(manila, [q]).errors[q]
        assert (row["calibrated_p10"], row["calibrated_p01"]) == (p10, p01)

    def unavailable(self, datetime=None):
        raise RuntimeError("no calibration stored for that date")

    monkeypatch.setattr(HistoricalBackend, "target_history", unavailable)
    with pytest.raises(Exception, match=r"calibration of ibm_history at 2026-03-14T09:26:53"
                                        r"\+00:00 is unavailable \(RuntimeError: no calibration"):
        run_experiment(CompareConfig(run=str(run)), tmp_path / "cmp2", progress=False)
    assert not (tmp_path / "cmp2").exists()
