"""``qmoe compare``: calibrated readout, hardware stand-ins with a known truth, fits that
recover it, and the run folder it reads."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from qiskit.circuit.library import RXGate
from qiskit.quantum_info import hellinger_fidelity
from qiskit_aer.noise import coherent_unitary_error
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qmoe_qiskit.cli import main
from qmoe_qiskit.experiments import CompareConfig, RunConfig, run_experiment
from qmoe_qiskit.experiments.base import load_trained
from qmoe_qiskit.experiments.compare import MODELS
from qmoe_qiskit.experiments.replay import replay
from qmoe_qiskit.experiments.run import frequencies
from qmoe_qiskit.jobs import connect
from qmoe_qiskit.jobs.outcomes import COUNTS_FILE, read_measurements
from qmoe_qiskit.metrics import accuracy, hellinger_distance, profile_fit, shot_noise_tvd
from qmoe_qiskit.noise_models import depolarizing, device, readout_matrices
from qmoe_qiskit.noise_models.factories import calibrated_readout, device_readout
from qmoe_qiskit.noise_models.standin import stand_in

MANILA_BASIS = ["cx", "id", "rz", "sx", "x"]


def _compare(model, tmp_path, backend="fake_manila", **run):
    """compare on a run of ``model`` on ``backend`` (a name, or a stand-in object)."""
    config = CompareConfig(backend_run=RunConfig(model=str(model), backend=backend,
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
    # readout off the gates' proportion: gates x 2, readout x 4, and a name of its own
    apart = stand_in("fake_manila", scale=2.0, readout_scale=4.0)
    assert apart.name == "fake_manila_noise_x2_readout_x4"
    p10, p01 = calibrated_readout(FakeManilaV2(), [3]).errors[3]
    matrix = readout_matrices(apart.options.noise_model, [3])[0]
    np.testing.assert_allclose([matrix[0, 1], matrix[1, 0]], [4 * p10, 4 * p01], atol=1e-12)
    gates = lambda m: [{k: v for k, v in e.items() if k != "id"}  # noqa: E731
                       for e in m.to_dict()["errors"] if e["type"] != "roerror"]
    assert gates(apart.options.noise_model) == gates(device("fake_manila", scale=2.0))


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


def test_a_stand_in_relaxes_while_its_qubits_wait():
    """Through the job layer, a stand-in's counts follow the exact model with idle-time
    relaxation on the scheduled circuit (the goodness-of-fit test passes), not the one
    without it (rejected): what compare's scheduled device model is set against."""
    from qmoe_qiskit.circuits import waiting_circuit
    from qmoe_qiskit.jobs import JobOptions, RuntimeSampler
    from qmoe_qiskit.metrics import goodness_of_fit
    from qmoe_qiskit.noise_models import IsaEvaluator

    circuit = waiting_circuit()
    values = np.column_stack([np.linspace(0.2, np.pi, 30), np.linspace(0, 2, 30)])
    options = JobOptions(shots=4000, optimization_level=0, initial_layout=(0, 1, 2))
    with RuntimeSampler(connect(stand_in("fake_manila", scale=2.0)), options,
                        seed=3) as sampler:
        sampler.run([(circuit, values)]).result()
    [outcome] = sampler.outcomes
    [counts] = outcome.counts.values()
    manila = FakeManilaV2()
    evaluate = IsaEvaluator([(outcome.isa, outcome.values)], backend=manila)
    model = device(manila, scale=2.0)
    relaxing, not_relaxing = evaluate(model, idle_scale=2.0), evaluate(model)
    assert goodness_of_fit([counts], relaxing, parameters=0).p_value >= 0.01
    assert goodness_of_fit([counts], not_relaxing, parameters=0).p_value < 1e-6


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
    # the hardware's counts, replayed through the model, give the run's own router output:
    # what every model's accuracy (and a pooled run's router) rests on
    model, _, data = load_trained(q_experts)
    x = torch.as_tensor(data.x_test[:20], dtype=torch.float32)
    predictions, router = replay(model, x, pubs, [frequencies(p) for p in pubs])
    np.testing.assert_allclose(router, recorded["router"]["distributions"], atol=1e-6)
    assert accuracy(recorded["labels"], predictions) == recorded["accuracy"]
    assert results["hardware_accuracy"] == recorded["accuracy"]
    for name in MODELS:
        assert set(results["models"][name]) >= {"mean_tvd", "mean_hellinger_distance",
                                                "log_likelihood", "routing_agreement",
                                                "accuracy", "gof", "explains", "aic", "bic"}
        gof = results["models"][name]["gof"]
        assert set(gof) >= {"deviance", "pearson", "dof", "p_value", "dispersion"}
        # every circuit's counts count: router and experts, bindings x (outcomes - 1) at most
        assert gof["dof"] <= 20 * (4 - 1) + 2 * 20 * (2 - 1) - results["models"][name]["parameters"]
    for name in ("scatter.png", "tvd_histograms.png", "profiles.png", "readout.png",
                 "report.md", "run/circuits.qpy", "run/counts.npz"):
        assert (folder / name).is_file()
    # compare --run on the folder it wrote gives the same fits, and submits nothing
    again, _ = run_experiment(CompareConfig(run=str(run), models=("ideal", "device_scaled_fit")),
                              tmp_path / "again", progress=False)
    assert list(again.results["models"]) == ["ideal", "device_scaled_fit"]
    assert again.results["fit"]["scale"] == pytest.approx(results["fit"]["scale"], rel=1e-9)


# ------------------------------------------------------------------ recovery of a known truth
def test_a_scaled_stand_in_is_recovered_and_the_test_says_so(sel_model, tmp_path):
    results, folder = _compare(sel_model, tmp_path, noise_scale=2.5)
    fit, models = results["fit"], results["models"]
    assert abs(fit["scale"] - 2.5) <= 0.2 * 2.5
    assert fit["scale_ci"][0] <= 2.5 <= fit["scale_ci"][1]
    assert models["device_scaled_fit"]["explains"]  # the test at alpha = 0.01 passes it
    assert models["device_scaled_fit"]["gof"]["p_value"] >= 0.01
    assert not models["ideal"]["explains"] and not models["device"]["explains"]
    assert models["ideal"]["gof"]["p_value"] < 1e-6
    # the two-scale model, nested around it, finds one scale for both
    two = models["device_two_scale_fit"]["fit"]
    assert two["gate_scale_ci"][0] <= 2.5 <= two["gate_scale_ci"][1]
    assert two["readout_scale_ci"][0] <= 2.5 <= two["readout_scale_ci"][1]
    assert not results["proportions"]["differ"]
    assert results["verdict"]["preferred"] == "device_scaled_fit"  # the simplest of the tied
    report = (folder / "report.md").read_text()
    assert "stand-in" in report and "**Explained**" in report


def test_a_depolarizing_stand_in_is_recovered(sel_model, tmp_path):
    truth = stand_in("fake_manila", noise_model=depolarizing(0.02, basis_gates=MANILA_BASIS),
                     name="fake_manila_depolarizing_0.02")
    results, _ = _compare(sel_model, tmp_path, backend=truth)
    fit, models = results["fit"], results["models"]
    assert abs(fit["epsilon"] - 0.02) <= 0.2 * 0.02
    assert fit["epsilon_ci"][0] <= 0.02 <= fit["epsilon_ci"][1]
    assert models["depolarizing_fit"]["explains"]
    assert not models["ideal"]["explains"]
    assert not models["device_scaled_fit"]["explains"]  # another family: rejected
    assert results["verdict"]["preferred"] == "depolarizing_fit"


def test_a_coherent_error_is_explained_by_no_model(sel_model, tmp_path):
    noise = depolarizing(0.005, basis_gates=MANILA_BASIS)  # composed with an over-rotation:
    noise.add_all_qubit_quantum_error(coherent_unitary_error(RXGate(0.35).to_matrix()), "sx")
    truth = stand_in("fake_manila", noise_model=noise, name="fake_manila_overrotated")
    results, folder = _compare(sel_model, tmp_path, backend=truth)
    assert not any(m["explains"] for m in results["models"].values())
    assert results["verdict"]["preferred"] is None and results["verdict"]["least_bad"]
    assert "No model explains the hardware" in (folder / "report.md").read_text()


def test_repeats_are_separate_jobs_and_a_drifting_stand_in_is_caught(sel_model, tmp_path):
    """Three repeats of a stand-in whose every job draws its own scale: three jobs with their
    own cache entries (a second run takes all three from the cache), the draws recorded for the
    rehearsal, and compare's drift test firing."""
    run = dict(noise_scale=2.5, noise_drift=0.3, repeats=3, seed=4, samples=60)
    results, folder = _compare(sel_model, tmp_path, **run)
    recorded = json.loads((folder / "run" / "results.json").read_text())
    assert recorded["jobs_submitted"] == 3 and recorded["repeats"] == 3
    assert len({r["key"] for r in recorded["pubs"]}) == 3
    assert [r["repeat"] for r in recorded["pubs"]] == [0, 1, 2]
    scales = recorded["stand_in"]["job_scales"]
    assert len(scales) == 3 and len(set(scales)) == 3  # one hidden draw per job
    assert len(recorded["repeat_accuracy"]) == 3
    assert {p.repeat for p in read_measurements(folder / "run")} == {0, 1, 2}
    drift = results["drift"]
    assert drift["repeats"] == 3 and drift["p_value"] < 0.01  # the scale moved between jobs
    for k, ci, truth in zip(drift["repeat_scales"], drift["repeat_scale_cis"], scales):
        assert ci[0] <= truth <= ci[1] or abs(k - truth) < 0.1 * truth
    lo, hi = drift["jackknife_scale_ci"]
    assert lo < drift["jackknife_scale"] < hi
    assert results["shots"] == 3 * 2000 and (folder / "drift.png").is_file()
    assert "drifted between the 3 repeats" in (folder / "report.md").read_text()
    # the same run again: every repeat from the cache, nothing submitted
    config = RunConfig(model=str(sel_model), backend="fake_manila", shots=2000,
                       cache_dir=str(tmp_path / "cache"), **run)
    again, _ = run_experiment(config, tmp_path / "again", progress=False)
    assert again.results["jobs_submitted"] == 0 and again.results["cache_hits"] == 3
    # a dry run prices every repeat as a job of its own
    plan, _ = run_experiment(dataclasses.replace(config, cache_dir=str(tmp_path / "fresh"),
                                                 dry_run=True), None, progress=False)
    assert plan.results["jobs"] == 3 and plan.results["uncached_circuits"] == 3


def test_a_backend_object_runs_without_patching(sel_model, tmp_path):
    """Python users hand RunConfig a stand-in they built; the run folder names it and its
    truth, and its config is plain JSON."""
    backend = stand_in("fake_manila", scale=2.0, readout_scale=4.0)
    config = RunConfig(model=str(sel_model), backend=backend, shots=500, samples=10,
                       cache_dir=str(tmp_path / "cache"))
    outcome, folder = run_experiment(config, tmp_path / "run", progress=False)
    written = json.loads((folder / "config.json").read_text())
    assert written["backend"] == "fake_manila_noise_x2_readout_x4"
    assert written["stand_in"]["readout_scale"] == 4.0
    assert outcome.results["device"] == "fake_manila"
    assert outcome.results["stand_in"]["noise_scale"] == 2.0


# ------------------------------------------------------------------ bad input
def _run_folder(sel_model, tmp_path, shots, *extra):
    out = tmp_path / f"run{shots}"
    assert main(["run", "--model", str(sel_model), "--backend", "fake_manila", "--limit", "5",
                 "--shots", str(shots), "--cache", str(tmp_path / "cache"), "--no-progress",
                 "--out", str(out), *extra]) == 0
    return out


def _other_bindings_in_repeat_one(run):
    with np.load(run / COUNTS_FILE) as arrays:
        arrays = dict(arrays)
    arrays["values_1"] = arrays["values_1"] + 0.1
    np.savez_compressed(run / COUNTS_FILE, **arrays)


def _no_readout_errors(monkeypatch):
    from qmoe_qiskit.noise_models.factories import CalibratedReadout

    monkeypatch.setattr("qmoe_qiskit.experiments.compare.calibrated_readout",
                        lambda backend, qubits: CalibratedReadout({q: (0.0, 0.0) for q in qubits},
                                                                  "none"))


@pytest.mark.parametrize("case, message", [
    ("missing", "no run folder at"),
    ("train", "is not a qmoe run folder (it was written by qmoe train)"),
    ("few_shots", "needs at least 100"),
    ("no_counts", "has no counts.npz"),
    ("both", "--model is for running a model first"),
    ("neither", "give a finished run folder (--run DIR)"),
    ("tolerance", "--tolerance is gone: a model now explains the hardware when a goodness-of-fit"),
    ("alpha_zero", "alpha (the level of the goodness-of-fit test) must be in (0, 0.5), got 0.0"),
    ("alpha_half", "must be in (0, 0.5), got 0.5"),
    ("alpha_big", "must be in (0, 0.5), got 2.0"),
    ("unknown_model", "unknown noise model 'device_x'; valid: ideal, device"),
    ("repeats_on_run", "--repeats is for running a model first"),
    ("drift_on_run", "--noise-drift is for running a model first"),
    ("repeats_differ", "the run's repeats measured different circuits (repeat 1: circuit"),
    ("no_readout", "a two-scale fit needs readout-sensitive outcomes"),
    ("ibm", "IBM Quantum account"),
])
def test_bad_compare_input_is_one_line_and_writes_nothing(sel_model, tmp_path, capsys, monkeypatch,
                                                          case, message):
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "")
    monkeypatch.setattr("qiskit_ibm_runtime.accounts.management._DEFAULT_ACCOUNT_CONFIG_JSON_FILE",
                        str(tmp_path / "no-account.json"))
    folder = ["--run", str(sel_model)]
    argv = {"missing": ["--run", str(tmp_path / "nothing")],
            "train": folder,
            "both": [*folder, "--model", str(sel_model)],
            "neither": [],
            "tolerance": [*folder, "--tolerance", "0.5"],
            "alpha_zero": [*folder, "--alpha", "0"],
            "alpha_half": [*folder, "--alpha", "0.5"],
            "alpha_big": [*folder, "--alpha", "2"],
            "unknown_model": [*folder, "--models", "ideal,device_x"],
            "repeats_on_run": [*folder, "--repeats", "3"],
            "drift_on_run": [*folder, "--noise-drift", "0.1"]}.get(case)
    if case in ("few_shots", "no_counts", "ibm", "repeats_differ", "no_readout"):
        extra = ("--repeats", "2") if case == "repeats_differ" else ()
        run = _run_folder(sel_model, tmp_path, 50 if case == "few_shots" else 200, *extra)
        if case == "no_counts":
            (run / COUNTS_FILE).unlink()
        if case == "repeats_differ":
            _other_bindings_in_repeat_one(run)
        if case == "ibm":
            results = json.loads((run / "results.json").read_text())
            results["device"] = results["backend"] = "ibm_nowhere"
            (run / "results.json").write_text(json.dumps(results))
        argv = ["--run", str(run)]
        if case == "no_readout":
            _no_readout_errors(monkeypatch)
            argv += ["--models", "ideal,device_two_scale_fit"]
        capsys.readouterr()
    out = tmp_path / "compare"
    assert main(["compare", *argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not out.exists()


def test_too_few_shots_are_refused_before_anything_is_submitted(sel_model, tmp_path, capsys):
    """compare --shots 1 used to submit the job (and write 3 ledger lines) before refusing."""
    assert main(["compare", "--model", str(sel_model), "--backend", "fake_manila", "--shots",
                 "1", "--limit", "5", "--cache", str(tmp_path / "c"), "--no-progress",
                 "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--shots asks for 1 shot per sample; fitting and comparing noise models needs at " \
        "least 100" in err and "\n" not in err, err
    assert not (tmp_path / "c").exists() and not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("argv, message", [
    (["--backend", "ibm_brisbane", "--noise-scale", "2", "--noise-drift", "0.1"],
     "--noise-scale makes a stand-in of a fake backend whose truth is known; it is refused"),
    (["--backend", "ibm_brisbane", "--noise-drift", "0.1"], "--noise-drift makes a stand-in"),
    (["--backend", "fake_manila", "--noise-scale", "2", "--noise-drift", "-0.1"],
     "noise drift must be a finite number >= 0, got -0.1"),
    (["--backend", "fake_manila", "--noise-drift", "0.1"],
     "--noise-drift describes a stand-in of fake_manila; give its gate noise scale with "
     "--noise-scale too"),
    (["--backend", "fake_manila", "--noise-scale", "2", "--readout-scale", "inf"],
     "readout scale must be a finite number >= 0"),
    (["--backend", "fake_manila", "--repeats", "0"], "repeats must be an integer >= 1, got 0"),
    (["--backend", "fake_manila", "--repeats", "2", "--repeat-interval", "-5"],
     "repeat interval must be a number of seconds >= 0, got -5.0"),
])
def test_bad_run_options_are_one_line(sel_model, tmp_path, capsys, argv, message):
    for command in ("run", "compare"):
        out = tmp_path / command
        assert main([command, "--model", str(sel_model), "--out", str(out), "--cache",
                     str(tmp_path / "c"), "--no-progress", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
        assert not out.exists() and not (tmp_path / "c").exists()


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


# ------------------------------------------------------------------ damaged run folders
@pytest.fixture(scope="module")
def measured_run(sel_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("measured")
    out = root / "run"
    assert main(["run", "--model", str(sel_model), "--backend", "fake_manila", "--limit", "5",
                 "--shots", "200", "--split", "train", "--cache", str(root / "cache"),
                 "--no-progress", "--out", str(out)]) == 0
    return out


def _edit_counts(change):
    def edit(run):
        with np.load(run / COUNTS_FILE) as arrays:
            arrays = dict(arrays)
        change(arrays)
        np.savez_compressed(run / COUNTS_FILE, **arrays)
    return edit


def _set(arrays, key, change):
    arrays[key] = change(arrays[key].astype(float))


def _edit_results(change):
    def edit(run):
        results = json.loads((run / "results.json").read_text())
        (run / "results.json").write_text(json.dumps(change(results)))
    return edit


def _cell(a, i, j, v):
    a = a.copy()
    a[i, j] = v
    return a


DAMAGE = {
    "empty circuits": (lambda run: (run / "circuits.qpy").write_bytes(b""),
                       "circuits.qpy cannot be read (struct.error"),
    "junk circuits": (lambda run: (run / "circuits.qpy").write_bytes(b"junk" * 50),
                      "circuits.qpy cannot be read"),
    "truncated counts": (lambda run: (run / COUNTS_FILE).write_bytes(
        (run / COUNTS_FILE).read_bytes()[:200]), "counts.npz cannot be read (BadZipFile"),
    "NaN count": (_edit_counts(lambda a: _set(a, "counts_0", lambda c: _cell(c, 0, 0, np.nan))),
                  "counts.npz is damaged (PUB 0: a count is not a finite number)"),
    "all-zero row": (_edit_counts(lambda a: _set(a, "counts_0", lambda c: _cell(c, 1, slice(None),
                                                                                0))),
                     "counts.npz is damaged (PUB 0: binding 1 has no counts at all)"),
    "fractional count": (_edit_counts(lambda a: _set(a, "counts_0", lambda c: c + np.array(
        [[0.5, -0.5] + [0] * (c.shape[1] - 2)] + [[0] * c.shape[1]] * (len(c) - 1)))),
        "counts.npz is damaged (PUB 0: a count is not a whole number)"),
    "negative count": (_edit_counts(lambda a: _set(a, "counts_0", lambda c: _cell(c, 0, 0,
                                                                                  -c[0, 0]))),
                       "counts.npz is damaged (PUB 0: a count is negative)"),
    "NaN binding": (_edit_counts(lambda a: _set(a, "values_0", lambda v: _cell(v, 0, 0, np.nan))),
                    "counts.npz is damaged (PUB 0: a binding is not a finite number)"),
    "no model": (_edit_results(lambda r: {k: v for k, v in r.items() if k != "model"}),
                 "results.json is damaged or from another version: its 'model' should be text "
                 "(it has none)"),
    "no samples": (_edit_results(lambda r: {k: v for k, v in r.items() if k != "samples"}),
                   "its 'samples' should be a whole number (it has none)"),
    "samples a string": (_edit_results(lambda r: {**r, "samples": "5"}),
                         "its 'samples' should be a whole number (it is text)"),
    "labels cut": (_edit_results(lambda r: {**r, "labels": r["labels"][:2]}),
                   "2 labels for 5 samples"),
    "results a list": (_edit_results(lambda r: [1, 2]),
                       "results.json is damaged or from another version: it holds a JSON list"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_run_folder_is_one_line_naming_the_file(measured_run, tmp_path, capsys, case):
    """Every file compare (and calibrate) reads back is checked as the cache checks its
    entries: one line naming the file and what is wrong, nothing written."""
    import shutil

    damage, message = DAMAGE[case]
    run = tmp_path / "run"
    shutil.copytree(measured_run, run)
    damage(run)
    capsys.readouterr()
    for command in (["compare", "--run", str(run)],
                    ["train", "--calibrate-on", str(run), "--epochs", "1"]):
        out = tmp_path / command[0]
        assert main([*command, "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and str(run) in err and "\n" not in err, err
        assert not out.exists()


def test_a_run_folder_is_compared_from_another_directory(sel_model, tmp_path, monkeypatch):
    """The run records the model's absolute path; an older run's relative one is found
    beside the folder's parents."""
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(sel_model, work / "model")
    monkeypatch.chdir(work)
    assert main(["run", "--model", "model", "--backend", "fake_manila", "--limit", "5",
                 "--shots", "200", "--cache", "cache", "--no-progress", "--out", "run"]) == 0
    results = json.loads((work / "run" / "results.json").read_text())
    assert results["model"] == str((work / "model").resolve())
    results["model"] = "model"  # as an older version recorded it
    (work / "run" / "results.json").write_text(json.dumps(results))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["compare", "--run", str(work / "run"), "--out", "cmp", "--no-progress"]) == 0
    assert (elsewhere / "cmp" / "results.json").is_file()
