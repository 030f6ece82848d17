"""Peers side by side: one training step of the paper router here and in other simulators, by width.

The circuit is the paper router's (RY(x_q) embedding, then 3 layers of RY(w) on every qubit and
a CZ chain), read out as ⟨Z_0⟩. A step is the forward pass of a batch of 32 inputs and the
gradient of the batch's sum with respect to the weights. Each peer builds the very gate
sequence of the Qiskit circuit:

- **qmoe-qiskit**: `EstimatorQNN` on `ExactEstimator` + `ExactEstimatorGradient` in
  `TorchConnector`, the toolkit's own path;
- **PennyLane default.qubit**, backprop (torch), the batch broadcast;
- **PennyLane lightning.qubit**, adjoint (torch), the batch broadcast;
- **qulacs**: `ParametricQuantumCircuit.backprop`, one sample at a time;
- **TorchQuantum** (with ``--torchquantum-python``): batched statevector in torch, complex128,
  backprop, in an environment of its own (it needs qiskit < 1.0).

Before anything is timed, every peer's values and weight gradients are checked equal to the
toolkit's QNN in float64 (to 1e-6; the toolkit's own TorchConnector step to 1e-5 and 1e-6
relative, torch's gradients being float32). The peers in this process then take turns,
``--rounds`` rounds (a third of them from 16 qubits), median, one thread each (torch, BLAS and
OpenMP pinned); TorchQuantum's rounds run back to back in its own process. Peak memory
(``--memory``): by how much two steps raise the peak resident set of a fresh process above
what it holds once it has built one peer at one width (imports and construction excluded).

A peer that is not installed is reported as such (``bash scripts/setup.sh --bench`` installs
PennyLane, lightning and qulacs). qiskit-torch-module is not on this machine's package index.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peers.py [--qubits 2,4,8,12,16,20] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BATCH = 32
LAYERS = 3
PEERS = ("qmoe-qiskit", "PennyLane default.qubit (backprop)",
         "PennyLane lightning.qubit (adjoint)", "qulacs (backprop)")


def gates(n: int):
    """The paper router's unmeasured circuit and its gates: ``("ry", qubit, kind, index)``
    with kind ``"x"`` (input) or ``"w"`` (weight), and ``("cz", a, b)``."""
    from qmoe_qiskit.circuits import paper_ansatz
    from qmoe_qiskit.primitives.sampling import final_measurements

    ansatz = paper_ansatz(n, LAYERS, num_outputs=2)
    circuit = final_measurements(ansatz.circuit).unmeasured
    inputs = {p: i for i, p in enumerate(ansatz.inputs)}
    weights = {p: i for i, p in enumerate(ansatz.weights)}
    out = []
    for inst in circuit.data:
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if inst.operation.name == "ry":
            (param,) = inst.operation.params[0].parameters
            kind, index = ("x", inputs[param]) if param in inputs else ("w", weights[param])
            out.append(("ry", qubits[0], kind, index))
        elif inst.operation.name == "cz":
            out.append(("cz", *qubits))
        else:
            raise ValueError(f"unexpected gate {inst.operation.name}")
    return ansatz, circuit, out


def project(n: int):
    """The toolkit's step: returns ``step(x, w) -> (values, weight gradient of their sum)``."""
    import torch
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    from qmoe_qiskit.simulation import ExactEstimator, ExactEstimatorGradient

    ansatz, circuit, _ = gates(n)
    estimator = ExactEstimator()
    qnn = EstimatorQNN(circuit=circuit, observables=[SparsePauliOp("I" * (n - 1) + "Z")],
                       input_params=list(ansatz.inputs), weight_params=list(ansatz.weights),
                       estimator=estimator, gradient=ExactEstimatorGradient(estimator),
                       default_precision=0.0)
    connector = TorchConnector(qnn, initial_weights=np.zeros(qnn.num_weights))

    def step(x, w):
        with torch.no_grad():
            connector.weight.copy_(torch.as_tensor(w))
        connector.zero_grad()
        out = connector(torch.as_tensor(x))[:, 0]
        out.sum().backward()
        return out.detach().numpy(), connector.weight.grad.numpy().copy()

    def exact(x, w):  # the same QNN in float64 (TorchConnector hands torch float32 gradients)
        return qnn.forward(x, w)[:, 0], qnn.backward(x, w)[1][:, 0].sum(axis=0)

    step.exact = exact
    return step


def pennylane(n: int, device: str, method: str):
    import pennylane as qml
    import torch

    _, _, sequence = gates(n)
    dev = qml.device(device, wires=n)

    @qml.qnode(dev, interface="torch", diff_method=method)
    def circuit(x, w):
        for gate in sequence:
            if gate[0] == "ry":
                _, q, kind, i = gate
                qml.RY(x[:, i] if kind == "x" else w[i], wires=q)
            else:
                qml.CZ(wires=[gate[1], gate[2]])
        return qml.expval(qml.PauliZ(0))

    def step(x, w):
        xt = torch.as_tensor(x)
        wt = torch.as_tensor(w).requires_grad_(True)
        out = circuit(xt, wt)
        out.sum().backward()
        return out.detach().numpy(), wt.grad.numpy().copy()

    return step


def qulacs_step(n: int):
    from qulacs import Observable, ParametricQuantumCircuit, QuantumState

    _, _, sequence = gates(n)
    circuit = ParametricQuantumCircuit(n)
    slots = []  # per parametric gate: (kind, index)
    for gate in sequence:
        if gate[0] == "ry":
            circuit.add_parametric_RY_gate(gate[1], 0.0)
            slots.append(gate[2:])
        else:
            circuit.add_CZ_gate(gate[1], gate[2])
    observable = Observable(n)
    observable.add_operator(1.0, "Z 0")
    weight_slots = [(j, i) for j, (kind, i) in enumerate(slots) if kind == "w"]

    def step(x, w):
        values, grad = np.empty(len(x)), np.zeros(len(w))
        for b, row in enumerate(x):
            for j, (kind, i) in enumerate(slots):  # qulacs' RY(t) is exp(+i t/2 Y): t = -theta
                circuit.set_parameter(j, -(row[i] if kind == "x" else w[i]))
            state = QuantumState(n)
            circuit.update_quantum_state(state)
            values[b] = observable.get_expectation_value(state)
            partial = circuit.backprop(observable)
            for j, i in weight_slots:
                grad[i] -= partial[j]
        return values, grad

    return step


# TorchQuantum 0.1.8 imports qiskit < 1.0 (``qiskit.providers.aer``) when it loads, so it runs
# in an environment of its own (``--torchquantum-python``): this script, handed the gates,
# the batch and the number of steps, builds the circuit in complex128 and times its steps.
TORCHQUANTUM = r"""
import json, resource, sys, time
import numpy as np, torch, torchquantum as tq
torch.set_num_threads(1)
for module in list(sys.modules.values()):  # 0.1.8 fixes complex64 (macro.C_DTYPE): use 128
    if getattr(module, "__name__", "").startswith("torchquantum") and hasattr(module, "C_DTYPE"):
        module.C_DTYPE = torch.complex128
spec = json.loads(sys.stdin.read())
n, sequence, repeat = spec["n"], spec["gates"], spec["repeat"]
x, w = np.array(spec["x"]), np.array(spec["w"])
index = torch.arange(1 << n)
z0 = 1.0 - 2.0 * ((index >> (n - 1)) & 1).double()  # wire 0 is the most significant bit
def step():
    xt, wt = torch.as_tensor(x), torch.as_tensor(w).requires_grad_(True)
    qdev = tq.QuantumDevice(n_wires=n, bsz=len(x), device="cpu")
    for gate in sequence:
        if gate[0] == "ry":
            _, q, kind, i = gate
            tq.functional.ry(qdev, wires=q,
                             params=xt[:, i] if kind == "x" else wt[i].expand(len(x)))
        else:
            tq.functional.cz(qdev, wires=[gate[1], gate[2]])
    states = qdev.get_states_1d()
    assert states.dtype == torch.complex128, states.dtype
    out = (states.abs() ** 2 * z0).sum(-1)
    out.sum().backward()
    return out.detach().numpy(), wt.grad.numpy()
with open("/proc/self/statm") as f:
    before = int(f.read().split()[1]) * resource.getpagesize() // 1024
values, grad = step()
step()
added = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
times = []
for _ in range(repeat):
    tic = time.perf_counter()
    step()
    times.append(time.perf_counter() - tic)
print(json.dumps({"values": values.tolist(), "grad": grad.tolist(), "times": times,
                  "peak_mib": added}))
"""


def torchquantum(python: str, n: int, x, w, repeat: int) -> dict:
    """TorchQuantum's values, gradient and step times, from its own environment."""
    _, _, sequence = gates(n)
    spec = {"n": n, "gates": sequence, "x": x.tolist(), "w": w.tolist(), "repeat": repeat}
    done = subprocess.run([python, "-c", TORCHQUANTUM], input=json.dumps(spec),
                          capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"TorchQuantum failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.splitlines()[-1])


def make(peer: str, n: int):
    """The peer's step, or the reason it cannot run here."""
    try:
        if peer == PEERS[0]:
            return project(n)
        if peer == PEERS[1]:
            return pennylane(n, "default.qubit", "backprop")
        if peer == PEERS[2]:
            return pennylane(n, "lightning.qubit", "adjoint")
        return qulacs_step(n)
    except ImportError as exc:
        return f"not installed ({exc.name})"


def pin_threads() -> None:
    import torch

    torch.set_num_threads(1)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def batch(n: int, rng: np.random.Generator):
    return rng.uniform(0, np.pi, (BATCH, n)), rng.uniform(0, 2 * np.pi, n * LAYERS)


def resident_kib() -> int:
    """This process's resident set now, KiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_memory(peer: str, n: int) -> float | None:
    """MiB by which two steps raise the peak resident set of a fresh process above what it
    holds once it has built ``peer`` at ``n`` qubits (imports and construction excluded)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import peers, "
            f"numpy as np, resource; peers.pin_threads(); s = peers.make({peer!r}, {n}); "
            f"x, w = peers.batch({n}, np.random.default_rng(0)); "
            f"before = peers.resident_kib(); s(x, w); s(x, w); "
            f"print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        return None
    before, after = (int(v) for v in done.stdout.split()[-2:])
    return (after - before) / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", default="2,4,8,12,16,20")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory", action="store_true", help="also the peak memory per width")
    parser.add_argument("--skip", default="", help="'peer index:qubits' pairs not to run, "
                        "e.g. 1:20 (default.qubit's backprop at 20 qubits)")
    parser.add_argument("--torchquantum-python", default=None,
                        help="a Python with TorchQuantum (and qiskit < 1.0) to run it in")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/peers.json"))
    args = parser.parse_args()
    pin_threads()
    skip = {tuple(int(v) for v in pair.split(":")) for pair in args.skip.split(",") if pair}
    peers = PEERS + (("TorchQuantum (backprop)",) if args.torchquantum_python else ())
    rng = np.random.default_rng(0)
    rows = []
    print(f"{platform.machine()}, {os.cpu_count()} cores, one thread, load "
          f"{os.getloadavg()[0]:.2f}; batch {BATCH}, {LAYERS} layers, median of {args.rounds}\n")
    print("| qubits | " + " | ".join(f"{p} (s)" for p in peers) + " | "
          + " | ".join(f"{p} / qmoe-qiskit" for p in peers[1:]) + " |")
    print("|---:|" + "---:|" * (2 * len(peers) - 1))
    for n in [int(q) for q in args.qubits.split(",")]:
        x, w = batch(n, rng)
        steps = {p: (make(p, n) if (k, n) not in skip else "skipped")
                 for k, p in enumerate(PEERS)}
        reference = steps[PEERS[0]].exact(x, w)
        for peer, step in steps.items():
            if callable(step):
                values, grad = step(x, w)  # also the warm-up
                _check(peer, values, grad, reference)
        times: dict[str, list[float]] = {p: [] for p, s in steps.items() if callable(s)}
        rounds = args.rounds if n < 16 else max(1, args.rounds // 3)
        for _ in range(rounds):
            for peer in times:
                tic = time.perf_counter()
                steps[peer](x, w)
                times[peer].append(time.perf_counter() - tic)
        memory = {p: peak_memory(p, n) for p in times} if args.memory else {}
        if args.torchquantum_python and (len(PEERS), n) not in skip:
            got = torchquantum(args.torchquantum_python, n, x, w, rounds)
            _check(peers[-1], np.array(got["values"]), np.array(got["grad"]), reference)
            times[peers[-1]] = got["times"]
            memory[peers[-1]] = got["peak_mib"] if args.memory else None
        elif args.torchquantum_python:
            steps[peers[-1]] = "skipped"
        medians = {p: float(np.median(t)) for p, t in times.items()}
        rows.append({"qubits": n, "seconds": medians, "rounds": times, "peak_mib": memory,
                     "not_run": {p: s for p, s in steps.items() if isinstance(s, str)}})
        cell = {p: (f"{medians[p]:.4f}" if p in medians else str(steps[p])) for p in peers}
        ratio = {p: (f"{medians[p] / medians[PEERS[0]]:.2f}×" if p in medians else "—")
                 for p in peers[1:]}
        print(f"| {n} | " + " | ".join(cell[p] for p in peers) + " | "
              + " | ".join(ratio[p] for p in peers[1:]) + " |", flush=True)
        if args.memory:
            print("  MiB a step adds to the peak: " + ", ".join(
                f"{p} {m:.0f}" if m is not None else f"{p} failed" for p, m in memory.items()),
                flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows}, indent=2))


def _check(peer: str, values, grad, reference) -> None:
    """The peer's values and weight gradient equal the toolkit's float64 QNN's."""
    tolerance = {"atol": 1e-5, "rtol": 1e-6} if peer == PEERS[0] else {"atol": 1e-6, "rtol": 0}
    np.testing.assert_allclose(values, reference[0], err_msg=peer, **tolerance)
    np.testing.assert_allclose(grad, reference[1], err_msg=peer, **tolerance)


if __name__ == "__main__":
    main()
