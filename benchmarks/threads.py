"""Torch threads for small models on a shared machine: seconds per training epoch of the
published router with 1 intra-op thread against torch's default, alone and beside other work.

The published architecture (2 qubits, 3 strongly-entangling layers, ⟨Z⟩ + Linear(2, 2) adapter,
2 Linear(2, 2) experts) on Two Moons (1000 samples: 600 training, batch 32) goes through
``qmoe_qiskit.training.train`` one epoch at a time, with ``TrainConfig(threads=n)``, under
three loads:

- alone: nothing else running;
- beside a busy process: one single-threaded busy loop in another process (a shared machine);
- beside its twin: the same training in a second process at the same time (two experiments,
  or two cells of one, side by side).

Settings take turns within one run (the machine is noisy), and each cell of the table is the
median over ROUNDS epochs. The project's default is what ``default_threads`` picks.

    .venv/bin/python benchmarks/threads.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from qmoe_qiskit.data import DataSpec, prepare
from qmoe_qiskit.models import ModelSpec, build_model
from qmoe_qiskit.training import TrainConfig, default_threads, seed_everything, train

LOADS = ("alone", "beside a busy process", "beside its twin")


def epoch_seconds(threads: int, epochs: int) -> list[float]:
    """Seconds of each of ``epochs`` single-epoch training runs with ``threads`` threads."""
    data = prepare(DataSpec(n_samples=1000, seed=0))
    seed_everything(0)
    model = build_model(ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="sel"))
    config = TrainConfig(epochs=1, patience=None, threads=threads)
    train(model, data.x_train[:64], data.y_train[:64], data.x_val, data.y_val, config,
          progress=False)  # warm-up: imports, compiled circuits
    times = []
    for _ in range(epochs):
        tic = time.perf_counter()
        train(model, data.x_train, data.y_train, data.x_val, data.y_val, config, progress=False)
        times.append(time.perf_counter() - tic)
    return times


def _worker(threads: int, epochs: int, queue) -> None:
    queue.put(epoch_seconds(threads, epochs))


def measure(threads: int, load: str, epochs: int) -> float:
    """Median seconds per epoch of ``threads`` threads under ``load``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(threads, epochs, queue))
               for _ in range(2 if load == "beside its twin" else 1)]
    busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
            if load == "beside a busy process" else None)
    try:
        for w in workers:
            w.start()
        times = [t for _ in workers for t in queue.get()]
        for w in workers:
            w.join()
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="epochs per setting and load")
    parser.add_argument("--json", default="benchmarks/results/threads.json")
    args = parser.parse_args()
    default = torch.get_num_threads()
    chosen = default_threads(build_model(ModelSpec(num_features=2, num_classes=2,
                                                   router="quantum", ansatz="sel")))
    settings = sorted({1, default})
    machine = f"{platform.processor() or platform.machine()}, torch default {default} threads"
    print(f"machine: {machine}; default_threads picks {chosen} for this model")
    rows = {}
    for load in LOADS:
        for threads in settings:  # the settings take turns under each load
            rows[(load, threads)] = measure(threads, load, args.rounds)
            print(f"  {load:<24} threads={threads}: {rows[(load, threads)]:.3f} s/epoch",
                  flush=True)
    header = " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in settings)
    print(f"\n| load | {header} | ratio |\n|---|" + "---:|" * (len(settings) + 1))
    for load in LOADS:
        cells = " | ".join(f"{rows[(load, t)]:.3f}" for t in settings)
        ratio = rows[(load, settings[-1])] / rows[(load, settings[0])]
        print(f"| {load} | {cells} | {ratio:.1f}x |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "default_threads": chosen,
                               "seconds_per_epoch": {f"{load}|{t}": s
                                                     for (load, t), s in rows.items()}},
                              indent=2))


if __name__ == "__main__":
    main()
