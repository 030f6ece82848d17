"""Hardware-calibrated heads (``qmoe train --calibrate-on RUN_DIR``): the classical parts
retrained on the outputs a run over training samples measured, the quantum weights kept, no
test row read, and one-line refusals of runs that cannot be calibrated on."""

import json

import numpy as np
import pytest
import torch

from qmoe_qiskit.cli import main
from qmoe_qiskit.errors import ConfigError
from qmoe_qiskit.experiments import run_experiment
from qmoe_qiskit.experiments import calibrate as calibrate_module
from qmoe_qiskit.experiments.calibrate import CalibrateHeads
from qmoe_qiskit.models import load_model

STAND_IN = ["--backend", "fake_manila", "--noise-scale", "4", "--shots", "500", "--no-progress"]


@pytest.fixture(scope="module")
def train_run(sel_model, tmp_path_factory):
    """A run of the sel model over its first 60 training samples on a noisy stand-in, and the
    cache it filled."""
    root = tmp_path_factory.mktemp("calibrate")
    assert main(["run", "--model", str(sel_model), *STAND_IN, "--split", "train", "--samples",
                 "60", "--cache", str(root / "c"), "--out", str(root / "run")]) == 0
    return root / "run", root / "c"


def test_calibration_retrains_only_the_classical_parts_on_the_hardware_outputs(
        sel_model, train_run, tmp_path, capsys):
    run, cache = train_run
    recorded = json.loads((run / "results.json").read_text())
    assert recorded["split"] == "train" and recorded["model_sha256"]
    assert main(["train", "--calibrate-on", str(run), "--epochs", "150", "--no-progress",
                 "--out", str(tmp_path / "cal")]) == 0
    assert "classical parameters retrained" in capsys.readouterr().out
    r = json.loads((tmp_path / "cal" / "results.json").read_text())
    assert r["after"]["loss"] < r["before"]["loss"] and r["samples"] == 60
    original, _, _ = load_model(sel_model / "model.pt")
    assert r["frozen"] == {"router.layer.connector.weight":
                           original.router.layer.connector.weight.numel()}
    calibrated, _, extra = load_model(tmp_path / "cal" / "model.pt")
    assert extra["calibrated_on"] == str(run)
    before, after = original.state_dict(), calibrated.state_dict()
    torch.testing.assert_close(after["router.layer.connector.weight"],
                               before["router.layer.connector.weight"], rtol=0, atol=0)
    assert not torch.equal(after["router.adapter.weight"], before["router.adapter.weight"])
    assert not torch.equal(after["experts.0.weight"], before["experts.0.weight"])
    # the calibrated model runs the original's circuits and bindings: its test run is free
    # where the original's ran
    test = ["run", *STAND_IN, "--limit", "20", "--cache", str(cache)]
    assert main([*test, "--model", str(sel_model), "--out", str(tmp_path / "t0")]) == 0
    assert main([*test, "--model", str(tmp_path / "cal" / "model.pt"),
                 "--out", str(tmp_path / "t1")]) == 0
    t1 = json.loads((tmp_path / "t1" / "results.json").read_text())
    assert t1["jobs_submitted"] == 0 and t1["cache_hits"] == 1


def test_the_calibration_never_reads_a_test_row(train_run, monkeypatch, tmp_path):
    """With every test row (inputs and labels) replaced by garbage, the calibration is the
    same to the bit: it reads the run's training rows and nothing else."""
    run, _ = train_run
    plain, _ = run_experiment(CalibrateHeads(run=str(run), epochs=40), tmp_path / "a",
                              progress=False)
    real = calibrate_module.load_trained

    def poisoned(path):
        model, spec, data = real(path)
        data.x_test[:] = np.nan
        data.y_test[:] = -7
        return model, spec, data

    monkeypatch.setattr(calibrate_module, "load_trained", poisoned)
    dirty, _ = run_experiment(CalibrateHeads(run=str(run), epochs=40), tmp_path / "b",
                              progress=False)
    assert dirty.results["loss_history"] == plain.results["loss_history"]
    assert dirty.results["rows_fingerprint"] == plain.results["rows_fingerprint"]
    a, _, _ = load_model(tmp_path / "a" / "model.pt")
    b, _, _ = load_model(tmp_path / "b" / "model.pt")
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, rtol=0, atol=0)


def test_calibrating_on_a_run_of_test_samples_or_another_model_is_refused(
        sel_model, q_experts, train_run, tmp_path, capsys):
    run, cache = train_run
    assert main(["run", "--model", str(sel_model), *STAND_IN, "--limit", "10", "--cache",
                 str(cache), "--out", str(tmp_path / "test-run")]) == 0
    capsys.readouterr()
    cases = [
        (["--calibrate-on", str(tmp_path / "test-run")],
         "--calibrate-on needs a run over training samples; "),
        (["--calibrate-on", str(run), "--model", str(q_experts)], "measured another model"),
        (["--calibrate-on", str(tmp_path / "nowhere")], "no run folder at"),
        (["--calibrate-on", str(run), "--noise-from", str(run)], "use one or the other"),
        (["--model", str(sel_model)], "--model names the model to calibrate with"),
        (["--calibrate-on", str(run), "--lr", "-1"], "lr must be a finite number > 0"),
    ]
    for argv, message in cases:
        assert main(["train", *argv, "--no-progress", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert not (tmp_path / "o").exists()


def test_a_run_whose_bindings_are_not_the_models_is_refused(sel_model, train_run, tmp_path):
    """A model file rewritten with other quantum weights (same path, no recorded hash) does
    not replay the run's bindings: refused, not calibrated on foreign outputs."""
    import shutil

    run, _ = train_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    results = json.loads((copy / "results.json").read_text())
    model, spec, extra = load_model(sel_model / "model.pt")
    with torch.no_grad():
        model.router.layer.connector.weight.add_(0.5)
    from qmoe_qiskit.models import save_model

    save_model(tmp_path / "other.pt", model, spec, extra)
    results["model"] = str(tmp_path / "other.pt")
    del results["model_sha256"]  # an older run, which recorded no hash
    (copy / "results.json").write_text(json.dumps(results))
    with pytest.raises(ConfigError, match="the run did not measure this model on these"):
        run_experiment(CalibrateHeads(run=str(copy)), None, progress=False)
