"""Mitigation by name, and probabilities read through a (mitigating) estimator."""

import json

import numpy as np
import pytest
from qiskit import QuantumCircuit

from qmoe_qiskit.circuits import paper_ansatz
from qmoe_qiskit.errors import ConfigError, UnsupportedCircuitError
from qmoe_qiskit.jobs import JobOptions, RuntimeSampler, connect
from qmoe_qiskit.jobs.estimator import Resilience, RuntimeEstimator
from qmoe_qiskit.jobs.mitigation import (
    EstimatorSampler,
    parse_mitigation,
    project_to_simplex,
)
from qmoe_qiskit.metrics import tvd
from qmoe_qiskit.noise_models import stand_in
from qmoe_qiskit.primitives import outcome_probabilities
from qmoe_qiskit.simulation import ExactEstimator, ExactSampler


def _values(circuit, rows, seed=2):
    return np.random.default_rng(seed).uniform(0, np.pi, (rows, circuit.num_parameters))


@pytest.mark.parametrize("text, message", [
    ("zne,cdr", r"unknown mitigation 'cdr'; valid: 'readout', 'trex', 'zne'"),
    ("readout,zne", r"readout \(mthree on the sampler's counts\) does not combine"),
    ("zne,zne", r"names a technique twice"),
    ("zne,pea", r"zne \(gate folding\) and pea \(probabilistic error amplification\) are two"),
    ("pec,zne", r"pec cancels the learned noise; it does not combine with zne or pea"),
])
def test_bad_techniques_are_refused_in_one_line(text, message):
    with pytest.raises(ConfigError, match=message) as exc:
        parse_mitigation(text)
    assert "\n" not in str(exc.value)


def test_techniques_and_their_options_parse_into_the_runtimes_resilience():
    both = parse_mitigation("zne, trex", zne_factors=(1, 2, 3), zne_extrapolator=("linear",))
    assert both.techniques == ("trex", "zne") and both.name == "trex,zne"
    assert both.resilience == Resilience(trex=True, zne=True, zne_factors=(1.0, 2.0, 3.0),
                                         zne_extrapolator=("linear",))
    assert parse_mitigation("readout").readout and parse_mitigation(None) is None
    with pytest.raises(ConfigError, match="--zne-factors needs zne or pea among the"):
        parse_mitigation("trex", zne_factors=(1, 3))
    pea = parse_mitigation("pea,trex", zne_factors=(1, 2, 3))
    assert pea.name == "trex,pea" and pea.resilience.pea and pea.resilience.learns
    assert parse_mitigation("trex,pec").resilience == Resilience(trex=True, pec=True)
    with pytest.raises(ConfigError, match="--zne-extrapolator needs --mitigate zne"):
        parse_mitigation(None, zne_extrapolator=("linear",))
    with pytest.raises(ConfigError, match="strictly increasing"):
        parse_mitigation("zne", zne_factors=(3, 1))


@pytest.mark.parametrize("qubits, outputs", [(2, 4), (3, 8), (3, 2)])
def test_distributions_from_exact_z_strings_equal_the_exact_sampler(qubits, outputs):
    """The inverse Walsh-Hadamard transform of the exact Z strings is the exact distribution,
    bit order included."""
    circuit = paper_ansatz(qubits, 2, num_outputs=outputs).circuit
    values = _values(circuit, 5)
    ours = EstimatorSampler(ExactEstimator()).run([(circuit, values)]).result()[0]
    ref = ExactSampler(default_shots=None).run([(circuit, values)]).result()[0]
    [name] = ref.data.keys()
    np.testing.assert_allclose(outcome_probabilities(ours.data[name]),
                               outcome_probabilities(ref.data[name]), atol=1e-12)


def test_the_projection_is_the_nearest_distribution():
    np.testing.assert_allclose(project_to_simplex(np.array([[0.6, 0.6, -0.2]])),
                               [[0.5, 0.5, 0.0]])
    already = np.array([[0.1, 0.2, 0.7]])
    np.testing.assert_allclose(project_to_simplex(already), already)
    rng = np.random.default_rng(0)
    rows = rng.normal(0.25, 0.3, (50, 4))
    projected = project_to_simplex(rows)
    np.testing.assert_allclose(projected.sum(axis=1), 1)
    assert projected.min() >= 0
    for row, best in zip(rows, projected):  # no distribution is nearer
        others = rng.dirichlet(np.ones(4), 500)
        assert np.linalg.norm(row - best) <= np.linalg.norm(row - others, axis=1).min() + 1e-12


def test_zne_through_the_estimator_sampler_brings_a_probability_router_toward_ideal():
    """A probability router read as the Z strings of its outcomes: with gate noise only,
    gate-folding ZNE lands its distributions much nearer the ideal ones than the raw counts."""
    circuit = paper_ansatz(2, 3, num_outputs=4).circuit
    values = _values(circuit, 6)
    ideal = outcome_probabilities(ExactSampler(default_shots=None).run(
        [(circuit, values)]).result()[0].data.meas)
    connection = connect(stand_in("fake_manila", scale=4, readout_scale=0, seed=0))
    raw_sampler = RuntimeSampler(connection, JobOptions(shots=20000), seed=0)
    raw = outcome_probabilities(raw_sampler.run([(circuit, values)]).result()[0].data.meas)
    jobs = RuntimeSampler(connection, JobOptions(shots=20000), seed=0)
    sampler = EstimatorSampler(RuntimeEstimator(jobs, Resilience(zne=True)))
    mitigated = outcome_probabilities(sampler.run([(circuit, values)]).result()[0].data.meas)
    assert jobs.stats()["jobs_submitted"] == 1  # three Z strings, one PUB, one job
    [outcome] = sampler.outcomes
    assert outcome.z.shape == (6, 3) and outcome.quasi.shape == (6, 4)
    np.testing.assert_allclose(mitigated.sum(axis=1), 1)
    raw_tvd, zne_tvd = tvd(raw, ideal).mean(), tvd(mitigated, ideal).mean()
    assert zne_tvd < 0.5 * raw_tvd, (raw_tvd, zne_tvd)


def test_a_mid_circuit_measurement_is_refused_before_anything_is_submitted():
    circuit = QuantumCircuit(2, 2)
    circuit.h(0)
    circuit.measure(0, 0)
    circuit.cx(0, 1)
    circuit.measure(1, 1)
    with pytest.raises(UnsupportedCircuitError, match="mid-circuit measurement"):
        EstimatorSampler(ExactEstimator()).run([(circuit,)]).result()


@pytest.mark.parametrize("resilience", [Resilience(zne=True), Resilience(pec=True)],
                         ids=["zne", "pec"])
def test_zne_and_pec_refuse_a_mid_circuit_measurement_before_any_job(tmp_path, resilience):
    """Outcomes read only as samples (a measurement before the last gate) have no observable to
    extrapolate or cancel: refused in one line, no noise-learning job, no ledger line."""
    from qmoe_qiskit.jobs import Ledger, ResultCache

    pytest.importorskip("qiskit_noise_learning")
    circuit = QuantumCircuit(2, 2)
    circuit.h(0)
    circuit.measure(0, 0)
    circuit.cx(0, 1)
    circuit.measure(1, 1)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    sampler = RuntimeSampler(connect("fake_manila"), cache=ResultCache(tmp_path), ledger=ledger)
    with pytest.raises(UnsupportedCircuitError, match="mid-circuit measurement") as exc:
        EstimatorSampler(RuntimeEstimator(sampler, resilience)).run([(circuit,)]).result()
    assert "\n" not in str(exc.value)
    assert ledger.entries() == [] and sampler.records == []


def test_run_with_zne_reports_the_mitigated_router_beside_the_raw_one(sel_model, tmp_path):
    """``qmoe run --mitigate zne`` on a stand-in with gate noise only: the model runs on the
    sampler (raw) and again on the runtime Estimator in the same pass, one job each; the
    mitigated router lies nearer ideal, and the estimator's PUB is priced with every noise
    factor, in the dry run before anything is paid."""
    from qmoe_qiskit.experiments.base import run_experiment
    from qmoe_qiskit.experiments.run import RunConfig

    common = dict(model=str(sel_model), backend="fake_manila", noise_scale=4,
                  readout_scale=0, shots=4000, samples=20, cache_dir=str(tmp_path / "c"))
    plan, _ = run_experiment(RunConfig(**common, mitigate="zne", dry_run=True), None,
                             progress=False)
    raw_plan, _ = run_experiment(RunConfig(**common, dry_run=True), None, progress=False)
    assert plan.results["jobs"] == 2 and raw_plan.results["jobs"] == 1
    assert 2.5 * raw_plan.results["estimated_qpu_seconds"] < \
        plan.results["estimated_qpu_seconds"] < 5 * raw_plan.results["estimated_qpu_seconds"]
    outcome, folder = run_experiment(RunConfig(**common, mitigate="zne"), tmp_path / "run",
                                     progress=False)
    r = outcome.results
    assert r["jobs_submitted"] == 2
    assert [p["primitive"] for p in r["pubs"]] == ["sampler", "estimator (zne)"]
    zne = r["mitigated"]["zne"]
    assert zne["router_error_vs_ideal"] < 0.6 * r["router_error_vs_ideal"], r["mitigated"]
    assert zne["router_z_rms"] > 0 and 2 < zne["qpu_multiple"] < 5
    assert 0 <= zne["accuracy"] <= 1
    assert "mitigated (zne)" in outcome.summary and "mitigated (zne)" in \
        (folder / "report.md").read_text()
    # the raw counts are what the run keeps for compare: the sampler's PUB alone
    from qmoe_qiskit.jobs.outcomes import read_measurements

    assert len(read_measurements(folder)) == 1


def test_estimator_techniques_refuse_repeats_in_one_line(sel_model):
    from qmoe_qiskit.experiments.run import RunConfig

    with pytest.raises(ConfigError, match="--repeats with --mitigate trex,zne is not"):
        RunConfig(model=str(sel_model), backend="fake_manila", mitigate="zne,trex", repeats=2)


@pytest.fixture(scope="module")
def zne_run(sel_model, tmp_path_factory):
    """A ``qmoe run --mitigate zne`` of the sel router on a gate-noise stand-in (folder)."""
    from qmoe_qiskit.experiments.base import run_experiment
    from qmoe_qiskit.experiments.run import RunConfig

    root = tmp_path_factory.mktemp("zne")
    config = RunConfig(model=str(sel_model), backend="fake_manila", noise_scale=4,
                       readout_scale=0, shots=2000, samples=20, cache_dir=str(root / "c"),
                       mitigate="zne")
    outcome, folder = run_experiment(config, root / "run", progress=False)
    return outcome.results, folder


def test_compare_replays_the_runs_estimates_and_refits_zne_offline(zne_run, tmp_path):
    """compare sets the run's ZNE router values against ideal and the fitted noise models from
    the estimates the run kept; a refit with the run's own extrapolators reproduces the
    runtime's values, another extrapolator gives others, and neither submits a job."""
    from qmoe_qiskit.experiments.base import run_experiment
    from qmoe_qiskit.experiments.compare import CompareConfig
    from qmoe_qiskit.jobs.estimator import read_estimates

    r, folder = zne_run
    [pub] = read_estimates(folder)
    assert pub.noise["evs_noise_factors"].shape == (20, 2, 3) and pub.resilience.zne
    models = ("ideal", "device", "device_scaled_fit")
    rows = {}
    for extrapolator in (("exponential", "linear"), ("linear",)):
        out, cfolder = run_experiment(
            CompareConfig(run=str(folder), models=models, zne_extrapolator=extrapolator),
            tmp_path / "-".join(extrapolator), progress=False)
        rows[extrapolator] = out.results["mitigated_router"]["rows"]
    same, linear = rows[("exponential", "linear")], rows[("linear",)]
    # the runtime's own values, replayed through the model, are the run's
    assert same["zne"]["accuracy"] == r["mitigated"]["zne"]["accuracy"]
    assert abs(same["zne"]["error_vs_ideal"] - r["mitigated"]["zne"]["router_error_vs_ideal"]) \
        < 1e-9
    assert abs(same["raw"]["error_vs_ideal"] - r["router_error_vs_ideal"]) < 1e-6  # float32
    # refit with the run's extrapolators = the runtime's extrapolation; linear is another fit
    refit = same["zne (refit: exponential, linear)"]
    assert abs(refit["error_vs_ideal"] - same["zne"]["error_vs_ideal"]) < 1e-6
    assert abs(linear["zne (refit: linear)"]["error_vs_ideal"] - same["zne"]["error_vs_ideal"]) \
        > 1e-4
    assert refit["qpu_multiple"] == same["zne"]["qpu_multiple"] > 2
    # raw values sit with a noisy model, ZNE's nearer ideal than raw
    assert same["raw"]["closest_model"] != "ideal"
    assert same["zne"]["error_vs_ideal"] < same["raw"]["error_vs_ideal"]
    assert 0 < same["zne"]["raw_error_removed"] < 1
    assert same["zne"]["dof"] == 40 and 0 <= same["zne"]["p_value"] <= 1
    lo, hi = same["zne"]["accuracy_ci"]
    assert 0 <= lo <= same["zne"]["accuracy"] <= hi <= 1
    text = (cfolder / "report.md").read_text()
    assert "## What mitigation leaves behind" in text and "zne (refit: linear)" in text


@pytest.mark.parametrize("argv, message", [
    (["--mitigate", "trex"], "did not mitigate with trex (it has zne); run it with --mitigate "
                             "trex"),
    (["--mitigate", "readout"], "measured no readout calibration"),
    (["--zne-extrapolator", "quadratic"], "unknown ZNE extrapolator 'quadratic'; valid:"),
    (["--zne-extrapolator", "double_exponential"],
     "double_exponential extrapolator needs at least 4 noise factors; got 3 (1, 3, 5)"),
    (["--zne-factors", "1,2"], "--zne-factors is for running a model first"),
])
def test_compare_refuses_what_the_run_did_not_measure_in_one_line(zne_run, tmp_path, capsys,
                                                                   argv, message):
    from qmoe_qiskit.cli import main

    _, folder = zne_run
    assert main(["compare", "--run", str(folder), "--no-progress", "--out",
                 str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_refitting_a_run_without_zne_is_refused(sel_model, tmp_path, capsys):
    from qmoe_qiskit.cli import main

    run = ["run", "--model", str(sel_model), "--backend", "fake_manila", "--limit", "5",
           "--shots", "200", "--no-progress", "--cache", str(tmp_path / "c")]
    assert main([*run, "--out", str(tmp_path / "r"), "--mitigate", "trex"]) == 0
    capsys.readouterr()
    assert main(["compare", "--run", str(tmp_path / "r"), "--no-progress",
                 "--zne-extrapolator", "linear"]) == 2
    err = capsys.readouterr().err
    assert "--zne-extrapolator refits a ZNE run's noise-factor values" in err


def test_a_probability_routers_z_strings_are_scored_against_its_exact_ones(tmp_path):
    """The paper router through the runtime Estimator: its outcome Z strings (the QNN's own
    circuit, parameters renamed inputs[i], weights[j]) are set against the exact Z strings of
    the same bindings, so the std calibration is reported for probability routers too."""
    from qmoe_qiskit.cli import main
    from qmoe_qiskit.jobs.estimator import read_estimates

    model = tmp_path / "paper"
    assert main(["train", "--router", "quantum", "--ansatz", "paper", "--layers", "2",
                 "--epochs", "3", "--samples", "200", "--no-progress", "--out",
                 str(model)]) == 0
    run = tmp_path / "run"
    assert main(["run", "--model", str(model), "--backend", "fake_manila", "--noise-scale",
                 "2.5", "--limit", "8", "--shots", "400", "--mitigate", "trex",
                 "--no-progress", "--cache", str(tmp_path / "c"), "--out", str(run)]) == 0
    r = json.loads((run / "results.json").read_text())
    trex = r["mitigated"]["trex"]
    assert trex["router_z_rms"] is not None and 0 < trex["router_z_rms"] < 10
    [pub] = read_estimates(run)  # the router's Z strings, the only circuit
    assert pub.parameters[0].startswith("inputs[") and pub.evs.shape == (8, 1)


@pytest.mark.parametrize("blob", [b"", b"junk" * 20, b"PK\x03\x04" + b"\x00" * 40])
def test_a_damaged_estimates_file_is_one_line_naming_it(tmp_path, blob):
    from qmoe_qiskit.errors import DataError
    from qmoe_qiskit.jobs.estimator import ESTIMATES_FILE, read_estimates

    (tmp_path / ESTIMATES_FILE).write_bytes(blob)
    with pytest.raises(DataError, match=f"the estimates in .*{ESTIMATES_FILE} cannot be read"):
        read_estimates(tmp_path)
