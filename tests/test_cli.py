"""The qmoe command end to end: the quick ablation, train / evaluate, and its errors."""

import json

import pytest

from qmoe_qiskit.cli import main


@pytest.mark.slow
def test_quick_ablation_end_to_end(tmp_path, capsys):
    out = tmp_path / "ablation"
    assert main(["ablation", "--quick", "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"A", "B_paper", "B_sel", "C_h4", "C_h16", "D"}
    for name, m in results["models"].items():
        for key in ("router_params", "total_params", "test_accuracy", "f1", "efficiency"):
            assert key in m, (name, key)
        acc = m["test_accuracy"]
        assert len(acc["per_seed"]) == 3 and abs(sum(acc["per_seed"]) / 3 - acc["mean"]) < 1e-12
        assert 0.5 < acc["mean"] <= 1.0
    assert results["models"]["B_sel"]["router_params"] == 24
    assert results["models"]["B_sel"]["total_params"] == 36
    for name in ("config.json", "report.md", "decision_boundaries.png", "training_curves.png",
                 "models/B_sel.pt"):
        assert (out / name).exists(), name
    report = (out / "report.md").read_text()
    assert "| B_sel |" in report and "held-out" in report
    assert "run folder" in capsys.readouterr().out


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--router", "quantum", "--ansatz", "paper", "--epochs", "2",
                 "--samples", "200", "--no-progress", "--out", str(out)]) == 0
    trained = json.loads((out / "results.json").read_text())["test"]["accuracy"]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out)]) == 0
    assert f"test accuracy {trained:.3f}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--model", "nowhere/model.pt"], "model file not found"),
    (["train", "--layers", "0", "--no-progress"], "num_layers must be an integer >= 1"),
    (["train", "--qubits", "1", "--no-progress"], "2 features but the circuit has 1 qubits"),
    (["ablation", "--models", "A,Z", "--quick", "--no-progress"], "unknown ablation models ['Z']"),
    (["train", "--dataset", "mnist", "--no-progress"], "needs data_dir"),
])
def test_errors_are_one_line(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path / "x")] if argv[0] != "evaluate" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # nothing is written for a rejected command


def test_unknown_choice_lists_valid_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "iris"])
    assert exc.value.code == 2
    assert "choose from 'moons', 'circles', 'digits', 'mnist', 'fashion_mnist'" in capsys.readouterr().err


def test_quick_preset_yields_to_explicit_training_flags(tmp_path):
    out = tmp_path / "a"
    assert main(["ablation", "--quick", "--models", "A", "--epochs", "2", "--patience", "0",
                 "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["models"]["A"]["epochs_run"] == [2, 2, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["train"]["patience"] is None
