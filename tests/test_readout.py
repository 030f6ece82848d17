"""Readout mitigation: mthree's balanced calibration measured through the job layer (in the
model's job, cached, costed), its correction, and what ``run`` and ``compare`` report with it."""

import json

import numpy as np
import pytest

from qmoe_qiskit.cli import main
from qmoe_qiskit.errors import ConfigError
from qmoe_qiskit.experiments import CompareConfig, RunConfig, run_experiment
from qmoe_qiskit.jobs import JobOptions, RuntimeSampler, connect
from qmoe_qiskit.jobs import readout as readout_module
from qmoe_qiskit.jobs.mitigation import parse_mitigation
from qmoe_qiskit.jobs.readout import ReadoutCalibration, calibrate, calibration_circuits
from qmoe_qiskit.noise_models.factories import calibrated_readout, device_readout
from qmoe_qiskit.noise_models.standin import stand_in

pytest.importorskip("mthree")

ALL_MANILA = [0, 1, 2, 3, 4]
READOUT_SCALE = 3.0  # readout errors of 2.5-8.5%: the noise a readout correction must remove


def _readout_stand_in(scale=READOUT_SCALE):
    """fake_manila whose only noise is its calibrated (asymmetric) readout, times ``scale``."""
    return stand_in("fake_manila", noise_model=device_readout("fake_manila", qubits=ALL_MANILA,
                                                              scale=scale),
                    name=f"fake_manila_readout_x{scale:g}")


def test_the_balanced_calibration_prepares_every_qubit_in_both_states_equally():
    for n in range(1, 7):
        circuits = calibration_circuits(n)
        prepared = np.array([[any(i.operation.name == "x" and c.find_bit(i.qubits[0]).index == k
                                  for i in c.data) for k in range(n)] for c in circuits])
        assert (prepared.sum(axis=0) == len(circuits) // 2).all()  # balanced, per qubit
        assert len({tuple(row) for row in prepared}) == len(circuits)


def test_calibration_on_chosen_qubits_recovers_the_asymmetric_readout():
    truth = calibrated_readout(connect("fake_manila").backend, [3, 4]).errors
    shots = 50_000
    sampler = RuntimeSampler(connect(_readout_stand_in(1.0)), JobOptions(shots=shots), seed=4)
    cal = calibrate(sampler, [4, 3])
    assert cal.qubits == [3, 4] and cal.shots == shots
    assert all(r.layout == [3, 4] for r in sampler.records)  # placed, not laid out anew
    for q in (3, 4):
        for got, want in zip(cal.errors()[q], truth[q]):
            trials = shots * len(sampler.records) / 2  # each state is half the circuits
            assert abs(got - want) < 5 * np.sqrt(want * (1 - want) / trials), (q, got, want)
    assert cal.errors()[3][0] < cal.errors()[3][1]  # asymmetric: P(1|0) < P(0|1) on qubit 3


def test_correction_inverts_a_known_readout_with_the_right_bit_order():
    """Counts drawn through different asymmetric matrices on clbits 0 and 1 (qubits 5 and 2):
    swapping the qubits or the bit order would leave a visible error."""
    a = np.array([[0.97, 0.10], [0.03, 0.90]])  # qubit 5 -> clbit 0
    b = np.array([[0.99, 0.04], [0.01, 0.96]])  # qubit 2 -> clbit 1
    cal = ReadoutCalibration({5: a, 2: b}, shots=1)
    exact = np.array([[0.6, 0.1, 0.25, 0.05], [0.05, 0.7, 0.05, 0.2]])  # index = 2*c1 + c0
    noisy = exact @ np.kron(b, a).T  # column-stochastic matrices act on (c1, c0) order
    counts = np.round(noisy * 1_000_000).astype(int)
    np.testing.assert_allclose(cal.correct(counts, [5, 2]), exact, atol=2e-3)
    assert np.abs(cal.correct(counts, [2, 5]) - exact).max() > 0.02  # the mapping matters
    np.testing.assert_allclose(ReadoutCalibration.from_dict(cal.to_dict()).matrices[5], a)


def test_run_measures_the_calibration_in_the_models_job_and_mitigation_helps(q_experts,
                                                                              tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(RunConfig, "target", lambda self: _readout_stand_in())
    cache = tmp_path / "cache"
    config = RunConfig(model=str(q_experts), backend="fake_manila", shots=2000, samples=40,
                       cache_dir=str(cache), mitigate="readout")
    outcome, folder = run_experiment(config, tmp_path / "run", progress=False)
    r = outcome.results
    calibration_pubs = len(calibration_circuits(len(r["mitigation"]["calibration"]["qubits"])))
    # one job: the router, both experts and the calibration circuits
    assert r["jobs_submitted"] == 1 and r["pubs_submitted"] == 3 + calibration_pubs
    assert [p["circuit"].startswith("readout_cal") for p in r["pubs"]].count(True) == \
        calibration_pubs
    measured = {q for p in r["pubs"] if not p["circuit"].startswith("readout_cal")
                for q in p["measured"]}
    assert {int(q) for q in r["mitigation"]["calibration"]["qubits"]} == measured
    # no --layout was given: the calibrations say where they were put, not "user"
    assert {p["layout_method"] for p in r["pubs"] if p["circuit"].startswith("readout_cal")} \
        == {"placed (the measured qubits)"}
    # the router's output (a softmax of <Z> readings, shot noise included) moves toward ideal
    raw, mitigated = r["mean_tvd_to_ideal"], r["mitigation"]["mean_tvd_to_ideal"]
    assert mitigated < raw, (raw, mitigated)
    assert "Readout-mitigated" in (folder / "report.md").read_text()
    # the run keeps the model's raw counts only (what compare fits): three PUBs
    from qmoe_qiskit.jobs.outcomes import read_measurements

    assert len(read_measurements(folder)) == 3

    # compare reads the run's calibration and sets raw and mitigated against each model
    out, cfolder = run_experiment(CompareConfig(run=str(folder), mitigate="readout"),
                                  tmp_path / "cmp", progress=False)
    m = out.results["mitigation"]["models"]
    assert m["ideal"]["mitigated_mean_tvd"] < 0.5 * m["ideal"]["raw_mean_tvd"]
    assert m["ideal"]["mitigated_tvd_over_floor"] < 1.5 < m["ideal"]["raw_mean_tvd"] / \
        m["ideal"]["floor_tvd"]
    assert "## Readout-mitigated hardware" in (cfolder / "report.md").read_text()


@pytest.mark.parametrize("repeats", [1, 2])
def test_the_readout_wrapper_leaves_the_runs_results_as_the_replay_made_them(q_experts, tmp_path,
                                                                           monkeypatch, repeats):
    """mthree as a primitive wrapper (ReadoutSampler) gives what correcting the run's own
    counts with its own calibrations and replaying the model on them gives (the run's results
    before the wrapper): the same predictions and router, in one job per repeat, each raw PUB
    measured and recorded once."""
    import torch

    from qmoe_qiskit.experiments.base import load_trained
    from qmoe_qiskit.experiments.replay import replay
    from qmoe_qiskit.experiments.run import mitigated_tables
    from qmoe_qiskit.jobs.outcomes import read_measurements

    monkeypatch.setattr(RunConfig, "target", lambda self: _readout_stand_in())
    config = RunConfig(model=str(q_experts), backend="fake_manila", shots=500, samples=12,
                       cache_dir=str(tmp_path / "cache"), mitigate="readout", repeats=repeats)
    outcome, folder = run_experiment(config, tmp_path / "run", progress=False)
    r = outcome.results
    cals = [ReadoutCalibration.from_dict(c) for c in r["mitigation"]["repeat_calibrations"]]
    pubs = read_measurements(folder)
    model, _, data = load_trained(q_experts)
    x = torch.as_tensor(data.x_test[:12], dtype=torch.float32)
    from qmoe_qiskit.jobs.outcomes import pooled

    predictions, router = replay(model, x, pooled(pubs), mitigated_tables(cals, pubs))
    # the calibration written to results.json is rounded to JSON floats: agree to 1e-9
    np.testing.assert_allclose(r["mitigation"]["router"], router, atol=1e-9)
    assert r["predictions"] != r["mitigation"]["router"]
    assert r["jobs_submitted"] == repeats and r["pubs"] and r["cache_hits"] == 0
    model_pubs = [p for p in r["pubs"] if not p["circuit"].startswith("readout_cal")]
    assert len(model_pubs) == 3 * repeats  # router and two experts, once per repeat
    assert r["mitigated"]["readout"]["accuracy"] == r["mitigation"]["accuracy"] == \
        float(np.mean(predictions == np.asarray(r["labels"])))


def test_readout_sampler_corrects_the_counts_the_wrapped_sampler_read(tmp_path):
    """Outside a run: the wrapper's distributions are the calibration's correction of the very
    counts the sampler returned for the PUB, and the calibration covers its measured qubits."""
    from qiskit import QuantumCircuit

    from qmoe_qiskit.jobs.readout import ReadoutSampler

    qc = QuantumCircuit(2, 2, name="bell")
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    sampler = RuntimeSampler(connect(_readout_stand_in()), JobOptions(shots=4000), seed=3)
    wrapped = ReadoutSampler(sampler)
    result = sampler.run_together(lambda: wrapped.run([(qc,)]).result()[0])
    [pub] = wrapped.outcomes
    assert pub.calibration.qubits == sorted(pub.measured) == sampler.measured_qubits()
    np.testing.assert_allclose(pub.distributions, pub.calibration.correct(pub.counts,
                                                                         pub.measured))
    assert pub.counts.sum() == 4000
    p = result.data.c.probabilities
    assert abs(p[0] + p[3] - 1) < abs(pub.counts[0, [0, 3]].sum() / 4000 - 1)  # less leakage
    assert p[0] + p[3] > 0.98


def test_mitigating_a_cached_run_submits_only_the_calibration(q_experts, tmp_path, capsys):
    argv = ["run", "--model", str(q_experts), "--backend", "fake_manila", "--limit", "10",
            "--shots", "200", "--no-progress", "--cache", str(tmp_path / "c")]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--mitigate", "readout", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "readout_cal_0" in plan and "would submit" in plan and "in 1 job" in plan
    assert main([*argv, "--mitigate", "readout", "--out", str(tmp_path / "b")]) == 0
    r = json.loads((tmp_path / "b" / "results.json").read_text())
    sources = {p["circuit"]: p["source"] for p in r["pubs"]}
    assert [s for c, s in sources.items() if not c.startswith("readout_cal")] == ["cache"] * 3
    assert {s for c, s in sources.items() if c.startswith("readout_cal")} == {"submitted"}
    assert r["jobs_submitted"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--mitigate", "cdr"], "unknown mitigation 'cdr'; valid: 'readout', 'trex', 'zne'"),
    (["--mitigate", "readout,zne"], "readout (mthree on the sampler's counts) does not combine"),
    (["--mitigate", "zne", "--zne-factors", "1,3,2"], "strictly increasing, got [1.0, 3.0, 2.0]"),
])
def test_bad_mitigation_is_one_line(q_experts, tmp_path, capsys, argv, message):
    assert main(["run", "--model", str(q_experts), "--backend", "fake_manila", "--no-progress",
                 "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_mitigation_without_mthree_names_the_extra(without_module):
    without_module("mthree")
    with pytest.raises(ConfigError, match=r"-m pip install -e .*\[mitigation\]"):
        parse_mitigation("readout")
    with pytest.raises(ConfigError, match=r"-m pip install -e .*\[mitigation\]"):
        readout_module.ReadoutSampler(None)


def test_compare_asks_for_a_calibration_the_run_does_not_have(q_experts, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "--model", str(q_experts), "--backend", "fake_manila", "--limit",
                 "10", "--shots", "200", "--no-progress", "--cache", str(tmp_path / "c"),
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["compare", "--run", str(run), "--mitigate", "readout", "--no-progress",
                 "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert "measured no readout calibration" in err and "--mitigate readout" in err
    assert err.count("\n") == 1 and not (tmp_path / "cmp").exists()
