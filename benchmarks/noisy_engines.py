"""The noisy engines side by side: the fast engine against Aer's density-matrix method, by width.

The paper router (RY embedding + 3 layers of RY and CZ, basis-state probabilities folded onto 2
experts) under depolarizing noise (p1 = p2 = readout flip = ``--epsilon`` on rz, sx, x, cx), a
batch of 32 random inputs in [0, pi]. For each width and engine, in one run, taking turns
(``--rounds`` rounds, median; one round for the full read from 8 qubits):

- *forward*: the noisy sampler's exact probabilities of the batch (``SamplerQNN.forward``);
- *step*: forward and the weights' gradient (``SamplerQNN.backward``): reverse mode on the
  fast engine, batched parameter shift (one Aer call for all shifted points) on Aer.

Both engines' forward values are checked equal (to 1e-8) before anything is timed. Two reads:

- *router*: the router as it is, reading qubit 0, whose light cone (the qubits that reach it
  through the CZ chains) is narrower than the circuit; both engines simulate only that cone
  (Aer by its own truncation, the fast engine by ``DensityProgram.restricted``);
- *full*: the same gates reading the last qubit instead, whose light cone is every qubit: what
  a width costs. Its training step is timed up to ``--full-step-max`` qubits.

Where neither engine is faster at every width, ``engine="auto"`` would follow the crossover;
on this machine the fast engine is faster at every width and read measured, so ``auto`` runs
it up to ``FAST_MEASURED_QUBITS`` (``noise_models/primitives.py``), the widest measured.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/noisy_engines.py [--qubits 2,...,10]
        [--full-qubits 2,...,10] [--full-step-max 7]
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

from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit_machine_learning.neural_networks import SamplerQNN

from qmoe_qiskit.models import QuantumRouter
from qmoe_qiskit.noise_models import NoisySimulation, depolarizing, training_primitives

BATCH = 32


def qnn_for(n: int, engine: str, epsilon: float, read: str = "router"):
    """The router's QNN on ``engine`` (``read="full"``: reading the last qubit instead), with
    its weights."""
    torch.manual_seed(0)
    router = QuantumRouter(n, 2, ansatz="paper", num_layers=3)
    primitives = training_primitives(NoisySimulation(depolarizing(epsilon), engine=engine))
    router.set_primitive(primitives["sampler"], primitives["sampler_gradient"])
    layer = router.layer
    qnn, weights = layer.qnn, layer.connector.weight.detach().numpy()
    if read == "full":
        circuit = QuantumCircuit(QuantumRegister(n, "q"), ClassicalRegister(1, "meas"))
        circuit.compose(qnn.circuit.remove_final_measurements(inplace=False), range(n),
                        inplace=True)
        circuit.measure(n - 1, 0)
        qnn = SamplerQNN(circuit=circuit, input_params=qnn.input_params,
                         weight_params=qnn.weight_params, sampler=primitives["sampler"],
                         gradient=primitives["sampler_gradient"])
    return qnn, weights


def timed(fn, repeat: int) -> float:
    tic = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - tic) / repeat


def measure(n: int, read: str, args, rng) -> dict:
    """One row of the table: both engines at width ``n``, taking turns."""
    x = rng.uniform(0, np.pi, (BATCH, n))
    qnns = {engine: qnn_for(n, engine, args.epsilon, read) for engine in ("fast", "aer")}
    outputs = [qnn.forward(x, w) for qnn, w in qnns.values()]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-8)
    qnn = qnns["fast"][0]
    cone = len(qnn.sampler.simulation.cone(qnn.circuit))
    steps = read == "router" or n <= args.full_step_max
    times = {(engine, what): [] for engine in qnns
             for what in (("forward", "step") if steps else ("forward",))}
    rounds = args.rounds if read == "router" or n < 8 else 1
    for _ in range(rounds):
        for engine, (qnn, w) in qnns.items():
            repeat = (10 if n < 7 else 3 if n < 9 else 1) if read == "router" else \
                (10 if n < 5 else 1)
            times[engine, "forward"].append(timed(lambda: qnn.forward(x, w), repeat))
            if steps:
                times[engine, "step"].append(
                    timed(lambda: (qnn.forward(x, w), qnn.backward(x, w)), repeat))
    ms = {key: 1e3 * float(np.median(t)) for key, t in times.items()}
    cells = {key: f"{v:.1f}" for key, v in ms.items()}
    faster = {what: ("fast" if ms["fast", what] <= ms["aer", what] else "Aer")
              if ("fast", what) in ms else "not run" for what in ("forward", "step")}
    print(f"| {n} | {cone} | {cells['fast', 'forward']} | {cells['aer', 'forward']} | "
          f"{cells.get(('fast', 'step'), 'not run')} | {cells.get(('aer', 'step'), 'not run')} "
          f"| {faster['forward']} | {faster['step']} |", flush=True)
    return {"qubits": n, "read": read, "cone": cone, "rounds": rounds,
            **{f"{e}_{w}_ms": v for (e, w), v in ms.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", default="2,3,4,5,6,7,8,9,10")
    parser.add_argument("--full-qubits", default="2,3,4,5,6,7,8,9,10",
                        help="widths of the full-cone read")
    parser.add_argument("--full-step-max", type=int, default=7,
                        help="the widest full-cone read whose training step is timed (Aer's "
                             "parameter shift at 8 qubits takes about 5 minutes a step)")
    parser.add_argument("--epsilon", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/noisy_engines.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    print(f"{platform.machine()}, {os.cpu_count()} cores, 1 thread, load "
          f"{os.getloadavg()[0]:.2f}; batch {BATCH}, depolarizing {args.epsilon}, median of "
          f"{args.rounds} rounds (1 for the full read from 8 qubits)\n")
    for read, widths in (("router", args.qubits), ("full", args.full_qubits)):
        print(f"\n*{read}* read (light cone: "
              f"{'that of qubit 0' if read == 'router' else 'every qubit'})\n")
        print("| qubits | cone | fast forward (ms) | Aer forward (ms) | fast step (ms) | "
              "Aer step (ms) | faster forward | faster step |\n"
              "|---:|---:|---:|---:|---:|---:|---|---|")
        for n in [int(q) for q in widths.split(",") if q]:
            rows.append(measure(n, read, args, rng))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
