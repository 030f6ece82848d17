"""Where the noisy engines cross: the fast engine against Aer's density-matrix method, by width.

The paper router (RY embedding + 3 layers of RY and CZ, basis-state probabilities folded onto 2
experts) under depolarizing noise (p1 = p2 = readout flip = ``--epsilon`` on rz, sx, x, cx), a
batch of 32 random inputs in [0, pi]. For each width and engine, in one run, taking turns
(``--rounds`` rounds, median):

- *forward*: the noisy sampler's exact probabilities of the batch (``SamplerQNN.forward``);
- *step*: forward and the weights' gradient (``SamplerQNN.backward``): reverse mode on the
  fast engine, batched parameter shift (one Aer call for all shifted points) on Aer.

Both engines' forward values are checked equal (to 1e-8) before anything is timed. The
crossover (the narrowest width from which Aer is faster at a training step) is what
``engine="auto"`` uses: ``noise_models.FAST_ENGINE_MAX_QUBITS``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/noisy_engines.py [--qubits 2,3,4,5,6,7,8]
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

from qmoe_qiskit.models import QuantumRouter
from qmoe_qiskit.noise_models import NoisySimulation, depolarizing, training_primitives

BATCH = 32


def qnn_for(n: int, engine: str, epsilon: float):
    """The router's QNN on ``engine``, with its weights and a batch of inputs."""
    torch.manual_seed(0)
    router = QuantumRouter(n, 2, ansatz="paper", num_layers=3)
    primitives = training_primitives(NoisySimulation(depolarizing(epsilon), engine=engine))
    router.set_primitive(primitives["sampler"], primitives["sampler_gradient"])
    layer = router.layer
    return layer.qnn, layer.connector.weight.detach().numpy()


def timed(fn, repeat: int) -> float:
    tic = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - tic) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", default="2,3,4,5,6,7,8")
    parser.add_argument("--epsilon", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/noisy_engines.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    print(f"{platform.machine()}, {os.cpu_count()} cores, 1 thread, load "
          f"{os.getloadavg()[0]:.2f}; batch {BATCH}, depolarizing {args.epsilon}, median of "
          f"{args.rounds}\n")
    print("| qubits | fast forward (ms) | Aer forward (ms) | fast step (ms) | Aer step (ms) | "
          "faster step |\n|---:|---:|---:|---:|---:|---|")
    for n in [int(q) for q in args.qubits.split(",")]:
        x = rng.uniform(0, np.pi, (BATCH, n))
        qnns = {engine: qnn_for(n, engine, args.epsilon) for engine in ("fast", "aer")}
        outputs = [qnn.forward(x, w) for qnn, w in qnns.values()]
        np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-8)
        times = {(engine, what): [] for engine in qnns for what in ("forward", "step")}
        for _ in range(args.rounds):
            for engine, (qnn, w) in qnns.items():
                repeat = 3 if n >= 7 else 10
                times[engine, "forward"].append(timed(lambda: qnn.forward(x, w), repeat))
                times[engine, "step"].append(
                    timed(lambda: (qnn.forward(x, w), qnn.backward(x, w)), repeat))
        ms = {key: 1e3 * float(np.median(t)) for key, t in times.items()}
        faster = "fast" if ms["fast", "step"] <= ms["aer", "step"] else "Aer"
        rows.append({"qubits": n, **{f"{e}_{w}_ms": v for (e, w), v in ms.items()}})
        print(f"| {n} | {ms['fast', 'forward']:.1f} | {ms['aer', 'forward']:.1f} | "
              f"{ms['fast', 'step']:.1f} | {ms['aer', 'step']:.1f} | {faster} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
