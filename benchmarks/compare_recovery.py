"""Does `qmoe compare` recover a known truth? Hardware stand-ins with hidden noise, on two devices.

For each device, a trained 2-qubit published router (sel, 3 layers, Two Moons) runs through the
job layer in local testing mode on a stand-in whose noise is known, then `qmoe compare` fits
the models against the device's unscaled calibration, without being told the truth:

- scaled: the device model with every rate times k = 2.5 (`--noise-scale 2.5`);
- depolarizing: the depolarizing factory at epsilon = 0.02 on the device's basis;
- coherent: depolarizing 0.005 plus a coherent RX(0.35) over-rotation after every sx, which no
  model of the five can describe.

Prints one Markdown table per device (truth, fitted value with its 95% profile interval, and
each model's mean TVD as a multiple of its shot-noise floor) and writes JSON to
`benchmarks/results/compare_recovery.json`.

    .venv/bin/python benchmarks/compare_recovery.py [--devices fake_manila,fake_brisbane]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from qiskit.circuit.library import RXGate
from qiskit_aer.noise import coherent_unitary_error

from qmoe_qiskit.backends import get_backend
from qmoe_qiskit.data import DataSpec
from qmoe_qiskit.experiments import CompareConfig, RunConfig, TrainRun, run_experiment
from qmoe_qiskit.experiments.compare import MODELS
from qmoe_qiskit.models import ModelSpec
from qmoe_qiskit.noise_models import depolarizing, stand_in
from qmoe_qiskit.training import TrainConfig

SHORT = {"ideal": "ideal", "device": "device", "depolarizing_fit": "depol. fit",
         "device_scaled_fit": "k fit", "readout_only": "readout"}


def truths(device: str) -> dict:
    """name -> (what the truth is, a stand-in factory)."""
    basis = [g for g in get_backend(device).operation_names
             if g not in {"measure", "delay", "reset", "if_else", "for_loop", "switch_case",
                          "while_loop"}]

    def coherent():
        noise = depolarizing(0.005, basis_gates=basis)
        noise.add_all_qubit_quantum_error(coherent_unitary_error(RXGate(0.35).to_matrix()), "sx")
        return stand_in(device, noise_model=noise, name=f"{device}_coherent")

    return {
        "scaled k=2.5": ("scale", 2.5, lambda: stand_in(device, scale=2.5)),
        "depolarizing eps=0.02": ("epsilon", 0.02, lambda: stand_in(
            device, noise_model=depolarizing(0.02, basis_gates=basis),
            name=f"{device}_depolarizing_0.02")),
        "coherent over-rotation": (None, None, coherent),
    }


def setup(description: str, prefix: str) -> tuple[argparse.Namespace, Path, Path]:
    """The stand-in studies' command line (--devices, --samples, --shots), a scratch folder
    and the router they run: the published one (sel, 3 layers), 30 epochs on Two Moons."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--devices", default="fake_manila,fake_brisbane")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--shots", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    model = work / "model"
    run_experiment(TrainRun(data=DataSpec(dataset="moons", n_samples=1000, seed=0),
                            model=ModelSpec(router="quantum", ansatz="sel"),
                            train=TrainConfig(epochs=30, seed=0)), model, progress=False)
    return args, work, model


def main() -> None:
    args, work, model = setup(__doc__.splitlines()[0], "compare-recovery-")
    rows = []
    for device in args.devices.split(","):
        print(f"\n### {device} ({args.samples} samples x {args.shots} shots)\n")
        print("| hidden truth | fitted | 95% interval | "
              + " | ".join(f"{SHORT[m]} TVD/floor" for m in MODELS) + " | seconds |")
        print("|---|---:|---|" + "---:|" * (len(MODELS) + 1))
        for label, (parameter, value, make) in truths(device).items():
            backend = make()
            tic = time.perf_counter()
            config = CompareConfig(backend_run=RunConfig(
                model=str(model), backend=device, shots=args.shots, samples=args.samples,
                cache_dir=str(work / "cache")))
            RunConfig.target = lambda self, backend=backend: backend  # the hidden truth
            outcome, _ = run_experiment(config, work / f"{device}-{len(rows)}", progress=False)
            seconds = time.perf_counter() - tic
            r = outcome.results
            key = parameter or "scale"
            fitted, ci = r["fit"][key], r["fit"][f"{key}_ci"]
            name = "k" if key == "scale" else "ε"
            cells = " | ".join(
                f"**{r['models'][m]['tvd_over_floor']:.2f}**"
                if r["models"][m]["explains_within_shot_noise"]
                else f"{r['models'][m]['tvd_over_floor']:.2f}" for m in MODELS)
            interval = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if None not in ci else str(ci)
            print(f"| {label} | {name} = {fitted:.4g} | {interval} | {cells} | {seconds:.0f} |")
            rows.append({"device": device, "truth": label, "parameter": parameter,
                         "true_value": value, "fit": r["fit"], "seconds": seconds,
                         "models": {m: {k: r["models"][m][k] for k in
                                        ("mean_tvd", "floor_tvd", "tvd_over_floor",
                                         "explains_within_shot_noise", "log_likelihood")}
                                    for m in MODELS}})
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "compare_recovery.json").write_text(json.dumps(
        {"machine": platform.platform(), "samples": args.samples, "shots": args.shots,
         "rows": rows}, indent=2, default=str))
    print(f"\nbold: within {1.5}x the model's shot-noise floor; JSON in {out}")


if __name__ == "__main__":
    main()
