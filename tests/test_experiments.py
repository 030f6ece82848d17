"""The shape every experiment shares: configs that reject what the CLI rejects, picklable cells
that each give what the whole run gives, and run folders that appear whole or not at all."""

import dataclasses
import json
import pickle

import pytest

from qmoe_qiskit.data import DataSpec
from qmoe_qiskit.errors import ConfigError
from qmoe_qiskit.experiments import AblationConfig, SweepConfig, TrainRun, run_experiment
from qmoe_qiskit.experiments.base import CellStore, Outcome, result_type, write_run_folder
from qmoe_qiskit.experiments.run import RunConfig
from qmoe_qiskit.models import ModelSpec
from qmoe_qiskit.training import TrainConfig


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small paper-router model on 200 Two Moons samples (40 held out)."""
    out = tmp_path_factory.mktemp("model") / "run"
    config = TrainRun(data=DataSpec(n_samples=200),
                      model=ModelSpec(router="quantum", ansatz="paper", num_layers=2),
                      train=TrainConfig(epochs=3))
    outcome, path = run_experiment(config, out, progress=False)
    assert path == out and outcome.results["test"]["accuracy"] >= 0
    return out


def _tiny_ablation(**fields):
    return AblationConfig(**{"data": DataSpec(n_samples=200), "seeds": (0, 1), "widths": (4,),
                             "train": TrainConfig(epochs=2, patience=None),
                             "models": ("A", "B_paper"), **fields})


def test_every_run_folder_holds_config_results_report_and_figures(trained, tmp_path):
    sweep = SweepConfig(model=str(trained), levels=(0.0, 0.02), baseline=False)
    _, path = run_experiment(sweep, tmp_path / "sweep", progress=False)
    run = RunConfig(model=str(trained), backend="fake_manila", samples=8, shots=64,
                    cache_dir=str(tmp_path / "cache"))
    _, run_path = run_experiment(run, tmp_path / "run", progress=False)
    for folder, figure in ((trained, "training_curves.png"), (path, "accuracy_vs_noise.png"),
                           (run_path, "router_vs_ideal.png")):
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "results.json", "report.md", figure} <= names, folder
        config = json.loads((folder / "config.json").read_text())
        assert config["command"] in ("train", "sweep", "run")
    assert json.loads((run_path / "config.json").read_text())["backend"] == "fake_manila"
    saved = json.loads((path / "config.json").read_text())
    saved.pop("command")
    assert SweepConfig(**{**saved, "train": TrainConfig(**saved["train"])}) == sweep


def test_cells_pickle_and_each_gives_what_the_whole_run_gives(trained, tmp_path):
    config = SweepConfig(model=str(trained), levels=(0.0, 0.05), baseline=False)
    outcome, _ = run_experiment(config, tmp_path / "sweep", progress=False)
    cells = config.plan()
    assert [c.label for c in cells] == ["reference", "epsilon=0", "epsilon=0.05"]
    alone = pickle.loads(pickle.dumps(cells[2]))()  # as another process would run it
    alone = pickle.loads(pickle.dumps(alone))
    row = outcome.results["levels"][1]
    assert dataclasses.replace(alone, seconds=row["seconds"]) == type(alone)(**row)

    ablation = _tiny_ablation()
    whole, _ = run_experiment(ablation, tmp_path / "ablation", progress=False)
    second_seed_b = [c for c in ablation.plan() if (c.seed, c.name) == (1, "B_paper")][0]
    score = pickle.loads(pickle.dumps(second_seed_b))()
    assert score.state is None  # weights are kept for the first seed only
    assert whole.results["models"]["B_paper"]["test_accuracy"]["per_seed"][1] == \
        score.scores["accuracy"]


def test_a_killed_run_leaves_no_folder(trained, tmp_path, monkeypatch):
    out = tmp_path / "sweep"

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the figure is written

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", killed)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(SweepConfig(model=str(trained), levels=(0.0,), baseline=False), out,
                       progress=False)
    # neither the folder nor its staging copy; only the finished cells, kept for a resume
    assert [p.name for p in tmp_path.iterdir()] == [".sweep.cells"]
    assert len(list((tmp_path / ".sweep.cells").glob("*.pkl"))) == 2  # reference + level 0
    monkeypatch.undo()
    run_experiment(SweepConfig(model=str(trained), levels=(0.0,), baseline=False), out,
                   progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]


def test_a_kept_cell_that_is_not_what_was_saved_is_computed_again(tmp_path, caplog):
    """A store entry is reused only as save wrote it for that key, and only if it holds the
    type the cell returns: a file replaced by another pickle (the hostile campaign's dict), an
    edited byte, an entry moved to another key or a result of the wrong type are all missing,
    with a warning, never trusted."""
    from qmoe_qiskit.experiments.reproduce import ModelCell, ModelScore

    store = CellStore(tmp_path / "cells")
    result = ModelScore(task="moons", name="quantum", seed=0, data={}, parameters={"total": 3},
                        test={"accuracy": 0.9}, noisy={}, split_sizes={}, val_accuracy=[0.8],
                        seconds=1.0, trained_under=None, load=None)
    expected = "ModelScore"
    store.save("k1", result)
    assert store.load("k1", expected) == (True, result)
    assert result_type(ModelCell.__new__(ModelCell)) == "ModelScore"
    path = tmp_path / "cells" / "k1.pkl"
    saved = path.read_bytes()
    path.write_bytes(pickle.dumps({"trained_under": None}))  # a pickle, but not our entry
    assert store.load("k1", expected) == (False, None)
    path.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))  # one byte edited
    assert store.load("k1", expected) == (False, None)
    (tmp_path / "cells" / "k2.pkl").write_bytes(saved)  # a right entry under another key
    assert store.load("k2", expected) == (False, None)
    store.save("k3", {"a dict": 1})  # saved by us, but not the type the cell returns
    assert store.load("k3", expected) == (False, None)
    assert store.load("k3") == (True, {"a dict": 1})
    assert caplog.text.count("running it again") == 4


def test_results_json_is_written_last_and_an_old_folder_is_replaced_whole(tmp_path):
    seen = []
    outcome = Outcome(results={"n": 1}, report="r", summary="s",
                      files={"sub/a.txt": lambda p: seen.append(
                          sorted(x.name for x in p.parent.parent.iterdir()))
                          or p.write_text("a")})
    target = tmp_path / "run"
    write_run_folder(target, {"command": "x"}, outcome)
    assert "results.json" not in seen[0] and "config.json" in seen[0]
    (target / "stale.txt").write_text("from an earlier run")
    again = dataclasses.replace(outcome, results={"n": 2})
    assert write_run_folder(target, {"command": "x"}, again, overwrite=True) == target
    assert json.loads((target / "results.json").read_text()) == {"n": 2}
    assert (target / "sub" / "a.txt").read_text() == "a" and not (target / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging or replaced copy left


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_run_folder_gets_the_mode_mkdir_would_give_it(tmp_path, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        folder = write_run_folder(tmp_path / "run", {"command": "x"},
                                  Outcome(results={}, report="r", summary="s"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700


@pytest.mark.parametrize("make, message", [
    (lambda: SweepConfig(model="m", noise="fake_nowhere"), "'depolarizing' or an offline fake backend"),
    (lambda: SweepConfig(model="m", scales=(1.0,)), "not scales"),
    (lambda: SweepConfig(model="m", noise="fake_manila", levels=(0.1,)), "not levels"),
    (lambda: SweepConfig(model="m", levels=(0.0, 1.5)), "must be a probability in [0, 1]"),
    (lambda: SweepConfig(model="m", shots=0), "shots must be >= 1"),
    (lambda: SweepConfig(model="m", shots=10, repetitions=1), "at least 2 repetitions"),
    (lambda: RunConfig(model="m", backend="fake_manila", samples=0), "samples must be >= 1"),
    (lambda: RunConfig(model="m", backend="fake_manila", shots=0), "shots must be"),
    (lambda: _tiny_ablation(seeds=(0,)), "needs from 2 to 100 seeds"),
    (lambda: TrainConfig(threads=0), "threads must be"),
    (lambda: ModelSpec(num_layers=0), "num_layers must be"),
])
def test_the_python_api_rejects_what_the_cli_rejects(make, message):
    with pytest.raises(ConfigError) as info:
        make()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_device_names_are_canonical_in_the_config():
    assert SweepConfig(model="m", noise=" Manila ").noise == "fake_manila"
    assert SweepConfig(model="m", noise="fake_manila").level_values() == (0.5, 1.0, 2.0, 4.0)


def test_a_model_spec_is_fitted_to_the_data_and_checked_against_it(tmp_path):
    spec = ModelSpec(router="linear")
    assert spec.for_data(2, 3).num_features == 2 and spec.for_data(2, 3).num_classes == 3
    with pytest.raises(ConfigError, match="set for 4 features but the data has 2"):
        ModelSpec(num_features=4).for_data(2, 2)
    with pytest.raises(ConfigError, match="2 features but the circuit has 1 qubits"):
        run_experiment(TrainRun(model=ModelSpec(num_qubits=1)), tmp_path / "t", progress=False)
    assert not (tmp_path / "t").exists()


def test_every_cell_names_the_type_it_returns():
    """The store reuses a kept result only of the type a cell's ``__call__`` is annotated to
    return, so each annotation must name a real class of the cell's module."""
    import importlib
    import inspect

    names = ("ablation", "calibrate", "compare", "reproduce", "run", "sweep", "train")
    cells = []
    for name in names:
        module = importlib.import_module(f"qmoe_qiskit.experiments.{name}")
        for cls in vars(module).values():
            call = getattr(cls, "__dict__", {}).get("__call__")
            if inspect.isclass(cls) and cls.__module__ == module.__name__ and call and \
                    "progress" in (call.__kwdefaults__ or {}):
                returned = result_type(cls.__new__(cls))
                assert returned is not None and inspect.isclass(getattr(module, returned)), cls
                cells.append(cls.__name__)
    assert {"TrainCell", "ModelCell", "LevelCell"} <= set(cells) and len(cells) >= 9, cells


@pytest.mark.parametrize("argv", [["ablation", "--quick"],
                                  ["reproduce", "--quick", "--claims", "3"]])
def test_a_study_dry_run_says_how_long_it_would_take_and_runs_nothing(argv, tmp_path, capsys,
                                                                      monkeypatch):
    import re

    from qmoe_qiskit.cli import main

    monkeypatch.chdir(tmp_path)
    trained = []
    monkeypatch.setattr("qmoe_qiskit.training._train", lambda *a, **k: trained.append(a))
    assert main([*argv, "--dry-run", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"qmoe {argv[0]} --dry-run: \d+ cells; about \d+ (s|min|h) \(\d+ "
                     r"trainings of up to \d+ epochs, one step", out), out
    assert "nothing was run or written" in out
    assert not trained and not list(tmp_path.iterdir())
