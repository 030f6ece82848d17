"""Seconds per training epoch: this project's exact path against the alternatives, in one run.

Table 1 trains the published architecture (2 qubits, RX embedding, 3 strongly-entangling layers,
<Z> + Linear(2, 2) adapter, 2 Linear(2, 2) experts; Two Moons, 1000 samples, batch 32, Adam) with

  (a) this project's exact primitives with adjoint gradients (the default),
  (b) qiskit-machine-learning's default path (reference estimator, parameter shift; a few batches,
      extrapolated to an epoch),
  (c) PennyLane default.qubit with backprop and (d) lightning.qubit with adjoint
      (optional: `bash scripts/setup.sh --bench`).

Table 2 gives seconds per epoch and the peak traced (Python + NumPy) memory of one training step
for the paper ansatz router at several qubit and layer counts (1000 samples of random features in
[0, π], 2 experts).

Table 3 trains the same published model under noise (``--noisy``):

  (e) this project's fast noisy engine (batched density matrix, reverse-mode gradients) under
      depolarizing ε (0.01 by default: p1 = p2 = readout flip = ε on rz, sx, x, cx),
  (f) the Aer engine with batched parameter shift (the path before the fast engine; a few
      batches, extrapolated),
  (g) PennyLane default.mixed with backprop, running the very gate sequence the transpiler made
      for (e), with Aer's own depolarizing channels (Kraus maps) after every gate and a bit flip
      before each readout; its forward values are checked against (e) first,
  (h) the fast engine under fake_brisbane's calibrated device noise (on the qubits the
      transpiler chose).

Table 4 (``--noisy``) gives seconds per epoch and peak traced memory of the paper ansatz router
(3 layers) under depolarizing ε on 2, 4, 6 and 8 qubits with the fast engine.

    .venv/bin/python benchmarks/train_speed.py [--epochs 7] [--scaling-qubits 2,4,6,8,10,12]
    .venv/bin/python benchmarks/train_speed.py --noisy --skip-scaling [--epsilon 0.01]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from qiskit_machine_learning.neural_networks import EstimatorQNN
from torch import nn

from qmoe_qiskit.data import DataSpec, prepare
from qmoe_qiskit.models import LinearExpert, MixtureOfExperts, ModelSpec, QuantumRouter, build_model

BATCH = 32


class Trainer:
    """One model with its optimiser; ``epoch()`` trains one epoch and returns its seconds."""

    def __init__(self, model: nn.Module, x: np.ndarray, y: np.ndarray):
        xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=0.01)
        self.loss_fn = nn.CrossEntropyLoss()
        self.batches = [(xt[i:i + BATCH], yt[i:i + BATCH]) for i in range(0, len(xt), BATCH)]
        self.step(*self.batches[0])  # warm-up (compilation, caches)

    def step(self, xb, yb) -> None:
        self.opt.zero_grad()
        self.loss_fn(self.model(xb), yb).backward()
        self.opt.step()

    def epoch(self, max_batches: int | None = None) -> float:
        """Seconds for one epoch; with ``max_batches``, time that many and extrapolate."""
        timed = self.batches if max_batches is None else self.batches[:max_batches]
        tic = time.perf_counter()
        for xb, yb in timed:
            self.step(xb, yb)
        return (time.perf_counter() - tic) / len(timed) * len(self.batches)


def qiskit_default_model() -> nn.Module:
    """The same architecture on qiskit-machine-learning's default estimator and gradient."""
    model = build_model(ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="sel"))
    layer = model.router.layer
    a = layer.ansatz
    qnn = EstimatorQNN(circuit=a.circuit, observables=list(a.observables),
                       input_params=list(a.inputs), weight_params=list(a.weights),
                       default_precision=0.0)  # same exact values; the default 1/64 adds noise
    from qiskit_machine_learning.connectors import TorchConnector

    layer.connector = TorchConnector(qnn, initial_weights=layer.connector.weight.detach().numpy())
    return model


def pennylane_model(device: str, diff_method: str) -> nn.Module:
    import pennylane as qml

    dev = qml.device(device, wires=2)

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(2), rotation="X")
        qml.StronglyEntanglingLayers(weights, wires=range(2))
        return [qml.expval(qml.PauliZ(i)) for i in range(2)]

    class Router(nn.Module):
        num_experts = 2

        def __init__(self):
            super().__init__()
            self.circuit = qml.qnn.TorchLayer(circuit, {"weights": (3, 2, 3)})
            self.adapter = nn.Linear(2, 2)

        def forward(self, x):
            return torch.softmax(self.adapter(self.circuit(x).float()), dim=-1)

    return MixtureOfExperts(Router(), [LinearExpert(2, 2) for _ in range(2)])


def _alternate(paths: dict[str, tuple], epochs: int) -> list[dict]:
    """Time each path (trainer, batches per timing or None for whole epochs, rounds) one epoch
    at a time, taking turns, so all see the same machine load; the median per path."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(epochs):
        for name, (trainer, max_batches, rounds) in paths.items():
            if round_ < rounds:
                times[name].append(trainer.epoch(max_batches))
    return [{"path": name, "s_per_epoch": float(np.median(t)), "epochs_timed": len(t)}
            for name, t in times.items()]


def published_table(epochs: int) -> list[dict]:
    """Fast paths (a) and (c) take turns, one epoch each, ``epochs`` rounds, and report the
    median: on a noisy machine both see the same conditions. (b) and (d) are extrapolated."""
    data = prepare(DataSpec(dataset="moons", n_samples=1000, seed=0))
    x = np.concatenate([data.x_train, data.x_val, data.x_test])  # 1000 samples per epoch
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    published = ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="sel")
    paths: dict[str, tuple] = {}  # name -> (trainer, max_batches, rounds)
    torch.manual_seed(0)
    paths["(a) qmoe-qiskit exact + adjoint"] = (Trainer(build_model(published), x, y), None, epochs)
    torch.manual_seed(0)
    paths["(b) qiskit-machine-learning default (parameter shift), extrapolated"] = (
        Trainer(qiskit_default_model(), x, y), 3, 1)
    try:
        import pennylane  # noqa: F401
    except ImportError:
        print("PennyLane is not installed (bash scripts/setup.sh --bench): skipping (c) and (d)")
    else:
        torch.manual_seed(0)
        paths["(c) PennyLane default.qubit, backprop"] = (
            Trainer(pennylane_model("default.qubit", "backprop"), x, y), None, epochs)
        torch.manual_seed(0)
        paths["(d) PennyLane lightning.qubit, adjoint, extrapolated"] = (
            Trainer(pennylane_model("lightning.qubit", "adjoint"), x, y), 8, 1)
    rows = _alternate(paths, epochs)
    base = rows[0]["s_per_epoch"]
    for row in rows:
        row["ratio_to_a"] = row["s_per_epoch"] / base
    return rows


def scaling_table(qubits: list[int], layers: list[int]) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for n in qubits:
        x = rng.uniform(0, np.pi, (1000, n))
        y = (x.sum(axis=1) > n * np.pi / 2).astype(int)
        for depth in layers:
            torch.manual_seed(0)
            router = QuantumRouter(n, 2, ansatz="paper", num_layers=depth)
            model = MixtureOfExperts(router, [LinearExpert(n, 2) for _ in range(2)])
            seconds = Trainer(model, x, y).epoch()
            # Peak memory of one training step (every step of an epoch is alike), traced
            # separately because tracing slows the timed run.
            tracemalloc.start()
            Trainer(model, x[:BATCH], y[:BATCH])
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append({"qubits": n, "layers": depth, "s_per_epoch": seconds,
                         "peak_mib": peak / 2**20})
            print(f"  paper ansatz n={n:2d} L={depth}: {seconds:7.2f} s/epoch, "
                  f"peak {peak / 2**20:7.1f} MiB", flush=True)
    return rows


def noisy_model(simulation) -> nn.Module:
    """The published model, its router on the noisy primitives with the gradients its engine
    gives (``training_primitives``: reverse mode on the fast engine, batched parameter shift on
    Aer; ``auto`` chooses per circuit)."""
    from qmoe_qiskit.noise_models import training_primitives

    model = build_model(ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="sel"))
    model.set_primitives(**training_primitives(simulation))
    return model


def pennylane_mixed_model(reference: nn.Module, simulation, epsilon: float) -> nn.Module:
    """PennyLane default.mixed, backprop, on the transpiled gates of ``reference``'s router,
    a depolarizing channel (Aer's Kraus maps) after every gate and a bit flip before readout.
    Its adapter and experts start from ``reference``'s weights."""
    import pennylane as qml
    from qiskit.quantum_info import Kraus
    from qiskit_aer.noise import depolarizing_error

    from qmoe_qiskit.primitives.angles import affine_row

    layer = reference.router.layer
    circuit = layer.ansatz.circuit
    isa = simulation.compile(circuit).isa
    index = {p: i for i, p in enumerate(circuit.parameters)}
    input_columns = [index[p] for p in layer.ansatz.inputs]
    weights = [index[p] for p in layer.ansatz.weights]
    kraus = {1: Kraus(depolarizing_error(epsilon, 1)).data,
             2: Kraus(depolarizing_error(epsilon, 2)).data}
    gates = []  # (name, wires, coefficient row or None, offset)
    for inst in isa.data:
        name = inst.operation.name
        if name in ("barrier", "measure"):
            continue
        wires = [isa.find_bit(q).index for q in inst.qubits]
        row, offset = (affine_row(inst.operation.params[0], index) if name == "rz"
                       else (None, 0.0))
        gates.append((name, wires, None if row is None else torch.as_tensor(row), offset))
    dev = qml.device("default.mixed", wires=2)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def qnode(inputs, weights_):
        values = torch.zeros(inputs.shape[:-1] + (len(index),), dtype=torch.float64)
        values[..., input_columns] = inputs.double()
        values[..., weights] = weights_.double()
        for name, wires, row, offset in gates:
            if name == "rz":
                qml.RZ(values @ row + offset, wires=wires[0])
            elif name == "sx":
                qml.SX(wires=wires[0])
            elif name == "x":
                qml.PauliX(wires=wires[0])
            else:
                qml.CNOT(wires=wires)
            qml.QubitChannel(kraus[len(wires)], wires=wires)
        for wire in range(2):
            qml.BitFlip(epsilon, wires=wire)
        return [qml.expval(qml.PauliZ(i)) for i in range(2)]

    class Router(nn.Module):
        num_experts = 2

        def __init__(self):
            super().__init__()
            self.circuit = qml.qnn.TorchLayer(qnode, {"weights_": (len(weights),)})
            with torch.no_grad():
                self.circuit.weights_.copy_(layer.connector.weight.detach().double())
            self.adapter = reference.router.adapter

        def forward(self, x):
            return torch.softmax(self.adapter(self.circuit(x).float()), dim=-1)

    return MixtureOfExperts(Router(), reference.experts)


def noisy_table(epochs: int, epsilon: float) -> list[dict]:
    """Paths (e), (g) and (h) take turns, one epoch each, ``epochs`` rounds (median); (f) is
    extrapolated from a few batches."""
    from qmoe_qiskit.backends import get_backend
    from qmoe_qiskit.noise_models import NoisySimulation, depolarizing, device

    data = prepare(DataSpec(dataset="moons", n_samples=1000, seed=0))
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    fast = NoisySimulation(depolarizing(epsilon), engine="fast")
    paths: dict[str, tuple] = {}
    torch.manual_seed(0)
    ours = noisy_model(fast)
    paths[f"(e) qmoe-qiskit fast engine + reverse mode, depolarizing {epsilon:g}"] = (
        Trainer(ours, x, y), None, epochs)
    torch.manual_seed(0)
    paths["(f) qmoe-qiskit Aer engine + batched parameter shift, extrapolated"] = (
        Trainer(noisy_model(NoisySimulation(depolarizing(epsilon), engine="aer")), x, y), 3, 1)
    try:
        import pennylane  # noqa: F401
    except ImportError:
        print("PennyLane is not installed (bash scripts/setup.sh --bench): skipping (g)")
    else:
        torch.manual_seed(0)
        reference = noisy_model(fast)
        mixed = pennylane_mixed_model(reference, fast, epsilon)
        probe = torch.as_tensor(x[:16], dtype=torch.float32)
        with torch.no_grad():  # the same noisy circuit: equal router readings
            np.testing.assert_allclose(mixed.router.circuit(probe).numpy(),
                                       reference.router.layer(probe).numpy(), atol=1e-6)
        paths["(g) PennyLane default.mixed, backprop, same gates and channels"] = (
            Trainer(mixed, x, y), None, epochs)
    brisbane = get_backend("fake_brisbane")
    torch.manual_seed(0)
    paths["(h) qmoe-qiskit fast engine, fake_brisbane device noise"] = (
        Trainer(noisy_model(NoisySimulation(device(brisbane, qubits=range(brisbane.num_qubits)),
                                            backend=brisbane)), x, y), None, epochs)
    rows = _alternate(paths, epochs)
    for row in rows:
        row["ratio_to_e"] = row["s_per_epoch"] / rows[0]["s_per_epoch"]
    return rows


def noisy_scaling_table(qubits: list[int], epsilon: float) -> list[dict]:
    """The paper router (3 layers) under depolarizing noise, fast engine, 1000 samples."""
    from qmoe_qiskit.noise_models import (
        AdjointNoisyEstimatorGradient,
        AdjointNoisySamplerGradient,
        NoisyEstimator,
        NoisySampler,
        NoisySimulation,
        depolarizing,
    )

    rng = np.random.default_rng(0)
    rows = []
    for n in qubits:
        x = rng.uniform(0, np.pi, (1000, n))
        y = (x.sum(axis=1) > n * np.pi / 2).astype(int)
        torch.manual_seed(0)
        router = QuantumRouter(n, 2, ansatz="paper", num_layers=3)
        model = MixtureOfExperts(router, [LinearExpert(n, 2) for _ in range(2)])
        simulation = NoisySimulation(depolarizing(epsilon))
        sampler, estimator = NoisySampler(simulation), NoisyEstimator(simulation)
        model.set_primitives(sampler=sampler, estimator=estimator,
                             sampler_gradient=AdjointNoisySamplerGradient(sampler),
                             estimator_gradient=AdjointNoisyEstimatorGradient(estimator))
        seconds = Trainer(model, x, y).epoch()
        tracemalloc.start()
        Trainer(model, x[:BATCH], y[:BATCH])
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append({"qubits": n, "s_per_epoch": seconds, "peak_mib": peak / 2**20})
        print(f"  noisy paper router n={n}: {seconds:7.2f} s/epoch, peak "
              f"{peak / 2**20:8.1f} MiB", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=7,
                        help="rounds of one epoch each for the fast paths (median reported)")
    parser.add_argument("--scaling-qubits", default="2,4,6,8,10,12")
    parser.add_argument("--scaling-layers", default="1,3,6")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-published", action="store_true")
    parser.add_argument("--noisy", action="store_true", help="tables 3 and 4: training under noise")
    parser.add_argument("--epsilon", type=float, default=0.01)
    parser.add_argument("--noisy-qubits", default="2,4,6,8")
    parser.add_argument("--json", default="benchmarks/results/train_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"machine: {machine}; torch {torch.__version__}")

    rows = [] if args.skip_published else published_table(args.epochs)
    if rows:
        print("\n| path | s / epoch | ratio to (a) |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['path']} | {row['s_per_epoch']:.3f} | {row['ratio_to_a']:.1f} |")
    noisy, noisy_scaling = [], []
    if args.noisy:
        noisy = noisy_table(args.epochs, args.epsilon)
        print("\n| path (under noise) | s / epoch | ratio to (e) |\n|---|---:|---:|")
        for row in noisy:
            print(f"| {row['path']} | {row['s_per_epoch']:.3f} | {row['ratio_to_e']:.2f} |")
        print(f"\nnoisy scaling (paper router, 3 layers, depolarizing {args.epsilon:g}):")
        noisy_scaling = noisy_scaling_table([int(v) for v in args.noisy_qubits.split(",")],
                                            args.epsilon)

    scaling = []
    if not args.skip_scaling:
        print("\nscaling (paper ansatz router, 1000 samples, batch 32):")
        scaling = scaling_table([int(v) for v in args.scaling_qubits.split(",")],
                                [int(v) for v in args.scaling_layers.split(",")])
        print("\n| qubits | layers | s / epoch | peak MiB |\n|---:|---:|---:|---:|")
        for row in scaling:
            print(f"| {row['qubits']} | {row['layers']} | {row['s_per_epoch']:.2f} | "
                  f"{row['peak_mib']:.1f} |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "published": rows, "scaling": scaling,
                               "noisy": noisy, "noisy_scaling": noisy_scaling}, indent=2))


if __name__ == "__main__":
    main()
