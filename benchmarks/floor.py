"""The floor at 2 qubits: one training step of a quantum router against a same-size MLP router.

Models (``build_model``, 2 features, 2 classes, 2 linear experts): the published router
(``sel``: RX embedding, 3 strongly-entangling layers read as <Z_i> through ``EstimatorQNN`` in
``TorchConnector``, then ``Linear(2, 2)`` and softmax), the paper router (``paper``: RY + CZ,
3 layers, basis-state probabilities through ``SamplerQNN``) and the MLP router (hidden width 8).
A step is zero_grad, forward, cross-entropy, backward and Adam on a batch of 32, one thread.
The models take turns, ``--steps`` steps each per round, for ``--rounds`` rounds; the median
per-step time of each is reported with its ratio to the MLP router, so all see the same load.

Two more rows split the published router's step:

- *primitives replayed*: the estimator and gradient hand back one recorded result instantly,
  so the step costs only qiskit-machine-learning's and torch's glue (the floor no primitive
  can go under without leaving the QNN seam);
- *primitive calls*: the estimator's and the gradient's ``run`` alone on the bindings a step
  makes, with fresh inputs each call.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/floor.py [--rounds 7 --steps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qmoe_qiskit.models import ModelSpec, build_model

BATCH = 32


def make_step(router: str, ansatz: str = "sel"):
    """A model's training step on one fixed batch, and the model."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(num_features=2, num_classes=2, router=router, ansatz=ansatz))
    x = torch.rand(BATCH, 2) * np.pi
    y = torch.randint(0, 2, (BATCH,))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()  # warm-up: compilation and caches
    return step, model


def replayed(model):
    """The published router's step with its primitives handing back one recorded result."""
    qnn = model.router.layer.qnn
    recorded = {}
    estimator, gradient = qnn.estimator, qnn.gradient
    run, grad_run = estimator.run, gradient.run

    def replay(key, method):
        def call(*args, **kwargs):
            if key not in recorded:
                recorded[key] = method(*args, **kwargs)
            return recorded[key]
        return call

    estimator.run, gradient.run = replay("forward", run), replay("gradient", grad_run)


def primitive_calls(model):
    """The estimator's and gradient's ``run`` on one step's bindings, fresh inputs each call."""
    qnn = model.router.layer.qnn
    circuit, observables = qnn.circuit, list(qnn.observables)
    weights = model.router.layer.connector.weight.detach().numpy()
    rng = np.random.default_rng(0)
    params = list(circuit.parameters)[2:]

    def call():
        values = np.hstack([rng.uniform(0, np.pi, (BATCH, 2)), np.tile(weights, (BATCH, 1))])
        qnn.estimator.run([(circuit, o, values) for o in observables], precision=0.0).result()
        tiled = np.tile(values, (len(observables), 1))
        qnn.gradient.run([circuit] * len(tiled), [o for o in observables for _ in range(BATCH)],
                         tiled, parameters=[params] * len(tiled)).result()

    call()
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/floor.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    published, published_model = make_step("quantum", "sel")
    paper, _ = make_step("quantum", "paper")
    mlp, _ = make_step("mlp")
    replay_step, replay_model = make_step("quantum", "sel")
    replayed(replay_model)
    replay_step()
    calls = primitive_calls(published_model)
    rows = {"published router (EstimatorQNN)": published, "paper router (SamplerQNN)": paper,
            "MLP router": mlp, "published router, primitives replayed": replay_step,
            "published router's primitive calls alone": calls}
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, fn in rows.items():
            tic = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - tic) / args.steps * 1e3)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    base = medians["MLP router"]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, 1 thread, load {os.getloadavg()[0]:.2f}; median of "
          f"{args.rounds} rounds x {args.steps} steps\n")
    print("| step | ms | ratio to the MLP router |\n|---|---:|---:|")
    for name, value in medians.items():
        print(f"| {name} | {value:.3f} | {value / base:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"medians_ms": medians, "rounds_ms": times}, indent=2))


if __name__ == "__main__":
    main()
