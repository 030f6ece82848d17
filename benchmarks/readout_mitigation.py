"""Does readout mitigation remove readout error, and what does it leave? Stand-ins, two devices.

A trained 2-qubit published router (sel, 3 layers, Two Moons) runs through the job layer in
local testing mode with ``mitigate="readout"``: mthree's balanced calibration of the measured
qubits goes in the model's own job. Two hidden truths per device:

- readout x3: only the device's calibrated (asymmetric) readout errors, times 3;
- device x2.5: the full device model (gates, relaxation, readout) times 2.5.

``qmoe compare`` then sets the raw and the mitigated counts against each model with its
readout errors removed. Prints a Markdown table per device (measured calibration against the
truth, raw and mitigated TVD to the ideal and to the right gate model, as multiples of the
floor, accuracy raw and mitigated, jobs and PUBs) and writes JSON to
``benchmarks/results/readout_mitigation.json``.

    .venv/bin/python benchmarks/readout_mitigation.py [--devices fake_manila,fake_brisbane]
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
from compare_recovery import setup  # the same study setup and router

from qmoe_qiskit.backends import get_backend
from qmoe_qiskit.experiments import CompareConfig, RunConfig, run_experiment
from qmoe_qiskit.noise_models import stand_in
from qmoe_qiskit.noise_models.factories import calibrated_readout, device_readout


def truths(device: str, qubits: list[int]) -> dict:
    return {
        "readout x3": ("ideal", lambda: stand_in(
            device, noise_model=device_readout(device, qubits=qubits, scale=3.0, clip=True),
            name=f"{device}_readout_x3")),
        "device x2.5": ("device_scaled_fit", lambda: stand_in(device, scale=2.5)),
    }


def main() -> None:
    args, work, model = setup(__doc__.splitlines()[0], "readout-mitigation-")
    rows = []
    for device in args.devices.split(","):
        backend = get_backend(device)
        print(f"\n### {device} ({args.samples} samples x {args.shots} shots)\n")
        print("| hidden truth | qubit: P(1\\|0), P(0\\|1) measured (truth) | raw / floor vs "
              "ideal | mitigated / floor vs ideal | right gate model | raw / floor | "
              "mitigated / floor | accuracy raw → mitigated (ideal) | jobs (PUBs) | s |")
        print("|---|---|---:|---:|---|---:|---:|---|---|---:|")
        for label, (right, make) in truths(device, list(range(backend.num_qubits))).items():
            tic = time.perf_counter()
            run = RunConfig(model=str(model), backend=make(), shots=args.shots,
                            samples=args.samples, cache_dir=str(work / "cache"),
                            mitigate="readout")
            _, run_folder = run_experiment(run, work / f"{device}-{label}-run", progress=False)
            outcome, _ = run_experiment(CompareConfig(run=str(run_folder)),
                                        work / f"{device}-{label}-cmp", progress=False)
            seconds = time.perf_counter() - tic
            r = json.loads((run_folder / "results.json").read_text())
            m = outcome.results["mitigation"]
            scale = 3.0 if label.startswith("readout") else 2.5
            cal = []
            for q, e in m["calibration"]["qubits"].items():
                p10, p01 = calibrated_readout(backend, [int(q)]).errors[int(q)]
                cal.append(f"{q}: {e['p10']:.4f}, {e['p01']:.4f} ({scale * p10:.4f}, "
                           f"{scale * p01:.4f})")
            ideal, gate = m["models"]["ideal"], m["models"][right]
            raw_ideal = ideal["raw_mean_tvd"] / ideal["floor_tvd"]
            mit_ideal = ideal["mitigated_tvd_over_floor"]
            raw_gate = gate["raw_mean_tvd"] / gate["floor_tvd"]
            mit_gate = gate["mitigated_tvd_over_floor"]
            accuracy = (f"{outcome.results['hardware_accuracy']:.3f} → "
                        f"{m['hardware_accuracy']:.3f} "
                        f"({outcome.results['models']['ideal']['accuracy']:.3f})")
            print(f"| {label} | {'; '.join(cal)} | {raw_ideal:.2f} | {mit_ideal:.2f} | "
                  f"{right} | {raw_gate:.2f} | {mit_gate:.2f} | {accuracy} | "
                  f"{r['jobs_submitted']} ({r['pubs_submitted']}) | {seconds:.0f} |")
            rows.append({"device": device, "truth": label, "right_model": right,
                         "calibration": m["calibration"], "raw_over_floor_ideal": raw_ideal,
                         "mitigated_over_floor_ideal": mit_ideal,
                         "raw_over_floor_right": raw_gate, "mitigated_over_floor_right": mit_gate,
                         "fit": outcome.results["fit"]["scale"],
                         "accuracy_raw": outcome.results["hardware_accuracy"],
                         "accuracy_mitigated": m["hardware_accuracy"],
                         "jobs": r["jobs_submitted"], "pubs": r["pubs_submitted"],
                         "seconds": seconds})
    out = Path(__file__).parent / "results" / "readout_mitigation.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "samples": args.samples,
                               "shots": args.shots, "rows": rows}, indent=1,
                              default=lambda v: v.tolist() if isinstance(v, np.ndarray) else v))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
