"""Seconds per noise level of the exact (density-matrix) sweep, and the whole 6-level sweep.

Table 1: paper-ansatz routers (3 layers, 2 experts) at 2, 4 and 8 qubits, 200 test samples of
random features, depolarizing epsilon = 0.01: seconds to evaluate one level (one Aer call with
all 200 bindings, readout applied), after the circuit was transpiled once.
Table 2: the full exact sweep of the published 2-qubit router (sel, 3 layers) over the six
default levels on 200 samples, as `qmoe sweep` runs it (without baseline training).

    .venv/bin/python benchmarks/noise_sweep.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from qmoe_qiskit.experiments.sweep import DEPOLARIZING_LEVELS
from qmoe_qiskit.models import LinearExpert, MixtureOfExperts, QuantumRouter
from qmoe_qiskit.noise_models import NoisyEstimator, NoisySampler, NoisySimulation, depolarizing

SAMPLES = 200


def level_seconds(model: MixtureOfExperts, x: np.ndarray, simulation: NoisySimulation,
                  repeats: int = 3) -> float:
    xt = torch.as_tensor(x, dtype=torch.float32)
    model.set_primitives(sampler=NoisySampler(simulation), estimator=NoisyEstimator(simulation))
    with torch.no_grad():
        model(xt)  # transpile once (cached), warm up
        times = []
        for _ in range(repeats):
            tic = time.perf_counter()
            model(xt)
            times.append(time.perf_counter() - tic)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", default="2,4,8")
    parser.add_argument("--json", default="benchmarks/results/noise_sweep.json")
    args = parser.parse_args()
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"machine: {machine}")
    rng = np.random.default_rng(0)
    per_level = []
    for n in (int(v) for v in args.qubits.split(",")):
        torch.manual_seed(0)
        model = MixtureOfExperts(QuantumRouter(n, 2, ansatz="paper", num_layers=3),
                                 [LinearExpert(n, 2) for _ in range(2)])
        x = rng.uniform(0, np.pi, (SAMPLES, n))
        seconds = level_seconds(model, x, NoisySimulation(depolarizing(0.01)))
        per_level.append({"qubits": n, "s_per_level": seconds})
        print(f"  paper router n={n}: {seconds:.3f} s per level", flush=True)

    torch.manual_seed(0)
    model = MixtureOfExperts(QuantumRouter(2, 2, ansatz="sel", num_layers=3),
                             [LinearExpert(2, 2) for _ in range(2)])
    x = torch.as_tensor(rng.uniform(0, np.pi, (SAMPLES, 2)), dtype=torch.float32)
    tic = time.perf_counter()
    base = NoisySimulation(depolarizing(0.0))
    with torch.no_grad():
        for level in DEPOLARIZING_LEVELS:
            simulation = base.with_noise(depolarizing(level))
            model.set_primitives(sampler=NoisySampler(simulation),
                                 estimator=NoisyEstimator(simulation))
            model.gates(x)
            model(x)
    sweep = time.perf_counter() - tic
    print("\n| router qubits | s / level (200 samples, exact) |\n|---:|---:|")
    for row in per_level:
        print(f"| {row['qubits']} | {row['s_per_level']:.3f} |")
    print(f"\nfull 6-level exact sweep, 2-qubit sel router, {SAMPLES} samples: {sweep:.2f} s")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "per_level": per_level,
                               "six_level_sweep_s": sweep}, indent=2))


if __name__ == "__main__":
    main()
