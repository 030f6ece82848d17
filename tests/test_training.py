"""The training loop: exact repeats, early stopping, history."""

import numpy as np
import torch

from qmoe_qiskit.data import DataSpec, prepare
from qmoe_qiskit.models import ModelSpec, build_model
from qmoe_qiskit.training import TrainConfig, evaluate, seed_everything, train

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
