"""What the job layer costs around the QPU, measured in the runtime's local testing mode.

A 2-qubit sel router (3 layers, 2 linear experts) evaluated on SAMPLES random inputs at 1024 shots
on fake_brisbane (127 qubits), as `qmoe run` runs it:

- compile: the first transpilation of the router for the device (low-error layout, ISA);
- submit: the local-mode job with all bindings in one PUB (a simulator, not a QPU);
- cached: the same evaluation again, answered from the result cache (what a re-run costs);
- plan: the dry run (compile + cost estimate, nothing submitted);
- one PUB per sample: PER_PUB bindings sent as PER_PUB separate PUBs in one job (what a naive
  per-sample loop produces) against one PUB holding all of them, in the same run.

    .venv/bin/python benchmarks/job_layer.py
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from qiskit_ibm_runtime.executor_sampler import Sampler as ExecutorSampler

from qmoe_qiskit.jobs import JobOptions, Ledger, ResultCache, RuntimeSampler, connect
from qmoe_qiskit.models import LinearExpert, MixtureOfExperts, QuantumRouter
from qmoe_qiskit.primitives import SamplerEstimator
from qmoe_qiskit.transpile import compile_for_backend

SAMPLES = 200
SHOTS = 1024
PER_PUB = 20  # the per-sample layout costs seconds per PUB locally: keep this small


def evaluate(model, x, connection, root: Path, *, plan_only=False) -> tuple[float, dict]:
    tic = time.perf_counter()
    sampler = RuntimeSampler(connection, JobOptions(shots=SHOTS), cache=ResultCache(root),
                             ledger=Ledger(root / "ledger.jsonl"), plan_only=plan_only)
    with sampler, model.using(sampler=sampler, estimator=SamplerEstimator(sampler)), \
            torch.no_grad():
        model.forward_with_gates(x)
    return time.perf_counter() - tic, sampler


def main() -> None:
    torch.manual_seed(0)
    model = MixtureOfExperts(QuantumRouter(2, 2, ansatz="sel", num_layers=3),
                             [LinearExpert(2, 2), LinearExpert(2, 2)])
    x = torch.rand(SAMPLES, 2) * np.pi
    connection = connect("fake_brisbane")
    root = Path(tempfile.mkdtemp())
    rows = []
    plan_s, planned = evaluate(model, x, connection, root, plan_only=True)
    submit_s, submitted = evaluate(model, x, connection, root)
    cached_s, cached = evaluate(model, x, connection, root)
    assert submitted.stats()["jobs_submitted"] == 1 and cached.stats()["cache_hits"] == 1
    record = planned.records[0]
    rows += [("plan (dry run, includes first compile)", plan_s),
             ("evaluate: submit + wait (local simulator)", submit_s),
             ("evaluate again: cache hit", cached_s)]

    circuit = model.router.layer.ansatz.circuit.copy()
    circuit.measure_all()
    tic = time.perf_counter()
    isa = compile_for_backend(circuit, connection.backend).isa
    compile_s = time.perf_counter() - tic
    values = np.column_stack([x.numpy(), np.tile(
        model.router.layer.connector.weight.detach().numpy(), (SAMPLES, 1))])
    options = JobOptions(shots=SHOTS).runtime_options()
    timings = {}
    values = values[:PER_PUB]
    for label, pubs in (("one PUB, all bindings", [(isa, values)]),
                        ("one PUB per sample", [(isa, row) for row in values])):
        tic = time.perf_counter()
        ExecutorSampler(mode=connection.backend, options=options).run(pubs).result()
        timings[label] = time.perf_counter() - tic

    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; "
          f"{SAMPLES} samples x {SHOTS} shots on {connection.name}; layout {record.layout}, "
          f"depth {record.depth}, {record.two_qubit_gates} two-qubit gates; estimated QPU time "
          f"{record.shot_seconds:.1f} s")
    print("\n| step | seconds |\n|---|---:|")
    print(f"| compile for the device (once per circuit) | {compile_s:.2f} |")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} |")
    one, many = timings["one PUB, all bindings"], timings["one PUB per sample"]
    print("\n| submission layout | seconds | ratio |\n|---|---:|---:|")
    print(f"| one PUB, all {PER_PUB} bindings | {one:.2f} | 1.0 |")
    print(f"| {PER_PUB} PUBs, one binding each | {many:.2f} | {many / one:.1f} |")


if __name__ == "__main__":
    main()
