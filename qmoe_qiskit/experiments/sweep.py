"""The noise sweep: a trained model's held-out accuracy and router distributions under noise.

At each level the model's quantum circuits (router, and quantum experts if any) run on Aer
under a noise model: depolarizing with ``epsilon = level`` (``p1 = p2 = readout``), or a
device's calibrated noise with every error rate multiplied by ``level``. Evaluation is exact
(density matrix, readout error applied) or sampled with ``shots`` (mean ± std over
repetitions). With ``retrain`` a fresh model is trained at each level under that noise
(the published code's protocol); otherwise the one trained model is evaluated at every level
(how the paper's table reads). The report says which one ran.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import restore
from ..errors import ConfigError
from ..models import ModelSpec, build_model, load_model
from ..models.quantum import QuantumLayer
from ..noise_models import (
    NoisyEstimator,
    NoisySampler,
    NoisySimulation,
    depolarizing,
    device,
    fake_backend_names,
    gates_without_noise,
    get_backend,
)
from ..noise_models.gradients import BatchedShiftEstimatorGradient, BatchedShiftSamplerGradient
from ..plots import noise_sweep
from ..training import TrainConfig, evaluate, seed_everything, train
from .runs import RunFolder, summarize

__all__ = ["SweepConfig", "run_sweep", "DEPOLARIZING_LEVELS", "DEVICE_SCALES"]

DEPOLARIZING_LEVELS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
DEVICE_SCALES = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class SweepConfig:
    model: str
    noise: str = "depolarizing"  # or a fake backend name: fake_brisbane, fake_torino, ...
    levels: tuple[float, ...] | None = None  # epsilon (depolarizing) or scale (device)
    shots: int | None = None  # None: exact (density matrix)
    repetitions: int = 5  # with shots
    retrain: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, patience=5))
    baseline: bool = True  # train a classical (linear) router on the same data for reference
    seed: int = 0
    optimization_level: int = 1

    def __post_init__(self):
        if self.noise != "depolarizing":
            get_backend(self.noise)  # raises with the list of valid names
        if self.levels is not None:
            if not self.levels:
                raise ConfigError("give at least one noise level")
            bad = [v for v in self.levels if not np.isfinite(v) or v < 0]
            if bad:
                raise ConfigError(f"noise levels must be finite and >= 0, got {bad}")
            if not self.is_device:  # device scales are checked against each qubit's rates
                for level in self.levels:
                    depolarizing(level)  # raises for a level above 1
        if self.shots is not None and self.shots < 1:
            raise ConfigError(f"shots must be >= 1, got {self.shots}")
        if self.repetitions < (2 if self.shots else 1):
            raise ConfigError("sampled sweeps need at least 2 repetitions for a std")

    @property
    def is_device(self) -> bool:
        return self.noise != "depolarizing"

    def level_values(self) -> tuple[float, ...]:
        if self.levels is not None:
            return tuple(float(v) for v in self.levels)
        return DEVICE_SCALES if self.is_device else DEPOLARIZING_LEVELS


def noise_choices() -> tuple[str, ...]:
    return ("depolarizing",) + fake_backend_names()


def run_sweep(config: SweepConfig, out: str | Path | None = None, *,
              progress: bool = True) -> tuple[dict[str, Any], RunFolder]:
    """Run the sweep; the run folder is created only once the model, data and every noise
    level have been accepted."""
    tic = time.perf_counter()
    model, spec, extra = load_model(config.model)
    if spec.router != "quantum":
        raise ConfigError(
            f"the model's router is {spec.router!r}; a noise sweep needs a quantum router")
    data = restore(extra)
    x, y = data.x_test, data.y_test
    ideal = evaluate(model, x, y)["accuracy"]
    with torch.no_grad():
        ideal_gates = model.gates(torch.as_tensor(x, dtype=torch.float32)).numpy()
    baseline = _baseline(spec, data, config) if config.baseline else None

    circuits = [m.ansatz.circuit for m in model.modules() if isinstance(m, QuantumLayer)]
    backend = get_backend(config.noise) if config.is_device else None
    base = NoisySimulation(None if backend else depolarizing(0.0), backend=backend,
                           optimization_level=config.optimization_level,
                           seed_transpiler=config.seed, seed=config.seed)
    used = sorted({q for c in circuits for q in base.used_qubits(c)})
    levels = config.level_values()
    noise_models = {level: (device(backend, qubits=used, scale=level) if backend
                            else depolarizing(level)) for level in levels}  # validates all first
    run = RunFolder("sweep", out)
    run.write_json("config.json", {"command": "sweep", **_describe(config, backend, used)})

    repetitions = config.repetitions if config.shots else 1
    bar = tqdm(total=len(levels) * repetitions, desc="noise sweep", disable=not progress)
    rows = []
    for level in levels:
        level_tic = time.perf_counter()
        simulation = base.with_noise(noise_models[level])
        noiseless = Counter(name for c in circuits
                            for name, _ in gates_without_noise(simulation.compile(c).isa,
                                                               simulation.noise_model))
        evaluated = model
        if config.retrain:
            evaluated = _retrain(spec, data, simulation, config, progress)
        accuracies, tvds = [], []
        for rep in range(repetitions):
            seed = config.seed * 1000 + rep
            evaluated.set_primitives(
                sampler=NoisySampler(simulation, default_shots=config.shots, seed=seed),
                estimator=NoisyEstimator(simulation, default_shots=config.shots, seed=seed))
            accuracies.append(evaluate(evaluated, x, y)["accuracy"])
            with torch.no_grad():
                gates = evaluated.gates(torch.as_tensor(x, dtype=torch.float32)).numpy()
            tvds.append(float(0.5 * np.abs(gates - ideal_gates).sum(axis=1).mean()))
            bar.update()
        evaluated.set_primitives()  # back to the exact simulator
        acc = summarize(accuracies)
        rows.append({"level": level,
                     "accuracy": {"mean": acc["mean"], "std": acc["std"],
                                  "per_repetition": acc["per_seed"]},
                     "mean_tvd_to_ideal": float(np.mean(tvds)),
                     "noiseless_gates": dict(noiseless),
                     "seconds": time.perf_counter() - level_tic})
    bar.close()

    results = {
        "command": "sweep", **_describe(config, backend, used),
        "test_samples": int(len(y)), "ideal_accuracy": ideal, "baseline_accuracy": baseline,
        "levels": rows, "wall_seconds": time.perf_counter() - tic,
    }
    run.write_json("results.json", results)
    level_name = "error scale k (device noise x k)" if backend else "depolarizing epsilon"
    run.save_figure("accuracy_vs_noise.png", noise_sweep(
        [r["level"] for r in rows], [r["accuracy"]["mean"] for r in rows],
        [r["accuracy"]["std"] for r in rows], ideal=ideal, baseline=baseline,
        xlabel=level_name, title=f"{config.noise}: {results['protocol']}"))
    run.write_text("report.md", _report(results, level_name))
    return results, run


def _describe(config: SweepConfig, backend, used: list[int]) -> dict[str, Any]:
    return {
        "model": str(Path(config.model)),
        "noise": config.noise,
        "backend": backend.name if backend else None,
        "physical_qubits": used if backend else None,
        "mode": "exact (density matrix)" if config.shots is None else f"{config.shots} shots",
        "shots": config.shots,
        "repetitions": config.repetitions if config.shots else 1,
        "retrain": config.retrain,
        "protocol": ("retrained at each noise level" if config.retrain
                     else "one trained model evaluated at each noise level"),
        "train": dataclasses.asdict(config.train) if config.retrain else None,
        "seed": config.seed,
    }


def _baseline(spec: ModelSpec, data, config: SweepConfig) -> float:
    """Test accuracy of a linear router with the same experts (model A of the ablation)."""
    classical = ModelSpec(num_features=spec.num_features, num_classes=spec.num_classes,
                          num_experts=spec.num_experts, router="linear",
                          expert=spec.expert if spec.expert != "quantum" else "linear",
                          expert_hidden=spec.expert_hidden, expert_layers=spec.expert_layers)
    seed_everything(config.seed)
    model = build_model(classical)
    train(model, data.x_train, data.y_train, data.x_val, data.y_val,
          TrainConfig(seed=config.seed), progress=False)
    return evaluate(model, data.x_test, data.y_test)["accuracy"]


def _retrain(spec: ModelSpec, data, simulation: NoisySimulation, config: SweepConfig,
             progress: bool):
    """A fresh model trained under this noise: exact noisy values, parameter-shift gradients."""
    seed_everything(config.seed)
    model = build_model(spec)
    sampler, estimator = NoisySampler(simulation), NoisyEstimator(simulation)
    model.set_primitives(sampler=sampler, estimator=estimator,
                         sampler_gradient=BatchedShiftSamplerGradient(sampler),
                         estimator_gradient=BatchedShiftEstimatorGradient(estimator))
    train(model, data.x_train, data.y_train, data.x_val, data.y_val, config.train,
          progress=progress, desc="retraining under noise")
    return model


def _report(results: dict[str, Any], level_name: str) -> str:
    lines = [
        f"# Noise sweep: {results['noise']}", "",
        f"Model `{results['model']}`, {results['test_samples']} held-out test samples. "
        f"Protocol: **{results['protocol']}**. Evaluation: {results['mode']}"
        + (f", {results['repetitions']} repetitions (mean ± std)." if results["shots"] else "."),
    ]
    if results["backend"]:
        lines.append(f"Device noise from {results['backend']} calibration, physical qubits "
                     f"{results['physical_qubits']}; levels scale every error rate.")
    else:
        lines.append("Depolarizing noise: p1 = p2 = readout flip = epsilon on every basis "
                     "gate (rz, sx, x, cx).")
    lines += [
        "", f"Ideal (noiseless) accuracy: {results['ideal_accuracy']:.3f}."
        + (f" Classical baseline (linear router, same experts): "
           f"{results['baseline_accuracy']:.3f}." if results["baseline_accuracy"] is not None
           else ""),
        "", f"| {level_name} | accuracy | mean TVD to ideal router | gates without noise |",
        "|---:|---|---:|---|",
    ]
    for r in results["levels"]:
        acc = r["accuracy"]
        noiseless = ", ".join(f"{k}×{v}" for k, v in sorted(r["noiseless_gates"].items())) or "none"
        lines.append(f"| {r['level']:g} | {acc['mean']:.3f} ± {acc['std']:.3f} | "
                     f"{r['mean_tvd_to_ideal']:.4f} | {noiseless} |")
    lines += ["", "TVD: total variation distance between the router's expert distribution "
              "under noise and without it, averaged over test samples.", "",
              "![accuracy against noise](accuracy_vs_noise.png)", ""]
    return "\n".join(lines)
