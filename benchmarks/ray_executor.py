"""Serial against Ray on this machine, and a projection of the full `qmoe reproduce` run to a
cluster.

1. Ray's startup (a local instance, with the toolkit's version probe) and its per-task overhead
   (trivial cells through the executor: throughput on 2 workers, and one task's round trip).
2. The quick ablation, and a 6-level depolarizing sweep with retraining for 4 seeds (four
   sweeps of 7 cells), each serial and on local Ray with 2 workers, timed in this one run;
   with ``--studies routing`` the routing study instead (``qmoe study routing``, quick or,
   with ``--full``, the full one; the MNIST tasks with ``--data-dir``).
3. The full reproduce run projected to a 4-node x 16-core cluster (64 one-CPU tasks at a time)
   from its measured per-cell training times (the results.json of a full run) plus the measured
   per-task overhead, by longest-first list scheduling; with the histogram of cell times.

    .venv/bin/python benchmarks/ray_executor.py [--reproduce runs/reproduce/results.json]
    .venv/bin/python benchmarks/ray_executor.py --studies routing --full \
        --data-dir ../shared/data --keep runs/routing-bench
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qmoe_qiskit.data import DataSpec
from qmoe_qiskit.experiments import TrainRun, run_experiment
from qmoe_qiskit.experiments.ablation import QUICK, AblationConfig
from qmoe_qiskit.experiments.base import serial
from qmoe_qiskit.experiments.executors import RayExecutor
from qmoe_qiskit.experiments.routing import QUICK as ROUTING_QUICK
from qmoe_qiskit.experiments.routing import VARIANTS, RoutingStudy
from qmoe_qiskit.experiments.sweep import DEPOLARIZING_LEVELS, SweepConfig
from qmoe_qiskit.models import ModelSpec
from qmoe_qiskit.training import TrainConfig


@dataclass(frozen=True)
class Nothing:
    """A cell that does nothing: what remains is the executor's own cost."""

    index: int

    @property
    def label(self) -> str:
        return f"nothing {self.index}"

    def __call__(self, *, progress: bool = False) -> int:
        return self.index


def timed(function) -> tuple[float, object]:
    tic = time.perf_counter()
    out = function()
    return time.perf_counter() - tic, out


def overhead(executor: RayExecutor, count: int) -> dict:
    cells = [Nothing(i) for i in range(count)]
    through, _ = timed(lambda: executor(cells, progress=False))
    single = [timed(lambda: executor([Nothing(0)], progress=False))[0] for _ in range(20)]
    return {"tasks": count, "seconds": through, "per_task_ms": 1000 * through / count,
            "round_trip_ms": 1000 * float(np.median(single))}


def routing_study(data_dir: str | None, full: bool) -> dict:
    """The routing study, quick or full: name -> (configs, what)."""
    config = RoutingStudy(data_dir=data_dir, **({} if full else ROUTING_QUICK))
    cells = len(config.plan())
    name = f"{'full' if full else 'quick'} routing study"
    return {name: ([config], f"{len(config.selected_tasks())} tasks x {len(VARIANTS)} variants "
                             f"x {len(config.seeds)} seeds = {cells} cells")}


def studies(work: Path) -> dict:
    """name -> (list of experiment configs, what they are)."""
    model = work / "model"
    run_experiment(TrainRun(data=DataSpec(n_samples=1000),
                            model=ModelSpec(router="quantum", ansatz="sel"),
                            train=TrainConfig(epochs=30, patience=5)), model, progress=False)
    sweeps = [SweepConfig(model=str(model), levels=DEPOLARIZING_LEVELS, retrain=True, seed=s,
                          baseline=True, train=TrainConfig(epochs=10, patience=None))
              for s in range(4)]
    return {"quick ablation": ([AblationConfig(**QUICK)], "3 seeds x 7 models = 21 cells"),
            "sweep, 6 levels x 4 seeds, retrained": (sweeps, "4 sweeps x 7 cells = 28 cells")}


def run_study(configs, executor, work: Path, tag: str) -> float:
    tic = time.perf_counter()
    for i, config in enumerate(configs):
        run_experiment(config, work / f"{tag}-{i}", progress=False, executor=executor)
    return time.perf_counter() - tic


@dataclass(frozen=True)
class Timed:
    """A cell whose run time is appended to ``durations``."""

    cell: object
    durations: list

    @property
    def label(self) -> str:
        return self.cell.label

    def __call__(self, *, progress: bool = False):
        seconds, result = timed(lambda: self.cell(progress=progress))
        self.durations.append(seconds)
        return result


def timing_serial(durations: list[list[float]]):
    """The serial executor, recording each cell's time (one list per experiment)."""
    def run(cells, **kwargs):
        durations.append([])
        return serial([Timed(cell, durations[-1]) for cell in cells], **kwargs)
    return run


def makespan(durations: list[float], slots: int, per_task: float = 0.0) -> float:
    """Longest-first list scheduling of ``durations`` onto ``slots`` workers."""
    finish = [0.0] * slots
    heapq.heapify(finish)
    for t in sorted(durations, reverse=True):
        heapq.heappush(finish, heapq.heappop(finish) + t + per_task)
    return max(finish)


def project(results_path: Path, per_task: float, startup: float, slots: int) -> dict:
    results = json.loads(results_path.read_text())
    times = [r["seconds"] for models in results["models"].values() for m in models.values()
             for r in m["per_seed"]]
    ordered = sorted(times, reverse=True)
    span = makespan(times, slots, per_task) + startup
    edges = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    counts, _ = np.histogram(times, bins=edges)
    return {"cells": len(times), "serial_seconds": float(sum(times)),
            "longest_cell": float(ordered[0]), "slots": slots, "per_task_s": per_task,
            "startup_s": startup, "projected_seconds": span,
            "speedup": float(sum(times)) / span,
            "histogram": {f"{lo}-{hi} s": int(c) for lo, hi, c in
                          zip(edges[:-1], edges[1:], counts)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reproduce", type=Path, default=None,
                        help="results.json of a full qmoe reproduce run, for the projection")
    parser.add_argument("--skip-studies", action="store_true")
    parser.add_argument("--studies", choices=("default", "routing"), default="default",
                        help="default: the quick ablation and the retrained sweep; routing: "
                             "the routing study")
    parser.add_argument("--full", action="store_true", help="the full routing study")
    parser.add_argument("--data-dir", default=None, help="with --studies routing: mnist/ here")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the studies' run folders here (default: a temporary folder)")
    args = parser.parse_args()
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = RayExecutor(num_cpus=1)
    startup, _ = timed(executor.connect)
    costs = overhead(executor, 400)
    print(f"Ray startup {startup:.2f} s; {costs['per_task_ms']:.1f} ms per trivial task "
          f"(2 workers), {costs['round_trip_ms']:.1f} ms one task's round trip")
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "python": platform.python_version(), "ray": ray.__version__,
           "startup_s": startup, "overhead": costs, "studies": {}}
    if not args.skip_studies:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) if args.keep is None else args.keep
            chosen = (routing_study(args.data_dir, args.full) if args.studies == "routing"
                      else studies(work))
            for k, (name, (configs, what)) in enumerate(chosen.items()):
                tag = name.split(",")[0].replace(" ", "_")
                # the order alternates so neither executor always runs second
                durations: list[list[float]] = []
                serial_run = timing_serial(durations)
                if k % 2:
                    serial_s = run_study(configs, serial_run, work, f"serial-{tag}")
                    ray_s = run_study(configs, executor, work, f"ray-{tag}")
                else:
                    ray_s = run_study(configs, executor, work, f"ray-{tag}")
                    serial_s = run_study(configs, serial_run, work, f"serial-{tag}")
                cells_s = sum(map(sum, durations))
                driver_s = serial_s - cells_s  # planning, aggregation, figures, files
                ideal = driver_s + sum(makespan(d, 2) for d in durations)
                out["studies"][name] = {"cells": what, "serial_s": serial_s, "ray_s": ray_s,
                                        "speedup": serial_s / ray_s, "cell_s": cells_s,
                                        "driver_s": driver_s, "ideal_2_workers_s": ideal,
                                        "longest_cell_s": max(map(max, durations))}
                print(f"{name} ({what}): serial {serial_s:.1f} s (cells {cells_s:.1f} s, "
                      f"driver {driver_s:.1f} s), Ray {ray_s:.1f} s, x{serial_s / ray_s:.2f}; "
                      f"ideal on 2 workers {ideal:.1f} s (x{serial_s / ideal:.2f})")
    if args.reproduce:
        per_task = costs["round_trip_ms"] / 1000
        out["projection"] = project(args.reproduce, per_task, startup, slots=64)
        p = out["projection"]
        print(f"reproduce: {p['cells']} cells, {p['serial_seconds']:.0f} s of cell time; "
              f"longest {p['longest_cell']:.0f} s; on 64 slots {p['projected_seconds']:.0f} s "
              f"(x{p['speedup']:.1f}); histogram {p['histogram']}")
    suffix = "" if args.studies == "default" else f"_{args.studies}{'_full' * args.full}"
    target = Path(__file__).parent / "results" / f"ray_executor{suffix}.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
    ray.shutdown()


if __name__ == "__main__":
    main()
