"""`qmoe sweep` end to end: exact, sampled and retrained sweeps, and rejected input."""

import json

import pytest

from qmoe_qiskit.cli import main
from qmoe_qiskit.experiments.base import load_trained
from qmoe_qiskit.metrics import routing_stats
from qmoe_qiskit.training import gates


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_exact_sweep_reproduces_the_ideal_model_at_level_zero(sel_model, tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", "--model", str(sel_model), "--levels", "0,0.05,0.2", "--no-progress",
                 "--out", str(out)]) == 0
    results = _results(out)
    ideal = json.loads((sel_model / "results.json").read_text())["test"]["accuracy"]
    assert results["ideal_accuracy"] == ideal
    levels = results["levels"]
    assert [r["level"] for r in levels] == [0.0, 0.05, 0.2]
    assert levels[0]["accuracy"] == {"mean": ideal, "std": 0.0, "per_repetition": [ideal]}
    assert levels[0]["mean_tvd_to_ideal"] < 1e-9
    assert 0 < levels[1]["mean_tvd_to_ideal"] < levels[2]["mean_tvd_to_ideal"]
    assert all(r["noiseless_gates"] == {} for r in levels[1:])  # every gate carries noise
    assert 0 <= results["baseline_accuracy"] <= 1
    # the expert load under each level: at level 0 exactly the model's own on its test split
    model, _, data = load_trained(sel_model)
    exact = routing_stats(gates(model, data.x_test))
    assert levels[0]["routing"]["load"] == pytest.approx(exact["load"])
    assert levels[0]["routing"]["entropy"] == pytest.approx(exact["entropy"])
    assert all(0 <= r["routing"]["entropy"] <= 1 for r in levels)
    report = (out / "report.md").read_text()
    assert "one trained model evaluated at each noise level" in report
    assert f"| {exact['entropy']:.2f} | {exact['dead_fraction']:.2f} |" in report
    assert (out / "accuracy_vs_noise.png").stat().st_size > 0


def test_sampled_device_sweep_reports_mean_and_std(sel_model, tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", "--model", str(sel_model), "--noise-model", "fake_manila", "--scales", "1,3",
                 "--shots", "128", "--repetitions", "3", "--no-baseline", "--no-progress",
                 "--out", str(out)]) == 0
    results = _results(out)
    assert results["backend"] == "fake_manila" and results["shots"] == 128
    assert results["physical_qubits"] and results["baseline_accuracy"] is None
    for row in results["levels"]:
        per = row["accuracy"]["per_repetition"]
        assert len(per) == 3 and row["accuracy"]["std"] >= 0
    assert "128 shots" in (out / "report.md").read_text()


def test_retrain_trains_a_model_under_each_level(sel_model, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--model", str(sel_model), "--levels", "0,0.05", "--retrain",
                 "--epochs", "2", "--no-baseline", "--no-progress", "--out", str(out)]) == 0
    results = _results(out)
    assert results["retrain"] and results["train"]["epochs"] == 2
    zero, noisy = results["levels"]
    # at zero noise the retrained model is compared with itself: the same router, the same score
    assert zero["mean_tvd_to_ideal"] < 1e-9
    assert zero["accuracy"]["mean"] == zero["retrained_noiseless_accuracy"]
    assert noisy["mean_tvd_to_ideal"] > 1e-4 and 0 <= noisy["retrained_noiseless_accuracy"] <= 1
    report = (out / "report.md").read_text()
    assert "retrained at each noise level" in report and "retrained model, noiseless" in report
    assert "2 epochs, lr 0.01, batch 32, patience 5" in report and "± 0.000" not in report
    # which engines ran, not only the option: a 2-qubit router is the fast engine's throughout
    assert all(r["engines"] == {"forward": ["fast"], "gradients": ["reverse mode (fast engine)"]}
               for r in results["levels"])
    assert "ran: forward: fast; gradients: reverse mode (fast engine)." in report
    printed = capsys.readouterr().out
    assert "2 epochs, lr 0.01, batch 32, patience 5" in printed
    assert "epsilon 0 " in printed and "(noiseless " in printed and "± 0.000" not in printed


def test_the_help_states_the_training_defaults_each_command_uses():
    import argparse

    from qmoe_qiskit.cli import build_parser
    from qmoe_qiskit.experiments.sweep import SweepConfig
    from qmoe_qiskit.training import TrainConfig

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]

    def title(command):
        [group] = [g.title for g in sub.choices[command]._action_groups
                   if "--epochs" in [o for a in g._group_actions for o in a.option_strings]]
        return group

    for command, config in (("train", TrainConfig()), ("sweep", SweepConfig(model="m").train)):
        stated = (f"{config.epochs} epochs, lr {config.lr:g}, batch {config.batch_size}, "
                  f"patience {config.patience}")
        assert stated in title(command), (command, title(command))


@pytest.mark.parametrize("argv, message", [
    (["--noise-model", "fake_nowhere"], "fake_brisbane"),
    (["--scales", "1,2"], "--levels"),
    (["--noise-model", "fake_manila", "--levels", "0.1"], "--scales"),
    (["--levels", "0,1.5"], "must be a probability in [0, 1]"),
    (["--noise-model", "fake_manila", "--scales", "1000"], "use a scale <="),
])
def test_rejected_input_is_one_line_and_leaves_no_run_folder(sel_model, tmp_path, capsys, argv,
                                                              message):
    out = tmp_path / "sweep"
    assert main(["sweep", "--model", str(sel_model), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qmoe sweep: error:") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_classical_router_has_nothing_to_sweep(tmp_path, capsys):
    model = tmp_path / "linear"
    assert main(["train", "--router", "linear", "--epochs", "2", "--samples", "200",
                 "--no-progress", "--out", str(model)]) == 0
    assert main(["sweep", "--model", str(model), "--out", str(tmp_path / "s")]) == 2
    assert "needs a quantum router" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_dry_run_estimates_from_a_timed_step_and_runs_nothing(sel_model, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--model", str(sel_model), "--levels", "0,0.05", "--retrain",
                 "--epochs", "4", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("qmoe sweep --dry-run: 3 cells; about ")
    assert "2 levels × retraining 4 epochs of" in printed
    assert "fast engine (auto: chosen by width)" in printed
    assert "nothing was run or written" in printed and not out.exists()


def test_long_work_is_announced_before_it_starts(sel_model, tmp_path, monkeypatch, caplog):
    import logging

    from qmoe_qiskit.experiments import base

    monkeypatch.setattr(base, "LONG_SECONDS", 0)  # every sweep counts as long here
    with caplog.at_level(logging.WARNING, logger=base.__name__):
        assert main(["sweep", "--model", str(sel_model), "--levels", "0", "--no-baseline",
                     "--no-progress", "--out", str(tmp_path / "s")]) == 0
    [line] = [r.getMessage() for r in caplog.records if "this will take about" in r.getMessage()]
    assert "1 level × evaluation" in line and "resumes with the same --out" in line


@pytest.mark.parametrize("engine, message", [
    ("aer", "Aer's density matrix of 2 qubits would need about 256 B of memory but 200 B is "
            "available; use a narrower circuit (fewer --qubits or --features)"),
    ("fast", "one binding's density matrices would need about"),
])
def test_a_sweep_too_wide_for_memory_is_refused_before_any_level(sel_model, tmp_path, capsys,
                                                                 monkeypatch, engine, message):
    """A 16-qubit sweep on --engine aer ended in Aer's 'Insufficient memory' traceback. Each
    engine's need is checked in plan, before the first level (here on a machine made to have
    200 bytes free, so that a 2-qubit router stands in for a 16-qubit one)."""
    monkeypatch.setattr("qmoe_qiskit.noise_models.primitives.available_memory", lambda: 200)
    out = tmp_path / "sweep"
    assert main(["sweep", "--model", str(sel_model), "--engine", engine, "--levels", "0,0.01",
                 "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert "--engine aer" not in err  # Aer's matrix would not fit either: not suggested
    assert not out.exists()
