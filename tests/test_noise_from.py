"""The closed loop: train under the noise model `qmoe compare` fitted to a backend's counts,
then run on that backend again."""

import json

import numpy as np
import pytest
import torch

from qmoe_qiskit.cli import main
from qmoe_qiskit.data import DataSpec
from qmoe_qiskit.errors import ConfigError
from qmoe_qiskit.experiments import CompareConfig, RunConfig, TrainRun, run_experiment
from qmoe_qiskit.experiments.noise_from import NoiseFrom
from qmoe_qiskit.models import ModelSpec, load_model
from qmoe_qiskit.training import TrainConfig


@pytest.fixture(scope="module")
def fitted(sel_model, tmp_path_factory):
    """A compare of the sel model on a stand-in of fake_manila with every rate x 2.5."""
    folder = tmp_path_factory.mktemp("fit")
    config = CompareConfig(backend_run=RunConfig(
        model=str(sel_model), backend="fake_manila", noise_scale=2.5, shots=1000, samples=40,
        cache_dir=str(folder / "cache")))
    _, out = run_experiment(config, folder / "compare", progress=False)
    return out


def _run(noise_from, tmp_path, name):
    run = TrainRun(data=DataSpec(dataset="moons", n_samples=300, seed=0),
                   model=ModelSpec(router="quantum", ansatz="sel"),
                   train=TrainConfig(epochs=3, seed=0), noise_from=noise_from)
    return run_experiment(run, tmp_path / name, progress=False)


def test_a_model_trained_under_the_fitted_noise_records_it_and_scores_under_it(fitted,
                                                                               tmp_path):
    compare = json.loads((fitted / "results.json").read_text())
    outcome, folder = _run(NoiseFrom(str(fitted)), tmp_path, "noisy")
    r = outcome.results
    best = max(("device_scaled_fit", "depolarizing_fit"),
               key=lambda m: compare["models"][m]["log_likelihood"])
    assert r["trained_under"]["model"] == best
    key = "scale" if best == "device_scaled_fit" else "epsilon"
    assert r["trained_under"]["value"] == pytest.approx(compare["fit"][key])
    assert r["trained_under"]["device"] == "fake_manila"
    assert r["trained_under"]["qubits"] == compare["used_qubits"]
    assert 0 <= r["test_under_fitted_noise"]["accuracy"] <= 1
    assert "test under the fitted noise" in (folder / "report.md").read_text()
    # the noise changed the training: the same seed without it ends elsewhere
    exact, _ = _run(None, tmp_path, "exact")
    noisy_model = load_model(folder / "model.pt")[0]
    exact_model = load_model(tmp_path / "exact" / "model.pt")[0]
    diff = max((a - b).abs().max().item() for a, b in zip(noisy_model.state_dict().values(),
                                                           exact_model.state_dict().values()))
    assert diff > 1e-4
    assert exact.results["trained_under"] is None


def test_either_fit_can_be_chosen(fitted, tmp_path):
    outcome, _ = _run(NoiseFrom(str(fitted), "depolarizing_fit"), tmp_path, "depol")
    compare = json.loads((fitted / "results.json").read_text())
    assert outcome.results["trained_under"]["model"] == "depolarizing_fit"
    assert outcome.results["trained_under"]["value"] == pytest.approx(compare["fit"]["epsilon"])


def test_the_cli_closes_the_loop_on_the_stand_in(fitted, tmp_path, capsys):
    out = tmp_path / "trained"
    assert main(["train", "--router", "quantum", "--ansatz", "sel", "--epochs", "2",
                 "--samples", "300", "--noise-from", str(fitted), "--noise-model",
                 "device_scaled_fit", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out  # both scores, labelled: the noisy one is the point
    r = json.loads((out / "results.json").read_text())
    assert f"test accuracy {r['test']['accuracy']:.3f}" in printed and "(exact simulation)" in \
        printed
    assert "under the fitted noise it was trained for (device_scaled_fit = " in printed
    assert f"test accuracy {r['test_under_fitted_noise']['accuracy']:.3f}, macro F1" in printed
    assert main(["run", "--model", str(out), "--backend", "fake_manila", "--noise-scale", "2.5",
                 "--shots", "200", "--limit", "10", "--cache", str(tmp_path / "c"),
                 "--no-progress", "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "results.json").read_text())["samples"] == 10


@pytest.mark.parametrize("case, message", [
    ("missing", "no compare folder at"),
    ("train", "is not a qmoe compare folder (it was written by qmoe train)"),
    ("model", "unknown fitted noise model 'best_fit'; valid: 'best', 'device_scaled_fit'"),
    ("classical", "--noise-from trains quantum circuits under noise"),
])
def test_bad_noise_from_is_one_line_before_training(fitted, sel_model, tmp_path, capsys, case,
                                                    message):
    source = {"missing": tmp_path / "nothing", "train": sel_model}.get(case, fitted)
    argv = ["train", "--epochs", "1", "--samples", "300", "--no-progress",
            "--noise-from", str(source), "--out", str(tmp_path / "out")]
    if case == "model":
        argv += ["--noise-model", "best_fit"]
    if case == "classical":
        argv += ["--router", "linear"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_fit_that_did_not_converge_is_refused(fitted, tmp_path):
    copy = tmp_path / "cmp"
    copy.mkdir()
    for name in ("config.json", "results.json"):
        (copy / name).write_text((fitted / name).read_text())
    results = json.loads((copy / "results.json").read_text())
    results["fit"]["scale_converged"] = False
    results["fit"]["scale_message"] = "the likelihood still rises at the range's edge"
    (copy / "results.json").write_text(json.dumps(results))
    with pytest.raises(ConfigError, match="did not converge"):
        NoiseFrom(str(copy), "device_scaled_fit").resolve()


def test_the_loop_trains_under_the_fit_without_what_the_technique_removes(fitted, tmp_path,
                                                                          capsys):
    """`--mitigate readout` (or trex): the model will run readout-mitigated, so it trains under
    the fit without readout errors; techniques that change more than readout are refused."""
    def readout_errors(noise_from):
        model = noise_from.resolve().simulation().noise_model
        return [e for e in model.to_dict()["errors"] if e["type"] == "roerror"]

    for name in ("best", "device_scaled_fit", "depolarizing_fit"):
        assert readout_errors(NoiseFrom(str(fitted), name))
        assert readout_errors(NoiseFrom(str(fitted), name, mitigate="readout")) == []
    fit = NoiseFrom(str(fitted), "device_scaled_fit", mitigate="trex").resolve()
    assert fit.to_dict()["readout"] is False and fit.to_dict()["mitigate"] == "trex"
    with pytest.raises(ConfigError, match="only where it removes readout errors alone; valid: "
                                          "'readout', 'trex'"):
        NoiseFrom(str(fitted), mitigate="trex,zne")
    assert main(["train", "--router", "quantum", "--ansatz", "sel", "--mitigate", "readout",
                 "--no-progress", "--out", str(tmp_path / "x")]) == 2
    assert "--mitigate names the technique the model will run with" in capsys.readouterr().err


def test_a_model_wider_than_the_compared_run_is_refused_under_the_device_fit(fitted, tmp_path,
                                                                             capsys):
    """The device fit restricts the noise to the compared run's qubits: a 4-qubit router,
    placed on two more, would train with their gates noiseless. One line, before training;
    the depolarizing fit (every qubit) still trains it."""
    compare = json.loads((fitted / "results.json").read_text())
    assert len(compare["used_qubits"]) == 2
    argv = ["train", "--router", "quantum", "--ansatz", "sel", "--qubits", "4", "--epochs", "1",
            "--samples", "300", "--no-progress", "--noise-from", str(fitted), "--out",
            str(tmp_path / "wide")]
    assert main([*argv, "--noise-model", "device_scaled_fit"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "would train noiseless" in err, err
    assert f"covers physical qubits {compare['used_qubits']} of fake_manila" in err
    assert not (tmp_path / "wide").exists()
    assert main([*argv, "--noise-model", "depolarizing_fit"]) == 0
    r = json.loads((tmp_path / "wide" / "results.json").read_text())
    assert r["trained_under"]["model"] == "depolarizing_fit"


@pytest.mark.parametrize("key, value", [("scale", 1e6), ("scale", -1.0), ("epsilon", 2.0),
                                        ("epsilon", float("nan"))])
def test_a_fitted_value_out_of_its_range_is_refused_not_trained_under(fitted, tmp_path, key,
                                                                      value):
    """A tampered fit (scale 1e6 made the device model divide by zero) is one line."""
    from qmoe_qiskit.errors import DataError

    copy = tmp_path / "cmp"
    copy.mkdir()
    for name in ("config.json", "results.json"):
        (copy / name).write_text((fitted / name).read_text())
    results = json.loads((copy / "results.json").read_text())
    results["fit"][key] = value
    (copy / "results.json").write_text(json.dumps(results))
    model = "device_scaled_fit" if key == "scale" else "depolarizing_fit"
    with pytest.raises(DataError, match=f"hold the fitted {key} .*outside \\[0, "):
        NoiseFrom(str(copy), model).resolve()
