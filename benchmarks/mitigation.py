"""What does each mitigation technique buy, per QPU second? Stand-ins with hidden truths, two
routers, several seeds.

For each hidden truth, router and seed, a model is trained exactly on Two Moons (1000 samples,
the seed's initial weights) and measured on the stand-in through the job layer in local testing
mode, on the first ``--samples`` held-out test samples at ``--shots`` shots:

- ``raw`` and ``readout`` (mthree, calibrated in the same job): one run;
- ``trex``, ``zne`` and ``trex,zne`` (the runtime's client-side Estimator), and on request
  ``pea`` and ``trex,pec`` (each layer's noise learned in a job first): one run each, the
  sampler's PUB coming from the cache; PEC is priced at its sampling-overhead cap (100x), an
  upper bound;
- ``head calibration``: a run over ``--samples`` training samples (one job), the classical parts
  retrained on its outputs (``qmoe train --calibrate-on``), the calibrated model run on the test
  samples (its circuits are the original's: a cache hit);
- ``head retrain (exact outputs)``, the control: the same retraining on the same training rows
  measured without noise (a noiseless stand-in, shot noise only), so that what the classical
  parts gain from more training is not counted as what they gain from the hardware's outputs;
- ``noise-aware``: ``qmoe compare`` fits the raw run, a model is trained under the more likely fit
  (``--noise-from``) and run on the test samples (its own job).

Per technique it reports the router circuit's error against the exact model (mean |value -
ideal| over samples and outputs) in units of the shot-noise floor (the mean |error| an ideal
device shows from ``--shots`` shots, from the exact values: sqrt(2/pi) sigma per output), the
RMS of (mitigated - ideal) / the runtime's reported std (1 when the error bars are honest),
accuracy (mean ± std over seeds) and its paired gain over raw with a 95% t-interval (clipped to
[-1, 1]), the estimated QPU seconds of everything the technique needs (the dry-run model:
bindings x shots x (duration x noise factor + repetition delay)), and the accuracy gained per
extra QPU second beyond the raw run. Head calibration and noise-aware training change the model,
not the values: their router error is not reported.

Each (truth, router, seed, technique) is kept in ``--work`` (default
``benchmarks/results/mitigation-work``) so an interrupted study resumes. Results go to
``benchmarks/results/mitigation.json`` and a figure to ``benchmarks/results/mitigation.png``.

    .venv/bin/python benchmarks/mitigation.py [--seeds 5] [--samples 100] [--shots 2000]
    .venv/bin/python benchmarks/mitigation.py --quick     # CI: one truth, one router, one seed
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy import stats

from qmoe_qiskit.backends import get_backend
from qmoe_qiskit.data import DataSpec
from qmoe_qiskit.experiments import CompareConfig, RunConfig, TrainRun, run_experiment
from qmoe_qiskit.experiments.calibrate import CalibrateHeads
from qmoe_qiskit.experiments.noise_from import NoiseFrom
from qmoe_qiskit.models import ModelSpec
from qmoe_qiskit.noise_models import depolarizing, stand_in
from qmoe_qiskit.noise_models.standin import WIDE
from qmoe_qiskit.training import TrainConfig

ESTIMATOR = ("trex", "zne", "trex,zne", "pea", "trex,pec")  # the runtime Estimator's
VALUES = ("raw", "readout", *ESTIMATOR)  # techniques that mitigate values
TECHNIQUES = (*VALUES, "head calibration", "head retrain (exact outputs)", "noise-aware")
DEFAULT = ("trex", "zne", "trex,zne", "head calibration", "head retrain (exact outputs)",
           "noise-aware")  # pea and trex,pec: ask for them (noise learning is slow locally)
ROUTERS = {"sel (<Z>)": ModelSpec(router="quantum", ansatz="sel", num_layers=3),
           "paper (probabilities)": ModelSpec(router="quantum", ansatz="paper", num_layers=3)}


def truths() -> dict:
    def depolarized(device: str, epsilon: float):
        basis = [g for g in get_backend(device).operation_names
                 if g not in {"measure", "delay", "reset", "if_else", "for_loop", "switch_case",
                              "while_loop"}]
        return stand_in(device, noise_model=depolarizing(epsilon, basis_gates=basis),
                        name=f"{device}_depolarizing_{epsilon:g}")

    return {"fake_manila x1": lambda: stand_in("fake_manila", scale=1.0),
            "fake_manila x2.5": lambda: stand_in("fake_manila", scale=2.5),
            "fake_brisbane x1": lambda: stand_in("fake_brisbane", scale=1.0),
            "fake_brisbane x2.5": lambda: stand_in("fake_brisbane", scale=2.5),
            "depolarizing 0.01": lambda: depolarized("fake_manila", 0.01)}


@functools.lru_cache(maxsize=None)
def width(truth: str) -> int:
    """How many qubits the truth's device has."""
    return truths()[truth]().num_qubits


def floor(ideal: np.ndarray, expectations: bool, shots: int) -> float:
    """The mean |error| of ideal values estimated from ``shots`` shots (normal approximation):
    sqrt(2/pi) sigma, sigma = sqrt((1 - z^2) / shots) for ⟨Z⟩, sqrt(p (1 - p) / shots) for a
    probability."""
    ideal = np.asarray(ideal)
    var = (1 - ideal ** 2) if expectations else ideal * (1 - ideal)
    return float(np.mean(np.sqrt(2 / np.pi) * np.sqrt(np.clip(var, 0, None) / shots)))


def run(model, target, work: Path, name: str, args, **fields) -> dict:
    config = RunConfig(model=str(model), backend=target, shots=args.shots, seed=fields.pop(
        "seed"), samples=args.samples, cache_dir=str(work / "cache"), **fields)
    outcome, folder = run_experiment(config, work / name, progress=False, overwrite=True)
    return {**outcome.results, "folder": str(folder)}


def estimated(results: dict, technique: str | None = None) -> float:
    """Estimated QPU seconds of a run's raw PUBs, or of its ``technique``'s."""
    if technique is None:
        return float(sum(p["shot_seconds"] or 0 for p in results["pubs"]
                         if p.get("primitive", "sampler") == "sampler"
                         and not p["circuit"].startswith("readout_cal")))
    return float(results["mitigated"][technique]["qpu_seconds_estimate"])


def cell(truth: str, router: str, seed: int, work: Path, args) -> dict[str, dict]:
    """Every technique on one (truth, router, seed): {technique: row}."""
    target = truths()[truth]()
    data = DataSpec(dataset="moons", n_samples=1000, seed=0)
    spec = ROUTERS[router]
    expectations = spec.ansatz == "sel"
    train = TrainConfig(epochs=args.epochs, seed=seed)
    model = run_experiment(TrainRun(data=data, model=spec, train=train), work / "model",
                           progress=False, overwrite=True)[1] / "model.pt"
    rows: dict[str, dict] = {}
    base = run(model, target, work, "raw", args, seed=seed, mitigate="readout")
    ideal = np.asarray(base["router_circuit"]["ideal"])
    unit = floor(ideal, expectations, args.shots)
    raw_seconds = estimated(base)
    rows["raw"] = {"accuracy": base["accuracy"], "ideal_accuracy": base["ideal_accuracy"],
                   "error": base["router_error_vs_ideal"], "floor": unit, "z_rms": None,
                   "qpu_seconds": raw_seconds}
    rows["readout"] = {"accuracy": base["mitigated"]["readout"]["accuracy"],
                       "error": base["mitigated"]["readout"]["router_error_vs_ideal"],
                       "floor": unit, "z_rms": None,
                       "qpu_seconds": estimated(base, "readout")}
    wide = target.num_qubits > WIDE and not args.wide
    for technique in args.techniques:
        if technique not in ESTIMATOR or wide:  # see --wide
            continue
        r = run(model, target, work, technique.replace(",", "+"), args, seed=seed,
                mitigate=technique)
        m = r["mitigated"][technique]
        rows[technique] = {"accuracy": m["accuracy"], "error": m["router_error_vs_ideal"],
                           "floor": unit, "z_rms": m["router_z_rms"],
                           "qpu_seconds": raw_seconds + estimated(r, technique)}
    if "head calibration" in args.techniques:
        fit = run(model, target, work, "calibration-run", args, seed=seed, split="train")
        calibrated = run_experiment(CalibrateHeads(run=fit["folder"], seed=seed),
                                    work / "calibrated", progress=False, overwrite=True)[1]
        r = run(calibrated / "model.pt", target, work, "calibrated-run", args, seed=seed)
        assert r["jobs_submitted"] == 0, "the calibrated model's circuits are the original's"
        rows["head calibration"] = {"accuracy": r["accuracy"], "error": None, "floor": unit,
                                    "z_rms": None,
                                    "qpu_seconds": raw_seconds + estimated(fit)}
    if "head retrain (exact outputs)" in args.techniques:  # the control: the same retraining
        # on the same rows measured without noise (shot noise only), run on the stand-in
        exact = stand_in(target.device, scale=0.0)
        fit = run(model, exact, work, "control-run", args, seed=seed, split="train")
        retrained = run_experiment(CalibrateHeads(run=fit["folder"], seed=seed),
                                   work / "control", progress=False, overwrite=True)[1]
        r = run(retrained / "model.pt", target, work, "control-test", args, seed=seed)
        rows["head retrain (exact outputs)"] = {"accuracy": r["accuracy"], "error": None,
                                                "floor": unit, "z_rms": None,
                                                "qpu_seconds": raw_seconds}
    if "noise-aware" in args.techniques:
        compare = run_experiment(CompareConfig(run=base["folder"]), work / "compare",
                                 progress=False, overwrite=True)[1]
        aware = run_experiment(TrainRun(data=data, model=spec, train=train,
                                        noise_from=NoiseFrom(str(compare))),
                               work / "aware", progress=False, overwrite=True)[1]
        r = run(aware / "model.pt", target, work, "aware-run", args, seed=seed)
        rows["noise-aware"] = {"accuracy": r["accuracy"], "error": None, "floor": unit,
                               "z_rms": None, "qpu_seconds": raw_seconds + estimated(r),
                               "fit": NoiseFrom(str(compare)).resolve().to_dict()}
    return rows


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% t-interval of a mean (NaN for one value), clipped to [-1, 1]."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(max(-1.0, values.mean() - half)), float(min(1.0, values.mean() + half))


def table(truth: str, router: str, cells: list[dict[str, dict]], args) -> tuple[list[str], dict]:
    raw = np.array([c["raw"]["accuracy"] for c in cells])
    raw_seconds = np.mean([c["raw"]["qpu_seconds"] for c in cells])
    lines = [f"\n### {truth}, {router} router ({len(cells)} seeds, {args.samples} held-out "
             f"samples × {args.shots} shots; ideal accuracy "
             f"{np.mean([c['raw']['ideal_accuracy'] for c in cells]):.3f})\n",
             "| technique | router error / floor | z RMS | accuracy (mean ± std) | gain over raw "
             "[95% CI] | QPU s (est.) | gain per extra QPU s |",
             "|---|---:|---:|---|---|---:|---:|"]
    summary = {}
    for technique in TECHNIQUES:
        got = [c[technique] for c in cells if technique in c]
        if not got:
            continue
        acc = np.array([g["accuracy"] for g in got])
        gain = acc - raw[:len(acc)]
        lo, hi = t_interval(gain)
        seconds = float(np.mean([g["qpu_seconds"] for g in got]))
        extra = seconds - raw_seconds
        errors = [g["error"] / g["floor"] for g in got if g["error"] is not None]
        zs = [g["z_rms"] for g in got if g["z_rms"] is not None]
        per = gain.mean() / extra if extra > 1e-9 and technique != "raw" else None
        summary[technique] = {"error_over_floor": float(np.mean(errors)) if errors else None,
                              "z_rms": float(np.mean(zs)) if zs else None,
                              "accuracy": acc.tolist(), "gain_mean": float(gain.mean()),
                              "gain_ci": [lo, hi], "qpu_seconds": seconds,
                              "gain_per_extra_qpu_second": per}
        spread = np.std(errors, ddof=1) if len(errors) > 1 else 0.0
        lines.append(f"| {technique} | {np.mean(errors):.2f} ± {spread:.2f}" if errors
                     else f"| {technique} | —")
        lines[-1] += (f" | {np.mean(zs):.1f} | " if zs else " | — | ")
        lines[-1] += (f"{acc.mean():.3f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.3f} | "
                      + ("—" if technique == "raw" else f"{gain.mean():+.3f}" + (
                          f" [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) else " (one seed)"))
                      + f" | {seconds:.1f} | "
                      + ("—" if per is None else f"{per * 1000:+.2f} per 1000 s") + " |")
    both = [c for c in cells if "head calibration" in c and "head retrain (exact outputs)" in c]
    if both:  # what the hardware's outputs add over retraining the same parts on exact ones
        diff = np.array([c["head calibration"]["accuracy"]
                         - c["head retrain (exact outputs)"]["accuracy"] for c in both])
        lo, hi = t_interval(diff)
        summary["hardware_over_control"] = {"mean": float(diff.mean()), "ci": [lo, hi]}
        lines += ["", f"Head calibration against its control (the same retraining on exact "
                      f"outputs), paired over {len(both)} seeds: {diff.mean():+.3f}"
                  + (f" [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) else "") + "."]
    return lines, summary


def figure(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(13.5, 4.8))
    markers = dict(zip(TECHNIQUES, "osD^v<>*XP"))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, panel in enumerate(panels):
        for technique, s in summary[panel].items():
            if technique not in markers:
                continue
            raw_seconds = summary[panel]["raw"]["qpu_seconds"]
            x = s["qpu_seconds"] / raw_seconds
            if s["error_over_floor"] is not None:
                axes[0].scatter(x, s["error_over_floor"], marker=markers[technique],
                                color=colours[k % len(colours)])
            axes[1].errorbar(x, s["gain_mean"], yerr=[[s["gain_mean"] - s["gain_ci"][0]],
                                                     [s["gain_ci"][1] - s["gain_mean"]]],
                             fmt=markers[technique], color=colours[k % len(colours)], capsize=3)
    for technique in TECHNIQUES:
        axes[1].scatter([], [], marker=markers[technique], color="grey", label=technique)
    for k, panel in enumerate(panels):
        axes[1].plot([], [], color=colours[k % len(colours)], label=panel)
    for ax in axes:
        ax.set_xscale("log")
    axes[0].axhline(1, color="grey", lw=0.8, ls="--")
    axes[0].set(xlabel="estimated QPU time / raw run (log scale)",
                ylabel="router error vs ideal / shot floor",
                title="router error left (value techniques)")
    axes[1].axhline(0, color="grey", lw=0.8, ls="--")
    axes[1].set(xlabel="estimated QPU time / raw run (log scale)",
                ylabel="accuracy gain over raw (95% t-interval)",
                title="accuracy gained (marker: technique; colour: truth, router)")
    axes[1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle("Mitigation on hardware stand-ins (local testing mode), Two Moons test samples")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--shots", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--truths", default=",".join(truths()))
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--techniques", nargs="+", default=list(DEFAULT),
                        metavar="TECHNIQUE",
                        help=f"of: {', '.join(repr(t) for t in TECHNIQUES[2:])} (raw and "
                             f"readout always run; default all but pea and trex,pec)")
    parser.add_argument("--work", default=str(Path(__file__).parent / "results" /
                                              "mitigation-work"))
    parser.add_argument("--wide", action="store_true",
                        help=f"run the runtime Estimator's techniques on devices of more than "
                             f"{WIDE} qubits too: it twirls and measures every qubit, which "
                             f"the stand-in then simulates as a matrix product state, about "
                             f"half an hour per run of 100 samples x 2000 shots on 2 cores")
    parser.add_argument("--quick", action="store_true",
                        help="CI: fake_manila x2.5, the sel router, one seed, 20 samples x 500 "
                             "shots, 5 epochs")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.samples, args.shots, args.epochs = 1, 20, 500, 5
        args.truths, args.routers = "fake_manila x2.5", "sel (<Z>)"
    for t in args.techniques:
        if t not in TECHNIQUES:
            parser.error(f"unknown technique {t!r}; valid: {', '.join(TECHNIQUES[2:])}")
    chosen = [t.strip() for t in args.truths.split(",")]
    routers = [r.strip() for r in args.routers.split(",")]
    for name, valid in ((chosen, truths()), (routers, ROUTERS)):
        unknown = [n for n in name if n not in valid]
        if unknown:
            parser.error(f"unknown {unknown[0]!r}; valid: {', '.join(valid)}")
    work = Path(args.work) / ("quick" if args.quick else f"{args.samples}x{args.shots}")
    work.mkdir(parents=True, exist_ok=True)
    out, summary = [], {}
    for truth in chosen:
        for router in routers:
            cells = []
            for seed in range(args.seeds):
                kept = work / f"{truth}-{router.split()[0]}-{seed}.json".replace(" ", "_")
                done = json.loads(kept.read_text()) if kept.exists() else {}
                skipped = [t for t in ESTIMATOR if t in args.techniques and not args.wide
                           and width(truth) > WIDE]
                missing = [t for t in args.techniques if t not in done and t not in skipped]
                if missing or "raw" not in done:
                    tic = time.perf_counter()
                    fresh = cell(truth, router, seed,
                                 work / f"cell-{truth}-{router.split()[0]}".replace(" ", "_"),
                                 argparse.Namespace(**{**vars(args), "techniques": missing}))
                    done |= fresh
                    done["seconds"] = done.get("seconds", 0) + time.perf_counter() - tic
                    kept.write_text(json.dumps(done))
                cells.append({k: v for k, v in done.items() if k != "seconds"})
            lines, summary[f"{truth}, {router}"] = table(truth, router, cells, args)
            if skipped:
                lines.insert(1, f"Not run here: {', '.join(skipped)} (the runtime Estimator "
                                f"twirls and measures all {width(truth)} "
                                f"qubits; --wide runs them).\n")
            print("\n".join(lines), flush=True)
            out += lines
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    name = "mitigation-quick" if args.quick else "mitigation"
    (results / f"{name}.json").write_text(json.dumps(
        {"machine": platform.platform(), "seeds": args.seeds, "samples": args.samples,
         "shots": args.shots, "epochs": args.epochs, "summary": summary}, indent=1))
    figure(summary, results / f"{name}.png")
    print(f"\nwritten: {results / f'{name}.json'}, {results / f'{name}.png'}")


if __name__ == "__main__":
    main()
