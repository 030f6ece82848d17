"""``qmoe reproduce``: every claim of both QMoE papers (``claims.json``) set beside a held-out
measurement, with a verdict.

Cells: one model trained on one seed's own split of one task (and, for the Table II retrain
protocol, under one depolarizing level). A cell seeds itself, scores only the held-out test
split (recording a fingerprint of the rows it scored, so a test can prove it), and is kept on
disk as it finishes, so a killed run resumes. Claims are judged from the cell results alone
(:mod:`.claims`).

Tasks:

- ``moons``: Two Moons, 1000 samples, noise 0.1 (Table I, II, Figure 2, training dynamics);
- ``mnist01``: MNIST 0 vs 1, PCA to 8 features (2000 train / 400 validation / 400 test) with
  ``--data-dir``; otherwise the **scikit-learn digits stand-in** (8×8 digits 0 and 1, 360
  samples), labelled as such everywhere;
- ``fashion01``: Fashion-MNIST T-shirt (0) vs Trouser (1), as ``mnist01``; not run without
  the files;
- ``mnist4``: digits 0–3, PCA-8 (the QMoE paper's quantum experts), MNIST or the stand-in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..data import DataSpec, idx_available, idx_files, prepare
from ..errors import ConfigError, check_seed, check_seed_count
from ..metrics import classification_scores, routing_stats, summarize
from ..models import MixtureOfExperts, ModelSpec, build_model
from ..models.quantum import QuantumExpert
from ..noise_models import (
    NoisyEstimator,
    NoisySampler,
    NoisySimulation,
    depolarizing,
    training_primitives,
)
from ..training import (
    TrainConfig,
    gates,
    predict,
    seed_everything,
    step_seconds,
    train,
    training_seconds,
)
from .base import Outcome
from .claims import judge, load_claims
from .reproduce_report import figures, report, summary

__all__ = ["ReproduceConfig", "ModelCell", "ModelScore", "SinglePQC", "Measurements",
           "QUICK", "TABLE_II_LEVELS", "fingerprint", "task_data", "ROLES", "estimate_cells"]

TABLE_II_LEVELS = (0.0, 0.005, 0.01, 0.02, 0.03)
# which trained model plays each role a claim names
ROLES = {"moons": {"quantum": "quantum_L3", "linear": "linear", "deep": "mlp_h48"},
         "mnist01": {"quantum": "quantum_q8_L4", "classical": "mlp_h12"},
         "fashion01": {"quantum": "quantum_q8_L4", "classical": "mlp_h12"},
         "mnist4": {}}
TASK_CLAIMS = {"moons": (1, 2, 4, 5, 6), "mnist01": (3, 4, 5), "fashion01": (4, 7),
               "mnist4": (8,)}
STAND_IN = "scikit-learn digits stand-in (8×8 images), not MNIST"


def fingerprint(x: np.ndarray) -> str:
    """A short hash of the rows a score was computed on."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes()).hexdigest()[:16]


def score_split(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy and macro F1 on ``(x, y)``, with the fingerprint of the rows scored."""
    return {**classification_scores(y, predict(model, x)), "rows": int(len(y)),
            "split": fingerprint(x)}


@dataclass(frozen=True)
class SinglePQC:
    """A monolithic PQC classifier: one ``paper`` circuit, one output per class (the QMoE
    paper's baseline)."""

    num_features: int
    num_classes: int
    num_layers: int

    def build(self) -> QuantumExpert:
        return QuantumExpert(self.num_features, self.num_classes, num_layers=self.num_layers)


PAPER_SAMPLES = 2800  # the papers' MNIST sizes: 2000 train, 400 validation, 400 test
QUICK_SAMPLES = 700  # --quick on the real files: 500 / 100 / 100


def task_data(task: str, features: int, data_dir: str | None, *,
              quick: bool = False) -> DataSpec:
    """The data of ``task`` (seed 0; each cell sets its own): the real IDX files at the
    papers' sizes where ``data_dir`` holds them (a quarter of that with ``quick``), else the
    digits stand-in."""
    if task == "moons":
        return DataSpec(dataset="moons", n_samples=1000, noise=0.1)
    classes = (0, 1, 2, 3) if task == "mnist4" else (0, 1)
    name = "fashion_mnist" if task == "fashion01" else "mnist"
    folder = str(Path(data_dir) / name) if data_dir else None
    if folder and idx_available(folder, name):
        return DataSpec(dataset=name, n_samples=QUICK_SAMPLES if quick else PAPER_SAMPLES,
                        classes=classes, n_features=features, val_fraction=1 / 7,
                        test_fraction=1 / 7, data_dir=folder)
    return DataSpec(dataset="digits", n_samples=2800, classes=classes, n_features=features)


@dataclass(frozen=True)
class ModelScore:
    task: str
    name: str
    seed: int
    data: dict[str, Any]  # the DataSpec scored (with this seed)
    parameters: dict[str, int]  # router / experts / total
    test: dict[str, Any]  # held-out scores (under the training noise for a retrained model)
    noisy: dict[float, dict[str, Any]]  # depolarizing level -> held-out scores
    split_sizes: dict[str, int]  # train / val / test rows
    val_accuracy: list[float]
    seconds: float
    trained_under: float | None
    load: dict[str, list[float]] | None  # expert load on the test split (mixtures)


@dataclass(frozen=True)
class ModelCell:
    """One model trained on one seed's split of one task, scored on its held-out test split."""

    task: str
    name: str
    data: DataSpec
    model: ModelSpec | SinglePQC
    train: TrainConfig
    seed: int
    trained_under: float | None = None  # depolarizing ε to train (and score) under
    evaluated_at: tuple[float, ...] = ()  # depolarizing ε to score the trained model at

    @property
    def label(self) -> str:
        under = "" if self.trained_under is None else f", trained at ε={self.trained_under:g}"
        return f"{self.task}/{self.name}, seed {self.seed}{under}"

    def __call__(self, *, progress: bool = False) -> ModelScore:
        data = prepare(dataclasses.replace(self.data, seed=self.seed))
        seed_everything(self.seed)
        model = self._build()
        tic = time.perf_counter()
        history = train(model, data.x_train, data.y_train, data.x_val, data.y_val,
                        dataclasses.replace(self.train, seed=self.seed), progress=False)
        seconds = time.perf_counter() - tic
        noisy = {}
        for level in self.evaluated_at:
            simulation = self._simulation(level)
            with model.using(sampler=NoisySampler(simulation),
                             estimator=NoisyEstimator(simulation)):
                noisy[level] = score_split(model, data.x_test, data.y_test)
        return ModelScore(
            task=self.task, name=self.name, seed=self.seed, data=data.spec.to_dict(),
            parameters=_parameters(model), test=score_split(model, data.x_test, data.y_test),
            noisy=noisy, split_sizes={"train": len(data.y_train), "val": len(data.y_val),
                                      "test": len(data.y_test)},
            val_accuracy=list(history.val_accuracy), seconds=seconds,
            trained_under=self.trained_under, load=_load(model, data.x_test))

    def _simulation(self, level: float) -> NoisySimulation:
        return NoisySimulation(depolarizing(level), seed=self.seed, seed_transpiler=self.seed)

    def _build(self):
        model = self.model.build() if isinstance(self.model, SinglePQC) else \
            build_model(self.model)
        if self.trained_under is not None:
            model.set_primitives(**training_primitives(self._simulation(self.trained_under)))
        return model

    def step_seconds(self, data) -> float:
        """One training step of this cell's model, as it trains (under its noise), on a batch
        of ``data``."""
        rows = slice(0, min(self.train.batch_size, len(data.y_train)))
        return step_seconds(self._build(), data.x_train[rows], data.y_train[rows],
                            threads=self.train.threads)

    def noisy_forward_seconds(self, data) -> float:
        """One forward pass of a batch of ``data`` under the noise it is scored at."""
        model = self._build()
        simulation = self._simulation(max(self.evaluated_at))
        x = torch.as_tensor(data.x_test[:self.train.batch_size], dtype=torch.float32)
        with model.using(sampler=NoisySampler(simulation),
                         estimator=NoisyEstimator(simulation)), torch.no_grad():
            model(x)  # compiles the circuits under this noise
            tic = time.perf_counter()
            model(x)
            return time.perf_counter() - tic


def _parameters(model: torch.nn.Module) -> dict[str, int]:
    if isinstance(model, MixtureOfExperts):
        return model.parameter_counts()
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"router": 0, "experts": total, "total": total}


def _load(model: torch.nn.Module, x: np.ndarray) -> dict[str, Any] | None:
    """How the test inputs spread over experts (:func:`~qmoe_qiskit.metrics.routing_stats`):
    the mean gate, the share of inputs whose largest gate is each expert's (``top_share``),
    the load's entropy and the dead experts."""
    if not isinstance(model, MixtureOfExperts):
        return None
    stats = routing_stats(gates(model, x))
    return {"mean_gate": stats["mean_gate"], "top_share": stats["load"],
            "entropy": stats["entropy"], "dead_fraction": stats["dead_fraction"]}


@dataclass(frozen=True)
class ReproduceConfig:
    command: ClassVar[str] = "reproduce"
    claims: tuple[int, ...] | None = None  # claim numbers (1..8); None: every claim
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    train: TrainConfig = TrainConfig(epochs=100, lr=0.01, batch_size=32, patience=10)
    layers: tuple[int, ...] = (1, 2, 3, 4)  # quantum router layers for Figure 2
    qubits: tuple[int, ...] = (2, 4, 8)  # quantum router widths on the 0-vs-1 task (PCA-q)
    widths: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)  # MLP router widths for Figure 2
    data_dir: str | None = None  # holds mnist/ and fashion_mnist/ folders of IDX files
    quick: bool = False

    def __post_init__(self):
        known = sorted({c.group for c in load_claims()})
        if self.claims is not None:
            object.__setattr__(self, "claims", tuple(sorted(set(self.claims))))
            unknown = [c for c in self.claims if c not in known]
            if unknown or not self.claims:
                raise ConfigError(f"unknown claims {unknown or '(none given)'}; valid claims: "
                                  f"{', '.join(map(str, known))}")
        check_seed_count(self.seeds, "reproduce")
        for seed in self.seeds:
            check_seed(seed)
        for name, values, top in (("layers", self.layers, 12), ("qubits", self.qubits, 8),
                                  ("widths", self.widths, 4096)):
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v
                                 <= top for v in values):
                raise ConfigError(f"{name} must be integers from 1 to {top}, got {values}")
        if self.data_dir is not None:
            folder = Path(self.data_dir)
            if not any(idx_available(folder / n, n) for n in ("mnist", "fashion_mnist")):
                raise ConfigError(
                    f"--data-dir {folder} holds neither mnist/ nor fashion_mnist/ with the four "
                    f"IDX files each (train-images-idx3-ubyte[.gz], ...); give the folder that "
                    f"holds them, or leave --data-dir out to run the digits stand-in")

    def inputs(self) -> tuple[Path, ...]:
        """The IDX files read (a kept cell computed from other contents is not reused)."""
        return tuple(f for name in ("mnist", "fashion_mnist") if self.real(name)
                     for f in idx_files(self.data_dir, name))

    def protected(self) -> tuple[Path, ...]:
        """What --out must never be, hold or lie inside: the data folder."""
        return (Path(self.data_dir),) if self.data_dir else ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def selected(self, group: int) -> bool:
        return self.claims is None or group in self.claims

    def real(self, name: str) -> bool:
        return bool(self.data_dir) and idx_available(Path(self.data_dir) / name, name)

    def tasks(self) -> list[str]:
        """The tasks the selected claims need that can run here."""
        out = [t for t, groups in TASK_CLAIMS.items() if any(map(self.selected, groups))]
        return [t for t in out if t != "fashion01" or self.real("fashion_mnist")]

    def models(self, task: str) -> dict[str, tuple[ModelSpec | SinglePQC, int]]:
        """name -> (model, PCA features) of every model ``task`` needs."""
        if task == "mnist4":
            base = ModelSpec(num_features=8, num_classes=4, num_experts=4, router="quantum",
                             ansatz="paper", num_layers=2, expert="quantum", expert_layers=2)
            total = 8 * 2 * 5  # the router and four experts, each 8 qubits x 2 layers
            return {"qmoe": (base, 8), "qmoe_top2": (dataclasses.replace(base, top_k=2), 8),
                    "pqc_params": (SinglePQC(8, 4, math.ceil(total / 8)), 8),
                    "pqc_qubits": (SinglePQC(8, 4, 2), 8)}
        family = self.selected(5) or (task == "moons" and self.selected(1))
        named = 48 if task == "moons" else 12  # the width of the router a table names
        widths = sorted(set(self.widths) | {named}) if family else [named]
        out: dict[str, tuple[ModelSpec | SinglePQC, int]] = {}
        if task == "moons":
            layers = sorted(set(self.layers) | {3}) if self.selected(5) else [3]
            for L in layers:
                out[f"quantum_L{L}"] = (ModelSpec(num_features=2, num_classes=2,
                                                  router="quantum", ansatz="sel",
                                                  num_layers=L), 2)
            out["linear"] = (ModelSpec(num_features=2, num_classes=2, router="linear"), 2)
            features = 2
        else:
            grid = ([(q, L) for q in sorted(set(self.qubits) | {8}) for L in
                     sorted(set(self.layers) | {4})] if self.selected(5) and task == "mnist01"
                    else [(8, 4)])
            for q, L in grid:
                out[f"quantum_q{q}_L{L}"] = (ModelSpec(num_features=q, num_classes=2,
                                                       router="quantum", ansatz="paper",
                                                       num_layers=L), q)
            features = 8
        for w in widths:
            out[f"mlp_h{w}"] = (ModelSpec(num_features=features, num_classes=2, router="mlp",
                                          router_hidden=w), features)
        return out

    def plan(self) -> list[ModelCell]:
        cells = []
        for task in self.tasks():
            for name, (model, features) in self.models(task).items():
                data = task_data(task, features, self.data_dir, quick=self.quick)
                levels = TABLE_II_LEVELS if (task, name) == ("moons", "quantum_L3") else ()
                cells += [ModelCell(task, name, data, model, self.train, seed,
                                    evaluated_at=levels) for seed in self.seeds]
        if self.selected(2):
            model, _ = self.models("moons")["quantum_L3"]
            data = task_data("moons", 2, None)
            cells += [ModelCell("moons", "quantum_L3", data, model, self.train, seed,
                                trained_under=level)
                      for level in TABLE_II_LEVELS if level > 0 for seed in self.seeds]
        return cells

    def estimate(self, cells: list[ModelCell]) -> tuple[float, str]:
        """Seconds the cells will take at most (every epoch run): see :func:`estimate_cells`."""
        return estimate_cells(cells, self.seeds[0], self.train)

    def aggregate(self, cells, results: list[ModelScore], seconds: float) -> Outcome:
        measured = Measurements(self, results)
        claims = []
        for claim in load_claims():
            v = judge(claim, measured, selected=self.selected(claim.group),
                      epochs=self.train.epochs if self.quick else None)
            claims.append({"id": claim.id, "paper": claim.paper, "source": claim.source,
                           "claim": claim.claim, "paper_value": claim.paper_value,
                           "measured": v.measured, "verdict": v.verdict, "notes": v.notes,
                           "values": v.values,
                           # a quick run's verdicts say how the command works, not the papers
                           "indicative": self.quick and v.verdict != "not run"})
        out = {"command": "reproduce", "quick": self.quick, "seeds": list(self.seeds),
               "tasks": {t: measured.describe(t) for t in (*TASK_CLAIMS,)},
               "scored_on": "held-out test split of each seed (never used for training or "
                            "early stopping); 'split' is a fingerprint of the rows scored",
               "claims": claims, "models": measured.models_table(),
               "levels": {p: {str(k): v for k, v in measured.levels(p).items()}
                          for p in ("evaluated", "retrained") if self.selected(2)},
               "cell_seconds": float(sum(r.seconds for r in results)),
               "wall_seconds": seconds}
        drawn = figures(out, ROLES)
        return Outcome(results=out, report=report(out, list(drawn)), summary=summary(out),
                       figures=drawn)


def estimate_cells(cells: list[ModelCell], seed: int, config: TrainConfig
                   ) -> tuple[float, str]:
    """Seconds ``cells`` will take at most (every epoch run): one training step timed for
    each task, model and training noise, and one noisy forward pass for each noisy scoring,
    on a batch of seed ``seed``'s data: ``(seconds, how)``."""
    data: dict = {}
    steps: dict[tuple, float] = {}  # (task, model, training noise) -> one training step
    noisy: dict[tuple, float] = {}  # the same -> one noisy forward pass of a batch
    total = 0.0
    for cell in cells:
        key = (cell.task, cell.name, cell.trained_under)
        if cell.data not in data:  # the models of a task may read different features
            data[cell.data] = prepare(dataclasses.replace(cell.data, seed=seed))
        split = data[cell.data]
        if key not in steps:
            steps[key] = cell.step_seconds(split)
        total += training_seconds(steps[key], len(split.y_train), len(split.y_val), config)
        if cell.evaluated_at:  # a noisy forward pass per batch of the test split, per level
            if key not in noisy:
                noisy[key] = cell.noisy_forward_seconds(split)
            batches = -(-len(split.y_test) // config.batch_size)
            total += len(cell.evaluated_at) * batches * noisy[key]
    if not cells:
        return 0.0, "nothing to run"
    return total, (f"{len(cells)} trainings of up to {config.epochs} epochs, one step "
                   f"timed for each of {len(steps)} "
                   f"model and noise settings; early stopping may end them sooner")


QUICK = dict(seeds=(0, 1, 2), train=TrainConfig(epochs=6, patience=None), layers=(1,), qubits=(2,),
             widths=(2, 8), quick=True)


class Measurements:
    """The cell results, read the way :mod:`.claims` asks for them."""

    def __init__(self, config: ReproduceConfig, results: list[ModelScore]):
        self.config = config
        self.runs: dict[tuple[str, str], list[ModelScore]] = {}
        self.retrained: dict[float, list[ModelScore]] = {}
        for r in results:
            if r.trained_under is None:
                self.runs.setdefault((r.task, r.name), []).append(r)
            else:
                self.retrained.setdefault(r.trained_under, []).append(r)
        for group in (*self.runs.values(), *self.retrained.values()):
            group.sort(key=lambda r: r.seed)

    def _name(self, task: str, model: str) -> str:
        return ROLES.get(task, {}).get(model, model)

    def _scores(self, task: str, model: str) -> list[ModelScore]:
        return self.runs[(task, self._name(task, model))]

    def ran(self, task: str) -> str | None:
        if task == "fashion01" and not self.config.real("fashion_mnist"):
            return ("data not available: no Fashion-MNIST IDX files (pass --data-dir with a "
                    "fashion_mnist/ folder)")
        if not any(t == task for t, _ in self.runs):
            return "not measured in this run (its claims were not selected)"
        return None

    def accuracies(self, task: str, model: str) -> list[float]:
        return [r.test["accuracy"] for r in self._scores(task, model)]

    def router_parameters(self, task: str, model: str) -> int:
        return self._scores(task, model)[0].parameters["router"]

    def test_samples(self, task: str) -> int | None:
        scores = [r for (t, _), rs in self.runs.items() if t == task for r in rs]
        return int(scores[0].split_sizes["test"]) if scores else None

    def family(self, task: str, prefix: str) -> list[tuple[str, int, list[float]]]:
        return [(name, rs[0].parameters["router"], [r.test["accuracy"] for r in rs])
                for (t, name), rs in self.runs.items() if t == task and name.startswith(prefix)]

    def levels(self, protocol: str) -> dict[float, list[float]]:
        exact = self._scores("moons", "quantum")
        if protocol == "evaluated":
            return {lv: [r.noisy[lv]["accuracy"] for r in exact] for lv in TABLE_II_LEVELS}
        out = {0.0: [r.test["accuracy"] for r in exact]}  # at ε = 0 both protocols coincide
        out.update({lv: [r.test["accuracy"] for r in rs] for lv, rs in
                    sorted(self.retrained.items())})
        return out

    def epochs_to(self, task: str, model: str, threshold: float) -> list[int | None]:
        return [next((i + 1 for i, a in enumerate(r.val_accuracy) if a >= threshold), None)
                for r in self._scores(task, model)]

    def describe(self, task: str) -> dict[str, Any]:
        scores = [r for (t, _), rs in self.runs.items() if t == task for r in rs]
        if not scores:
            return {"ran": False, "why": self.ran(task)}
        data = scores[0].data
        label = {"moons": "Two Moons (scikit-learn make_moons, noise 0.1)",
                 "digits": STAND_IN, "mnist": "MNIST",
                 "fashion_mnist": "Fashion-MNIST"}[data["dataset"]]
        return {"ran": True, "dataset": data["dataset"], "label": label,
                "stand_in": data["dataset"] == "digits", "classes": data["classes"],
                "split_sizes": scores[0].split_sizes}

    def models_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {}
        for (task, name), rs in self.runs.items():
            table.setdefault(task, {})[name] = {
                "parameters": rs[0].parameters,
                "test_accuracy": summarize([r.test["accuracy"] for r in rs]),
                "per_seed": [{"seed": r.seed, "data": r.data, "test": r.test,
                              "noisy": {str(k): v for k, v in r.noisy.items()},
                              "val_accuracy": r.val_accuracy, "seconds": r.seconds,
                              "load": r.load} for r in rs]}
        for level, rs in self.retrained.items():
            table.setdefault("moons_retrained", {})[f"quantum_L3@{level:g}"] = {
                "per_seed": [{"seed": r.seed, "data": r.data, "test": r.test,
                              "val_accuracy": r.val_accuracy, "seconds": r.seconds}
                             for r in rs]}
        return table
