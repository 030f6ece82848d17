"""The exact simulator at width: seconds per step against the memory-bandwidth floor, and threads.

One step is what a training step of the paper router (RY embedding + 3 layers of RY and CZ,
basis-state probabilities folded onto 2 experts) asks of the exact simulator: the forward
pass of a batch of 32 (inputs varying, weights shared, as a QNN binds them) and the adjoint
gradients of one outcome functional. For each width, 1 and 2 simulator threads take turns
(BLAS pinned to one thread, ``--rounds`` rounds, median).

The floor is the time to move the bytes an ideal adjoint step must move, at this machine's
single-thread copy bandwidth (measured here with ``np.copyto`` on 256 MiB): 3(2L + 1) = 21
passes over the batch's states (forward: one per layer and embedding; backward: the state
and its adjoint vector undone, and one more for the cross terms), each pass a read and a write
of 32 × 2**n float64 amplitudes (the router is real).

The arithmetic floor is the least arithmetic a step needs (3 flops per amplitude per rotation,
about 3 × the forward pass's) at the rate this machine's single thread multiplies a 16-wide
chunk: where it exceeds the bandwidth floor, a step cannot reach the bandwidth floor.

    .venv/bin/python benchmarks/width.py [--qubits 10,12,14,16,18,20 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from qmoe_qiskit.circuits import paper_ansatz
from qmoe_qiskit.primitives.sampling import final_measurements
from qmoe_qiskit.simulation import set_threads
from qmoe_qiskit.simulation.statevector import DiagonalOrPauli, compile_circuit

BATCH = 32
LAYERS = 3


def copy_bandwidth() -> float:
    """Bytes per second of one thread's ``np.copyto`` (read + write counted), best of 5."""
    a = np.ones(32 << 20)  # 256 MiB
    b = np.empty_like(a)
    best = np.inf
    for _ in range(5):
        tic = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - tic)
    return 2 * a.nbytes / best


def gemm_rate() -> float:
    """Flops per second of one thread's ``(N, 16) @ (16, 16)`` float64 product (the shape of
    a 4-qubit chunk on the lowest qubits), best of 5."""
    a = np.random.default_rng(1).random((1 << 21, 16))
    m = np.random.default_rng(2).random((16, 16))
    best = np.inf
    for _ in range(5):
        tic = time.perf_counter()
        a @ m
        best = min(best, time.perf_counter() - tic)
    return 2 * 16 * a.size / best


def arithmetic_floor(n: int, rate: float) -> float:
    """Seconds of the least arithmetic a step needs at ``rate``: every rotation (``n`` per
    layer, embedding included: ``n (L + 1)``) is 3 flops per amplitude (two products and a
    sum) on the state forward, and on the state and its adjoint backward, plus about as much
    again for the cross terms: 3 × that of the forward pass."""
    return 3 * n * (LAYERS + 1) * 3 * BATCH * (1 << n) / rate


def step(n: int, rng: np.random.Generator):
    """One step's simulator work for ``n`` qubits, with fresh inputs each call."""
    circuit = final_measurements(paper_ansatz(n, LAYERS, num_outputs=2).circuit).unmeasured
    program = compile_circuit(circuit)
    projector = [DiagonalOrPauli.projector(np.arange(1 << n) % 2 == 0)]
    weights = rng.uniform(0, np.pi, circuit.num_parameters - n)

    def run():
        values = np.hstack([rng.uniform(0, np.pi, (BATCH, n)), np.tile(weights, (BATCH, 1))])
        program.basis_probabilities(values)
        program.expectation_gradients(values, projector)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", default="10,12,14,16,18,20")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/width.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(1):
        bandwidth, rate = copy_bandwidth(), gemm_rate()
        print(f"{platform.machine()}, {os.cpu_count()} cores, BLAS 1 thread, load "
              f"{os.getloadavg()[0]:.2f}; single-thread copy {bandwidth / 1e9:.1f} GB/s, "
              f"16-wide GEMM {rate / 1e9:.1f} GFLOP/s; batch {BATCH}, {LAYERS} layers, median "
              f"of {args.rounds}\n")
        print("| qubits | bandwidth floor (s) | arithmetic floor (s) | 1 thread (s) | × bandwidth "
              "floor | × arithmetic floor | 2 threads (s) | 2 threads / 1 |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in [int(q) for q in args.qubits.split(",")]:
            run = step(n, rng)
            set_threads(1)
            run()  # warm-up: compilation
            times: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.rounds):
                for count in (1, 2):
                    set_threads(count)
                    tic = time.perf_counter()
                    run()
                    times[count].append(time.perf_counter() - tic)
            one, two = (float(np.median(times[c])) for c in (1, 2))
            floor = 3 * (2 * LAYERS + 1) * 2 * BATCH * (1 << n) * 8 / bandwidth
            flops = arithmetic_floor(n, rate)
            rows.append({"qubits": n, "floor_s": floor, "arithmetic_floor_s": flops,
                         "one_thread_s": one, "two_threads_s": two, "rounds": times})
            print(f"| {n} | {floor:.4f} | {flops:.4f} | {one:.4f} | {one / floor:.1f} | "
                  f"{one / flops:.1f} | {two:.4f} | {two / one:.2f} |", flush=True)
    set_threads(None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"bandwidth_bytes_per_s": bandwidth, "gemm_flops_per_s": rate,
                                    "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
