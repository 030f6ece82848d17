"""How good the studies' time estimates are: what ``--dry-run`` predicts against the wall time
of the same study, run right after it in the same process (the ratio is what counts: the
machine is noisy, and both numbers see the same load).

Each study's estimate is its ``estimate`` (what ``--dry-run`` prints, unrounded: one training
step of each model, and one forward pass where the study scores under noise, timed on a
batch); the run is
``run_experiment`` into a temporary folder. Estimates assume every epoch runs: early stopping
can only make a run shorter.

    .venv/bin/python benchmarks/estimates.py [--full]

``--full`` adds the default ablation (5 seeds, up to 100 epochs; about 2 minutes) and every
claim of ``reproduce --quick`` (on the digits stand-in; about 2 minutes).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from qmoe_qiskit.data import DataSpec
from qmoe_qiskit.experiments import AblationConfig, SweepConfig, TrainRun, run_experiment
from qmoe_qiskit.experiments.ablation import QUICK
from qmoe_qiskit.experiments.reproduce import QUICK as REPRODUCE_QUICK
from qmoe_qiskit.experiments.reproduce import ReproduceConfig
from qmoe_qiskit.models import ModelSpec
from qmoe_qiskit.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="add the default ablation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_experiment(TrainRun(data=DataSpec(n_samples=300), model=ModelSpec(router="quantum",
                                                                              ansatz="sel"),
                                train=TrainConfig(epochs=5)), root / "sel", progress=False)
        studies = {
            "ablation --quick": AblationConfig(**QUICK),
            "reproduce --quick --claims 2,3": ReproduceConfig(claims=(2, 3), **REPRODUCE_QUICK),
            "sweep --retrain --engine aer (3 levels, 3 epochs)": SweepConfig(
                model=str(root / "sel"), levels=(0.0, 0.01, 0.02), retrain=True, engine="aer",
                train=TrainConfig(epochs=3, patience=None), baseline=False),
        }
        if args.full:
            studies["ablation (default)"] = AblationConfig()
            studies["reproduce --quick (digits stand-in)"] = ReproduceConfig(**REPRODUCE_QUICK)
        print(f"{platform.machine()}, {platform.python_version()}")
        print("| study | estimated | took | took / estimated |")
        print("|---|---:|---:|---:|")
        for i, (name, config) in enumerate(studies.items()):
            estimate, _ = config.estimate(config.plan())
            tic = time.perf_counter()
            run_experiment(config, root / f"run{i}", progress=False)
            took = time.perf_counter() - tic
            print(f"| {name} | {estimate:.0f} s | {took:.0f} s | {took / estimate:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
