"""A stock qiskit-machine-learning QNN made fast by passing this toolkit's estimator and
gradient: a tutorial's ``EstimatorQNN`` (``zz_feature_map`` + ``real_amplitudes``, observable
Z...Z) against the same QNN on Qiskit's ``StatevectorEstimator`` with qiskit-ml's
parameter-shift gradient. Both are timed in one run, alternating, on the same batches; the
forward values and gradients are checked to agree first.

    .venv/bin/python benchmarks/dropin_speed.py [--qubits 2,4] [--batch 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from qiskit.circuit.library import real_amplitudes, zz_feature_map
from qiskit.primitives import StatevectorEstimator
from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient
from qiskit_machine_learning.neural_networks import EstimatorQNN

from qmoe_qiskit.simulation import ExactEstimator, ExactEstimatorGradient


def qnns(qubits: int):
    feature_map, ansatz = zz_feature_map(qubits), real_amplitudes(qubits, reps=2)
    circuit = feature_map.compose(ansatz)
    common = dict(circuit=circuit, input_params=feature_map.parameters,
                  weight_params=ansatz.parameters, default_precision=0.0)
    reference = StatevectorEstimator()
    return (EstimatorQNN(estimator=reference,
                         gradient=ParamShiftEstimatorGradient(reference), **common),
            EstimatorQNN(estimator=ExactEstimator(), gradient=ExactEstimatorGradient(),
                         **common))


def step(qnn, x, w) -> float:
    tic = time.perf_counter()
    qnn.forward(x, w)
    qnn.backward(x, w)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", default="2,4")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}; batch {args.batch}; median of {args.rounds} rounds")
    print("\n| qubits | parameters | reference + parameter shift (s / step) | "
          "qmoe-qiskit exact + adjoint (s / step) | speed-up |")
    print("|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for n in (int(q) for q in args.qubits.split(",")):
        reference, ours = qnns(n)
        x = rng.uniform(0, np.pi, (args.batch, reference.num_inputs))
        w = rng.uniform(0, 2 * np.pi, reference.num_weights)
        np.testing.assert_allclose(ours.forward(x, w), reference.forward(x, w), atol=1e-10)
        for mine, theirs in zip(ours.backward(x, w), reference.backward(x, w)):
            if theirs is not None:
                np.testing.assert_allclose(mine, theirs, atol=1e-8)
        times = {"ref": [], "ours": []}
        for _ in range(args.rounds):  # alternate: both see the same machine load
            times["ref"].append(step(reference, x, w))
            times["ours"].append(step(ours, x, w))
        ref, mine = np.median(times["ref"]), np.median(times["ours"])
        print(f"| {n} | {reference.num_inputs} + {reference.num_weights} | {ref:.3f} | "
              f"{mine:.4f} | {ref / mine:.0f}× |")


if __name__ == "__main__":
    main()
