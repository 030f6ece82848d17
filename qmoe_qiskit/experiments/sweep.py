"""The noise sweep: a trained model's held-out accuracy and router distributions under noise.

At each level the model's quantum circuits (router, and quantum experts if any) run on Aer
under a noise model: depolarizing with ``epsilon = level`` (``p1 = p2 = readout``), or a
device's calibrated noise with every error rate multiplied by ``level``. Evaluation is exact
(density matrix, readout error applied) or sampled with ``shots`` (mean ± std over
repetitions). With ``retrain`` a fresh model is trained at each level under that noise
(the published code's protocol); otherwise the one trained model is evaluated at every level
(how the paper's table reads). The report says which one ran.

Cells: one reference cell (the ideal accuracy and a classical baseline) and one cell per level.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from qiskit_aer.noise import NoiseModel

from ..backends import KNOWN, fake_backend_names, get_backend
from ..errors import ConfigError, check_seed, choices, closest
from ..metrics import mean_tvd, routing_stats, summarize
from ..models import ModelSpec, build_model, model_from_state
from ..names import QUANTUM_EXPERTS, RETRAIN_DEFAULTS, describe_training
from ..noise_models import (
    NoisyEstimator,
    NoisySampler,
    NoisySimulation,
    depolarizing,
    device,
    gates_without_noise,
    training_primitives,
)
from ..noise_models.primitives import ENGINES, FAST_MEASURED_QUBITS
from ..plots import noise_sweep
from ..resources import check_memory
from ..training import TrainConfig, evaluate, gates, seed_everything, step_seconds, train
from ..transpile import compile_for_backend
from .base import Outcome, load_trained

__all__ = ["SweepConfig", "LevelCell", "ReferenceCell", "LevelResult", "Reference",
           "DEPOLARIZING_LEVELS", "DEVICE_SCALES", "noise_choices"]

DEPOLARIZING_LEVELS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
BYTES_PER_SAMPLED_SHOT = 24  # drawn outcomes, shuffled copies and their BitArray
DEVICE_SCALES = (0.5, 1.0, 2.0, 4.0)


def noise_choices() -> tuple[str, ...]:
    return ("depolarizing",) + fake_backend_names()


@dataclass(frozen=True)
class SweepConfig:
    """``noise`` is ``"depolarizing"`` (levels are epsilons) or an offline fake backend's name
    (``fake_brisbane``, or ``brisbane``; scales multiply its calibrated error rates)."""

    command: ClassVar[str] = "sweep"
    model: str
    noise: str = "depolarizing"
    levels: tuple[float, ...] | None = None  # depolarizing epsilons; None: DEPOLARIZING_LEVELS
    scales: tuple[float, ...] | None = None  # device error-rate factors; None: DEVICE_SCALES
    shots: int | None = None  # None: exact (density matrix)
    repetitions: int = 5  # with shots
    retrain: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**RETRAIN_DEFAULTS))
    baseline: bool = True  # train a classical (linear) router on the same data for reference
    seed: int = 0
    optimization_level: int = 1
    # "auto": per circuit, the fast engine where its memory fits, else Aer; "fast": batched
    # density matrix + reverse mode; "aer": Aer's density matrix + batched parameter shift
    engine: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "model", str(self.model))
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; valid engines: "
                              f"{choices(ENGINES)}")
        noise = str(self.noise).strip().lower()
        if noise != "depolarizing":
            noise = noise if noise.startswith("fake_") else "fake_" + noise
            if noise not in fake_backend_names():
                offered = closest(noise, fake_backend_names(), what="fake backends",
                                  fallback=KNOWN)
                raise ConfigError(f"unknown noise {self.noise!r}: 'depolarizing' or an offline "
                                  f"fake backend; {offered}")
        object.__setattr__(self, "noise", noise)
        if self.is_device and self.levels is not None:
            raise ConfigError(f"{noise} is device noise: give scales (error-rate factors, "
                              f"--scales), not levels")
        if not self.is_device and self.scales is not None:
            raise ConfigError("depolarizing noise takes levels (epsilons, --levels), not scales "
                              "(--scales)")
        for name in ("levels", "scales"):  # sorted, each once: one row and one point per level
            if getattr(self, name) is not None:
                values = sorted({float(v) for v in getattr(self, name)})
                object.__setattr__(self, name, tuple(values))
        given = self.scales if self.is_device else self.levels
        if given is not None:
            if not given:
                raise ConfigError("give at least one noise level")
            bad = [v for v in given if not np.isfinite(v) or v < 0]
            if bad:
                raise ConfigError(f"noise levels must be finite and >= 0, got {bad}")
            if not self.is_device:  # device scales are checked against each qubit's rates
                for level in given:
                    depolarizing(level)  # raises for a level above 1
        if self.shots is not None and (isinstance(self.shots, bool)
                                       or not isinstance(self.shots, int) or self.shots < 1):
            raise ConfigError(f"shots must be >= 1, got {self.shots}")
        if isinstance(self.repetitions, bool) or not isinstance(self.repetitions, int) \
                or self.repetitions < 1:
            raise ConfigError(f"repetitions must be >= 1, got {self.repetitions!r}")
        if self.shots and self.repetitions < 2:
            raise ConfigError("sampled sweeps need at least 2 repetitions for a std")
        check_seed(self.seed)

    @property
    def is_device(self) -> bool:
        return self.noise != "depolarizing"

    def level_values(self) -> tuple[float, ...]:
        given = self.scales if self.is_device else self.levels
        if given is not None:
            return given
        return DEVICE_SCALES if self.is_device else DEPOLARIZING_LEVELS

    def noise_model(self, level: float, qubits: tuple[int, ...]) -> NoiseModel:
        """The noise at ``level``: depolarizing(level), or the device's restricted to
        ``qubits`` with every rate times ``level``."""
        if self.is_device:
            return device(get_backend(self.noise), qubits=qubits, scale=level)
        return depolarizing(level)

    def simulation(self, level: float, qubits: tuple[int, ...]) -> NoisySimulation:
        backend = get_backend(self.noise) if self.is_device else None
        return NoisySimulation(self.noise_model(level, qubits), backend=backend,
                               optimization_level=self.optimization_level,
                               seed_transpiler=self.seed, seed=self.seed, engine=self.engine)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def inputs(self) -> tuple[Path, ...]:
        return (Path(self.model),)

    def plan(self) -> list:
        """Checks the model, the memory sampled shots need and every level before anything is
        computed."""
        model, spec, data = load_trained(self.model)
        if spec.router != "quantum":
            raise ConfigError(
                f"the model's router is {spec.router!r}; a noise sweep needs a quantum router")
        if self.shots:
            check_memory(len(data.y_test) * self.shots * BYTES_PER_SAMPLED_SHOT,
                         f"{len(data.y_test)} test samples x {self.shots:,} shots",
                         "use fewer --shots")
        qubits: tuple[int, ...] = ()
        if self.is_device:
            backend = get_backend(self.noise)
            qubits = tuple(sorted({q for layer in model.quantum_layers() for q in
                                   compile_for_backend(
                                       layer.ansatz.circuit, backend,
                                       optimization_level=self.optimization_level,
                                       seed_transpiler=self.seed).used_qubits}))
        for level in self.level_values():
            self.noise_model(level, qubits)  # raises for a scale no qubit can take
        simulation = self.simulation(max(self.level_values()), qubits)
        for layer in model.quantum_layers():  # one line where a binding cannot be held
            simulation.check_memory(layer.qnn.circuit)
            if self.retrain:
                simulation.check_memory(layer.qnn.circuit, simulation.engine_for(
                    layer.qnn.circuit, gradients=True))
        return [ReferenceCell(self), *(LevelCell(self, level, qubits)
                                       for level in self.level_values())]

    def estimate(self, cells) -> tuple[float, str]:
        """Seconds the cells will take, from one forward pass (and, with ``retrain``, one
        training step) timed on this engine at the highest level: ``(seconds, how)``."""
        import torch

        model, spec, data = load_trained(self.model)
        levels = [c for c in cells if isinstance(c, LevelCell)]
        if not levels:
            return 0.0, "nothing to run"
        simulation = self.simulation(max(c.level for c in levels), levels[0].qubits)
        batch = min(self.train.batch_size, len(data.x_train))
        x = torch.as_tensor(data.x_train[:batch], dtype=torch.float32)
        y = torch.as_tensor(data.y_train[:batch])
        with model.using(sampler=NoisySampler(simulation, default_shots=self.shots),
                         estimator=NoisyEstimator(simulation, default_shots=self.shots)), \
                torch.no_grad():
            model(x)
            tic = time.perf_counter()
            model(x)
            forward = (time.perf_counter() - tic) / batch
        count = f"{len(levels)} level{'s' * (len(levels) != 1)}"
        per_eval = 2 * forward * len(data.x_test) * (self.repetitions if self.shots else 1)
        per_level = per_eval
        how = f"{count} × evaluation ({forward * 1e3:.0f} ms per sample)"
        if self.retrain:  # only a retraining sweep trains: only then is a step timed
            probe = build_model(spec)
            probe.set_primitives(**training_primitives(simulation))
            step = step_seconds(probe, x, y, threads=self.train.threads)
            batches = -(-len(data.x_train) // self.train.batch_size)
            training = self.train.epochs * (batches * step + forward * len(data.x_val))
            per_level += training
            how = (f"{count} × retraining {self.train.epochs} epochs of {batches} "
                   f"batches at {step:.2f} s per step, plus evaluation"
                   + ("; early stopping may end it sooner" if self.train.patience else ""))
        engines = sorted({simulation.engine_for(layer.qnn.circuit, gradients=self.retrain)
                          for layer in model.quantum_layers()})
        chosen = " and ".join(engines) + " engine" + (" (auto: chosen by width)"
                                                      if self.engine == "auto" else "")
        return len(levels) * per_level, f"{how}, on the {chosen}, timed on one batch"

    def describe(self, qubits: tuple[int, ...]) -> dict[str, Any]:
        return {
            "model": str(Path(self.model).resolve()),
            "noise": self.noise,
            "backend": self.noise if self.is_device else None,
            "physical_qubits": list(qubits) if self.is_device else None,
            "mode": "exact (density matrix)" if self.shots is None else f"{self.shots} shots",
            "shots": self.shots,
            "repetitions": self.repetitions if self.shots else 1,
            "retrain": self.retrain,
            "engine": self.engine,
            "protocol": ("retrained at each noise level" if self.retrain
                         else "one trained model evaluated at each noise level"),
            "train": dataclasses.asdict(self.train) if self.retrain else None,
            "seed": self.seed,
        }

    def aggregate(self, cells, results: list, seconds: float) -> Outcome:
        reference, rows = results[0], [dataclasses.asdict(r) for r in results[1:]]
        qubits = cells[1].qubits if len(cells) > 1 else ()
        out = {"command": "sweep", **self.describe(qubits),
               "test_samples": reference.test_samples, "dataset": reference.dataset,
               "ideal_accuracy": reference.ideal_accuracy,
               "baseline_accuracy": reference.baseline_accuracy,
               "levels": rows, "wall_seconds": seconds,
               "train_text": describe_training(dataclasses.asdict(self.train))}
        level_name = ("error scale k (device noise x k)" if self.is_device
                      else "depolarizing epsilon")
        figure = noise_sweep(
            [r["level"] for r in rows], [r["accuracy"]["mean"] for r in rows],
            [r["accuracy"]["std"] for r in rows] if self.shots else None,
            ideal=reference.ideal_accuracy, baseline=reference.baseline_accuracy,
            xlabel=level_name,
            title=(f"{self.noise} noise, {reference.dataset} ({reference.test_samples} held-out "
                   f"samples): {out['protocol']}"),
            retrained_noiseless=([r["retrained_noiseless_accuracy"] for r in rows]
                                 if self.retrain else None),
            note=(f"± std over {self.repetitions} repetitions of {self.shots} shots"
                  if self.shots else "exact (density matrix): no spread"))
        return Outcome(results=out, report=_report(out, level_name), summary=_summary(out),
                       figures={"accuracy_vs_noise.png": figure})


@dataclass(frozen=True)
class Reference:
    ideal_accuracy: float
    baseline_accuracy: float | None
    test_samples: int
    dataset: str = ""  # the data the model was trained on (its provenance's name)


@dataclass(frozen=True)
class ReferenceCell:
    """The model's noiseless accuracy, and a classical baseline's (a linear router with the
    same experts, model A of the ablation) trained on the same data."""

    config: SweepConfig
    label: str = "reference"

    def __call__(self, *, progress: bool = False) -> Reference:
        config = self.config
        model, spec, data = load_trained(config.model)
        baseline = None
        if config.baseline:
            classical = ModelSpec(num_features=spec.num_features, num_classes=spec.num_classes,
                                  num_experts=spec.num_experts, router="linear",
                                  expert=spec.expert if spec.expert not in QUANTUM_EXPERTS else "linear",
                                  expert_hidden=spec.expert_hidden,
                                  expert_layers=spec.expert_layers)
            seed_everything(config.seed)
            linear = build_model(classical)
            train(linear, data.x_train, data.y_train, data.x_val, data.y_val,
                  TrainConfig(seed=config.seed), progress=progress, desc="classical baseline")
            baseline = evaluate(linear, data.x_test, data.y_test)["accuracy"]
        return Reference(ideal_accuracy=evaluate(model, data.x_test, data.y_test)["accuracy"],
                         baseline_accuracy=baseline, test_samples=int(len(data.y_test)),
                         dataset=data.spec.label)


@dataclass(frozen=True)
class LevelResult:
    level: float
    accuracy: dict[str, Any]  # mean, std, per_repetition
    mean_tvd_to_ideal: float
    noiseless_gates: dict[str, int]  # gate name -> count of gates the model leaves noiseless
    seconds: float
    # with retrain: the model trained at this level, evaluated without noise (exact); the TVD
    # above is then to this model's own noiseless router, not to the given model's
    retrained_noiseless_accuracy: float | None = None
    # the expert load under this noise on the test split (routing_stats, pooled over
    # repetitions): its entropy, the dead experts, the share of inputs per expert
    routing: dict[str, Any] | None = None
    # what ran: {"forward": engines, "gradients": methods (with retrain)}, sorted
    engines: dict[str, list[str]] | None = None


@dataclass(frozen=True)
class LevelCell:
    """The model (or, with ``retrain``, a model trained under this noise) at one level."""

    config: SweepConfig
    level: float
    qubits: tuple[int, ...]  # physical qubits the device model covers (device noise only)

    @property
    def label(self) -> str:
        return f"{'scale' if self.config.is_device else 'epsilon'}={self.level:g}"

    def __call__(self, *, progress: bool = False) -> LevelResult:
        tic = time.perf_counter()
        config = self.config
        model, spec, data = load_trained(config.model)
        x, y = data.x_test, data.y_test
        simulation = config.simulation(self.level, self.qubits)
        noiseless = Counter(name for layer in model.quantum_layers()
                            for name, _ in gates_without_noise(
                                simulation.compile(layer.ansatz.circuit).isa,
                                simulation.noise_model))
        own_noiseless = None
        if config.retrain:
            model = _retrained(spec, data, simulation, config, progress)
            exact = model_from_state(spec, model.state_dict())  # the same weights, no noise
            own_noiseless = evaluate(exact, x, y)["accuracy"]
            ideal = gates(exact, x)
        else:
            ideal = gates(model, x)
        accuracies, tvds, routed = [], [], []
        for rep in range(config.repetitions if config.shots else 1):
            seed = config.seed * 1000 + rep
            with model.using(
                    sampler=NoisySampler(simulation, default_shots=config.shots, seed=seed),
                    estimator=NoisyEstimator(simulation, default_shots=config.shots, seed=seed)):
                accuracies.append(evaluate(model, x, y)["accuracy"])
                routed.append(gates(model, x))
                tvds.append(mean_tvd(routed[-1], ideal))
        return LevelResult(level=self.level,
                           accuracy=summarize(accuracies, per="per_repetition"),
                           mean_tvd_to_ideal=float(np.mean(tvds)),
                           noiseless_gates=dict(noiseless),
                           seconds=time.perf_counter() - tic,
                           retrained_noiseless_accuracy=own_noiseless,
                           routing=routing_stats(np.concatenate(routed)),
                           engines={kind: sorted(ran) for kind, ran in simulation.ran.items()
                                    if ran})


def _retrained(spec: ModelSpec, data, simulation: NoisySimulation, config: SweepConfig,
               progress: bool):
    """A fresh model trained under this noise: exact noisy values; reverse-mode gradients
    (the fast engine) or parameter shift (Aer)."""
    seed_everything(config.seed)
    model = build_model(spec)
    model.set_primitives(**training_primitives(simulation))
    train(model, data.x_train, data.y_train, data.x_val, data.y_val, config.train,
          progress=progress, desc="retraining under noise")
    return model


def _accuracy_text(acc: dict[str, Any], sampled: bool) -> str:
    """``0.912 ± 0.008`` over repetitions; exact, one value, no ± 0.000."""
    return f"{acc['mean']:.3f} ± {acc['std']:.3f}" if sampled else f"{acc['mean']:.3f}"


def _summary(results: dict[str, Any]) -> str:
    symbol = "scale k" if results["backend"] else "epsilon"
    sampled = bool(results["shots"])
    lines = [f"{results['protocol']}; {results['mode']}; the given model's noiseless accuracy "
             f"{results['ideal_accuracy']:.3f}"]
    if results["retrain"]:
        lines.append(f"retrained at each level from scratch ({results['train_text']}, seed "
                     f"{results['seed']}); each is scored under its noise and without it, and "
                     f"its TVD is to its own noiseless router")
    for row in results["levels"]:
        own = row.get("retrained_noiseless_accuracy")
        lines.append(f"  {symbol} {row['level']:<8g} accuracy "
                     f"{_accuracy_text(row['accuracy'], sampled)}"
                     + (f" (noiseless {own:.3f})" if own is not None else "")
                     + f"  TVD {row['mean_tvd_to_ideal']:.4f}  ({row['seconds']:.1f} s)")
    return "\n".join(lines)


def _load_text(routing: dict[str, Any] | None) -> list[str]:
    if routing is None:
        return ["—", "—"]
    return [f"{routing['entropy']:.2f}", f"{routing['dead_fraction']:.2f}"]


def _report(results: dict[str, Any], level_name: str) -> str:
    lines = [
        f"# Noise sweep: {results['noise']}", "",
        f"Model `{results['model']}`, {results['test_samples']} held-out test samples of "
        f"{results['dataset']}. "
        f"Protocol: **{results['protocol']}**. Evaluation: {results['mode']}"
        + (f", {results['repetitions']} repetitions (mean ± std)." if results["shots"] else "."),
    ]
    if results["backend"]:
        lines.append(f"Device noise from {results['backend']} calibration, physical qubits "
                     f"{results['physical_qubits']}; levels scale every error rate.")
    else:
        lines.append("Depolarizing noise: p1 = p2 = readout flip = epsilon on every basis "
                     "gate (rz, sx, x, cx).")
    retrain, sampled = results["retrain"], bool(results["shots"])
    lines += [
        "", f"The given model's noiseless (exact) accuracy: {results['ideal_accuracy']:.3f}."
        + (f" Classical baseline (linear router, same experts): "
           f"{results['baseline_accuracy']:.3f}." if results["baseline_accuracy"] is not None
           else ""),
    ]
    if retrain:
        lines += ["", f"Each level trains a fresh model from scratch under that noise "
                  f"({results['train_text']}, seed {results['seed']}), so even at zero noise it "
                  f"need not match the given model, which was trained with its own settings. "
                  f"Each retrained model is scored under its noise and without it (exact), and "
                  f"its TVD is to its own noiseless router."]
    tvd_head = ("mean TVD to its own noiseless router" if retrain
                else "mean TVD to the noiseless router")
    lines += ["", f"| {level_name} | accuracy" + (" ± std" if sampled else "")
              + (" | retrained model, noiseless" if retrain else "")
              + f" | {tvd_head} | load entropy | dead experts | gates without noise |",
              "|---:|---|" + ("---:|" if retrain else "") + "---:|---:|---:|---|"]
    for r in results["levels"]:
        noiseless = ", ".join(f"{k}×{v}" for k, v in sorted(r["noiseless_gates"].items())) or "none"
        own = ([f"{r['retrained_noiseless_accuracy']:.3f}"] if retrain else [])
        lines.append("| " + " | ".join([f"{r['level']:g}", _accuracy_text(r["accuracy"], sampled),
                                        *own, f"{r['mean_tvd_to_ideal']:.4f}",
                                        *_load_text(r.get("routing")), noiseless]) + " |")
    lines += ["", "TVD: total variation distance between the router's expert distribution "
              "under noise and without it, averaged over test samples"
              + (f"; ± is the std over {results['repetitions']} repetitions of "
                 f"{results['shots']} shots" if sampled else "; exact, so no spread") + ". "
              "Load entropy: the entropy of the share of test inputs whose largest gate under "
              "the noise is each expert's, over log(experts) (1: even); dead experts: the "
              "share of experts no test input is routed to"
              + (", pooled over the repetitions" if sampled else "") + ".", "",
              _engine_text(results), "",
              "![accuracy against noise](accuracy_vs_noise.png)", ""]
    return "\n".join(lines)


def _engine_text(results: dict[str, Any]) -> str:
    """Which engines ran, over all levels: what ``--engine`` chose, not only what it says."""
    ran: dict[str, set[str]] = {}
    for row in results["levels"]:
        for kind, names in (row.get("engines") or {}).items():
            ran.setdefault(kind, set()).update(names)
    parts = [f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(ran.items())]
    chosen = (f"`auto` (the fast engine up to {FAST_MEASURED_QUBITS} qubits in the light cone "
              f"of the qubits read, faster than Aer at every width measured; wider, wherever "
              f"its memory fits)" if results["engine"] == "auto" else f"`{results['engine']}`")
    return f"Engine {chosen}; ran: {'; '.join(parts) or 'nothing'}."
