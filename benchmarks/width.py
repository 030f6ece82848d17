"""The exact simulator at width: seconds per step against the memory-bandwidth floor, and threads.

One step is what a training step of the paper router (RY embedding + 3 layers of RY and CZ,
basis-state probabilities folded onto 2 experts) asks of the exact simulator: the forward
pass of a batch of 32 (inputs varying, weights shared, as a QNN binds them) and the adjoint
gradients of one outcome functional. For each width, 1 and 2 simulator threads and single
precision (``dtype="complex64"``, float32 for this real router) on 1 thread take turns (BLAS
pinned to one thread, ``--rounds`` rounds, median); single precision's largest errors against
double on one batch are reported beside them.

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


def step(n: int, rng: np.random.Generator, dtype: str = "complex128"):
    """One step's simulator work for ``n`` qubits, with fresh inputs each call."""
    circuit = final_measurements(paper_ansatz(n, LAYERS, num_outputs=2).circuit).unmeasured
    program = compile_circuit(circuit, dtype)
    projector = [DiagonalOrPauli.projector(np.arange(1 << n) % 2 == 0)]
    weights = np.random.default_rng(n).uniform(0, np.pi, circuit.num_parameters - n)

    def run(values=None):
        if values is None:
            values = np.hstack([rng.uniform(0, np.pi, (BATCH, n)),
                                np.tile(weights, (BATCH, 1))])
        probs = program.basis_probabilities(values)
        return probs, program.expectation_gradients(values, projector)[1]

    run.weights = weights
    return run


def kernel_passes(n: int) -> float:
    """Passes over the batch's states one step makes: every kernel call (a chunk's product, a
    monomial op, a layer's cross terms) counted once per state it carries, the forward pass's
    one and the backward sweep's state and adjoint vector (the ideal: 3(2L + 1) = 21)."""
    from qmoe_qiskit.simulation import statevector

    count = [0.0]
    originals = {name: getattr(statevector, name)
                 for name in ("apply_chunk", "apply_mono", "fill_cross")}

    def counted(kernel):
        def run(state, *args, **kwargs):
            count[0] += state.shape[0] * state.shape[1] / BATCH
            return kernel(state, *args, **kwargs)
        return run

    for name, kernel in originals.items():
        setattr(statevector, name, counted(kernel))
    try:
        step(n, np.random.default_rng(0))()
    finally:
        for name, kernel in originals.items():
            setattr(statevector, name, kernel)
    return count[0]


def single_error(n: int, double, single) -> tuple[float, float]:
    """Largest absolute differences between complex64 and complex128 on one batch: of the
    basis-state probabilities, and of the gradients relative to their largest magnitude."""
    values = np.hstack([np.random.default_rng(7).uniform(0, np.pi, (BATCH, n)),
                        np.tile(double.weights, (BATCH, 1))])
    p64, g64 = double(values)
    p32, g32 = single(values)
    return (float(np.abs(p32 - p64).max()),
            float(np.abs(g32 - g64).max() / np.abs(g64).max()))


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
              "floor | × arithmetic floor | 2 threads (s) | 2 threads / 1 | complex64, 1 thread "
              "(s) | complex64 / complex128 | max abs error of p | max relative error of "
              "gradients | state passes (ideal 21) |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in [int(q) for q in args.qubits.split(",")]:
            runs = {"double": step(n, rng), "single": step(n, rng, "complex64")}
            set_threads(1)
            for run in runs.values():
                run()  # warm-up: compilation
            times: dict[str, list[float]] = {"1": [], "2": [], "single": []}
            for _ in range(args.rounds):
                for key, count, run in (("1", 1, runs["double"]), ("2", 2, runs["double"]),
                                        ("single", 1, runs["single"])):
                    set_threads(count)
                    tic = time.perf_counter()
                    run()
                    times[key].append(time.perf_counter() - tic)
            one, two, single = (float(np.median(times[c])) for c in ("1", "2", "single"))
            set_threads(1)
            p_error, g_error = single_error(n, runs["double"], runs["single"])
            passes = kernel_passes(n)
            floor = 3 * (2 * LAYERS + 1) * 2 * BATCH * (1 << n) * 8 / bandwidth
            flops = arithmetic_floor(n, rate)
            rows.append({"qubits": n, "floor_s": floor, "arithmetic_floor_s": flops,
                         "one_thread_s": one, "two_threads_s": two, "single_s": single,
                         "single_probability_error": p_error,
                         "single_gradient_error": g_error, "state_passes": passes,
                         "rounds": times})
            print(f"| {n} | {floor:.4f} | {flops:.4f} | {one:.4f} | {one / floor:.1f} | "
                  f"{one / flops:.1f} | {two:.4f} | {two / one:.2f} | {single:.4f} | "
                  f"{single / one:.2f} | {p_error:.1e} | {g_error:.1e} | {passes:.0f} |",
                  flush=True)
    set_threads(None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"bandwidth_bytes_per_s": bandwidth, "gemm_flops_per_s": rate,
                                    "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
