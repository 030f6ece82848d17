"""The training loop: exact repeats, early stopping, history."""

import numpy as np
import torch

from qmoe_qiskit.data import DataSpec, prepare
from qmoe_qiskit.models import (
    LinearExpert,
    LinearRouter,
    MixtureOfExperts,
    ModelSpec,
    QuantumRouter,
    build_model,
)
from qmoe_qiskit.training import (
    TrainConfig,
    default_threads,
    evaluate,
    seed_everything,
    train,
)

DATA = prepare(DataSpec(n_samples=200, seed=0))


def _run(spec, config):
    seed_everything(config.seed)
    model = build_model(spec)
    history = train(model, DATA.x_train, DATA.y_train, DATA.x_val, DATA.y_val, config,
                    progress=False)
    return model, history


def test_a_seeded_run_repeats_exactly():
    spec = ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="paper")
    config = TrainConfig(epochs=3, seed=7)
    m1, h1 = _run(spec, config)
    m2, h2 = _run(spec, config)
    assert h1.loss == h2.loss and h1.val_accuracy == h2.val_accuracy
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_early_stopping_keeps_the_best_weights():
    spec = ModelSpec(num_features=2, num_classes=2, router="linear")
    model, history = _run(spec, TrainConfig(epochs=200, lr=0.5, patience=3, seed=1))
    assert history.stopped_early and len(history.loss) < 200
    assert len(history.loss) == len(history.val_loss) == len(history.train_accuracy)
    best = history.best_epoch
    assert history.val_loss[best] == min(history.val_loss)
    with torch.no_grad():
        out = model(torch.as_tensor(DATA.x_val, dtype=torch.float32))
        val_loss = torch.nn.functional.cross_entropy(out, torch.as_tensor(DATA.y_val)).item()
    assert abs(val_loss - history.val_loss[best]) < 1e-5


def test_training_improves_held_out_accuracy():
    spec = ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="sel")
    seed_everything(0)
    untrained = evaluate(build_model(spec), DATA.x_test, DATA.y_test)["accuracy"]
    model, _ = _run(spec, TrainConfig(epochs=15, seed=0))
    trained = evaluate(model, DATA.x_test, DATA.y_test)["accuracy"]
    assert trained > 0.8 and trained > untrained
    assert np.isfinite(trained)


class ThreadSpy(LinearExpert):
    """An expert that records torch's intra-op thread count on every forward pass."""

    seen: set

    def forward(self, x):
        self.seen.add(torch.get_num_threads())
        return super().forward(x)


def _spied_model():
    expert = ThreadSpy(2, 2)
    expert.seen = set()
    return MixtureOfExperts(LinearRouter(2, 2), [expert, LinearExpert(2, 2)]), expert


def test_small_models_train_on_one_thread_and_the_count_is_restored():
    torch.set_num_threads(2)
    model, spy = _spied_model()
    train(model, DATA.x_train, DATA.y_train, DATA.x_val, DATA.y_val, TrainConfig(epochs=1),
          progress=False)
    assert spy.seen == {1} and torch.get_num_threads() == 2
    model, spy = _spied_model()
    train(model, DATA.x_train, DATA.y_train, DATA.x_val, DATA.y_val,
          TrainConfig(epochs=1, threads=2), progress=False)
    assert spy.seen == {2}


def test_wide_circuits_keep_torchs_default_thread_count():
    assert default_threads(build_model(ModelSpec(num_features=2, num_classes=2,
                                                 router="quantum", num_layers=1))) == 1
    wide = MixtureOfExperts(QuantumRouter(2, 2, ansatz="paper", num_qubits=10, num_layers=1),
                            [LinearExpert(2, 2), LinearExpert(2, 2)])
    assert default_threads(wide) is None


def test_load_balancing_spreads_the_load_that_plain_training_collapses(tmp_path):
    """Four experts on Two Moons, seed 0: without the balancing loss two experts die; with
    weight 1 every expert takes inputs and the load's entropy rises (the run folder reports
    both)."""
    import json

    from qmoe_qiskit.cli import main

    routing = {}
    for weight in ("0", "1"):
        out = tmp_path / f"w{weight}"
        assert main(["train", "--router", "quantum", "--ansatz", "sel", "--experts", "4",
                     "--balance-weight", weight, "--epochs", "30", "--samples", "500",
                     "--no-progress", "--out", str(out)]) == 0
        routing[weight] = json.loads((out / "results.json").read_text())["routing"]
        assert "load entropy" in (out / "report.md").read_text()
    assert routing["0"]["dead_fraction"] >= 0.25 and routing["1"]["dead_fraction"] == 0.0
    assert routing["1"]["entropy"] > routing["0"]["entropy"] + 0.3
