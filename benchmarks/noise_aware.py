"""Does training under the fitted noise help on the hardware it was fitted to? The closed loop
on hardware stand-ins with hidden noise, over several seeds.

For each seed: a model is trained exactly (the published router, Two Moons); it runs on a
stand-in of fake_manila whose noise is hidden from the toolkit; `qmoe compare` fits its noise
models to that run; a second model, same seed, is trained under the more likely fit
(`qmoe train --noise-from`); it runs on the same stand-in. Scored on the 200 held-out test
samples, 2000 shots each. Four hidden truths: the device's calibrated noise x1 (low) and x4
(high), depolarizing 0.01 (low) and 0.05 (high). Reports, per truth, both accuracies on the
stand-in (mean ± std over seeds) and their paired difference with a 95% t-interval.

    .venv/bin/python benchmarks/noise_aware.py [--seeds 5] [--shots 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from qmoe_qiskit.backends import get_backend
from qmoe_qiskit.data import DataSpec
from qmoe_qiskit.experiments import CompareConfig, RunConfig, TrainRun, run_experiment
from qmoe_qiskit.experiments.noise_from import NoiseFrom
from qmoe_qiskit.models import ModelSpec
from qmoe_qiskit.noise_models import depolarizing, stand_in
from qmoe_qiskit.training import TrainConfig

DEVICE = "fake_manila"


def truths() -> dict:
    basis = [g for g in get_backend(DEVICE).operation_names
             if g not in {"measure", "delay", "reset", "if_else", "for_loop", "switch_case",
                          "while_loop"}]
    return {
        "device x1 (low)": lambda: stand_in(DEVICE, scale=1.0),
        "device x4 (high)": lambda: stand_in(DEVICE, scale=4.0),
        "depolarizing 0.01 (low)": lambda: stand_in(
            DEVICE, noise_model=depolarizing(0.01, basis_gates=basis), name="depol_0.01"),
        "depolarizing 0.05 (high)": lambda: stand_in(
            DEVICE, noise_model=depolarizing(0.05, basis_gates=basis), name="depol_0.05"),
    }


def on_stand_in(model: Path, target, work: Path, name: str, shots: int, seed: int) -> Path:
    run = RunConfig(model=str(model), backend=target, shots=shots, seed=seed,  # hidden truth
                    cache_dir=str(work / "cache"))
    return run_experiment(run, work / name, progress=False)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="noise-aware-"))
    data = DataSpec(dataset="moons", n_samples=1000, seed=0)
    spec = ModelSpec(router="quantum", ansatz="sel")
    rows = []
    print(f"| hidden truth | fitted (best) | ideal-trained on stand-in | noise-trained on "
          f"stand-in | difference [95% CI] | s |")
    print("|---|---|---|---|---|---:|")
    ideal_models = {}
    for seed in range(args.seeds):
        ideal_models[seed] = run_experiment(
            TrainRun(data=data, model=spec, train=TrainConfig(epochs=args.epochs, seed=seed)),
            work / f"ideal_{seed}", progress=False)[1]
    for label, make in truths().items():
        tic = time.perf_counter()
        target = make()
        ideal_acc, noisy_acc, fits = [], [], []
        for seed in range(args.seeds):
            tag = f"{label.split()[0]}_{label.split()[1]}_{seed}"
            run = on_stand_in(ideal_models[seed], target, work, f"run_{tag}", args.shots, seed)
            compare = run_experiment(CompareConfig(run=str(run)), work / f"cmp_{tag}",
                                     progress=False)[1]
            fitted = NoiseFrom(str(compare)).resolve()
            fits.append(f"{fitted.model.split('_')[0]} {fitted.value:.3g}")
            noisy = run_experiment(
                TrainRun(data=data, model=spec, train=TrainConfig(epochs=args.epochs, seed=seed),
                         noise_from=NoiseFrom(str(compare))),
                work / f"noisy_{tag}", progress=False)[1]
            again = on_stand_in(noisy, target, work, f"again_{tag}", args.shots, seed)
            ideal_acc.append(json.loads((run / "results.json").read_text())["accuracy"])
            noisy_acc.append(json.loads((again / "results.json").read_text())["accuracy"])
        diff = np.array(noisy_acc) - np.array(ideal_acc)
        half = (stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
                if len(diff) > 1 else float("nan"))
        seconds = time.perf_counter() - tic
        print(f"| {label} | {', '.join(sorted(set(fits)))} | {np.mean(ideal_acc):.3f} ± "
              f"{np.std(ideal_acc, ddof=1):.3f} | {np.mean(noisy_acc):.3f} ± "
              f"{np.std(noisy_acc, ddof=1):.3f} | {diff.mean():+.3f} [{diff.mean() - half:+.3f}, "
              f"{diff.mean() + half:+.3f}] | {seconds:.0f} |", flush=True)
        rows.append({"truth": label, "fits": fits, "ideal_trained": ideal_acc,
                     "noise_trained": noisy_acc, "difference_mean": float(diff.mean()),
                     "difference_ci": [float(diff.mean() - half), float(diff.mean() + half)],
                     "seconds": seconds})
    out = Path(__file__).parent / "results" / "noise_aware.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "seeds": args.seeds,
                               "shots": args.shots, "epochs": args.epochs, "rows": rows},
                              indent=1))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
