"""The router ablation on Two Moons (arXiv 2512.22296, extended with the fully quantum model D).

Models, all with ``num_experts`` experts seeing the same features:

- ``A``: linear router + linear experts
- ``B_paper`` / ``B_sel``: quantum router (paper / strongly-entangling ansatz) + linear experts
- ``C_h<w>``: MLP router of hidden width ``w`` + linear experts
- ``D``: quantum router (paper ansatz) + quantum experts

Each seed draws its own data set and split; all models of a seed share them (a paired
comparison). Scores are on the held-out test split, which neither training nor early stopping
sees. Efficiency is ``η = accuracy / ln(1 + P_router)``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..data import DataSpec, prepare
from ..errors import ConfigError, check_seed_count
from ..metrics import routing_stats, summarize
from ..models import ModelSpec, build_model, model_from_state, save_model
from ..plots import decision_boundaries, training_curves
from ..training import (
    TrainConfig,
    evaluate,
    gates,
    seed_everything,
    step_seconds,
    train,
    training_seconds,
)
from .base import Outcome

__all__ = ["AblationConfig", "AblationCell", "AblationScore", "model_specs", "QUICK"]


@dataclass(frozen=True)
class AblationConfig:
    """Every selected model trained on every seed's own data and split."""

    command: ClassVar[str] = "ablation"
    data: DataSpec = DataSpec(dataset="moons", n_samples=1000, noise=0.1)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    widths: tuple[int, ...] = (2, 4, 8, 16, 32)
    train: TrainConfig = TrainConfig(epochs=100, lr=0.01, batch_size=32, patience=10)
    num_experts: int = 2
    num_layers: int = 3  # router circuit layers (3 reproduces the published 24-parameter router)
    expert_layers: int = 2  # quantum expert circuit layers (model D)
    models: tuple[str, ...] | None = None  # a subset of model names; None runs them all
    quick: bool = False

    def __post_init__(self):
        check_seed_count(self.seeds, "the ablation")
        if any(w < 1 for w in self.widths):
            raise ConfigError(f"MLP widths must be >= 1, got {self.widths}")
        if self.models is not None:
            if not self.models:
                raise ConfigError(f"give at least one model; valid models: {self.model_names()}")
            valid = self.model_names()
            unknown = sorted(set(self.models) - set(valid))
            if unknown:
                raise ConfigError(f"unknown ablation models {unknown}; valid models: {valid}")

    def model_names(self) -> list[str]:
        return ["A", "B_paper", "B_sel", *(f"C_h{w}" for w in self.widths), "D"]

    def selected_models(self) -> list[str]:
        return [n for n in self.model_names() if self.models is None or n in self.models]

    def inputs(self) -> tuple[Path, ...]:
        """The IDX files read (a kept cell computed from other contents is not reused)."""
        return self.data.input_files()

    def protected(self) -> tuple[Path, ...]:
        """What --out must never be, hold or lie inside: the data folder."""
        return (Path(self.data.data_dir),) if self.data.data_dir else ()

    def estimate(self, cells) -> tuple[float, str]:
        """Seconds the cells will take at most (every epoch run), from one training step of
        each model timed on a batch of the first seed's data: ``(seconds, how)``."""
        data = prepare(dataclasses.replace(self.data, seed=self.seeds[0]))
        specs = model_specs(self, data.num_features, data.num_classes)
        rows = slice(0, min(self.train.batch_size, len(data.y_train)))
        steps = {name: step_seconds(build_model(specs[name]), data.x_train[rows],
                                    data.y_train[rows], threads=self.train.threads)
                 for name in dict.fromkeys(c.name for c in cells)}
        if not steps:
            return 0.0, "nothing to run"
        seconds = sum(training_seconds(steps[c.name], len(data.y_train), len(data.y_val),
                                       self.train) for c in cells)
        slowest = max(steps, key=steps.get)
        return seconds, (f"{len(cells)} trainings of up to {self.train.epochs} epochs, one step "
                         f"of each model timed (slowest: {slowest}, {steps[slowest]:.3f} s); "
                         f"early stopping may end them sooner")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        return d

    def plan(self) -> list["AblationCell"]:
        return [AblationCell(self, seed, name) for seed in self.seeds
                for name in self.selected_models()]

    def aggregate(self, cells, results: list["AblationScore"], seconds: float) -> Outcome:
        by_model: dict[str, list[AblationScore]] = {}
        for score in results:
            by_model.setdefault(score.name, []).append(score)
        models = {}
        for name, scores in by_model.items():
            counts = scores[0].parameters
            acc = summarize([s.scores["accuracy"] for s in scores])
            models[name] = {
                "spec": scores[0].spec.to_dict(),
                "router_params": counts["router"],
                "expert_params": counts["experts"],
                "total_params": counts["total"],
                "test_accuracy": acc,
                "f1": summarize([s.scores["f1"] for s in scores]),
                "efficiency": acc["mean"] / math.log(1 + counts["router"]),
                "train_seconds": summarize([s.seconds for s in scores]),
                "epochs_run": [len(s.history["loss"]) for s in scores],
                "routing": _routing(scores),
            }
        first = [s for s in results if s.state is not None]  # the first seed's models
        results_dict = {
            "command": "ablation",
            "dataset": self.data.dataset,
            "split_sizes": first[0].split_sizes,
            "seeds": list(self.seeds),
            "scored_on": "held-out test split (not used for training or early stopping)",
            "models": models,
            "wall_seconds": seconds,
        }
        trained = {s.name: (model_from_state(s.spec, s.state), s) for s in first}
        files = {f"models/{name}.pt": _saver(model, score) for name, (model, score) in
                 trained.items()}
        return Outcome(results=results_dict, report=_report(results_dict, self),
                       summary=_summary(models), figures=_figures(trained, self), files=files)


QUICK = dict(seeds=(0, 1, 2), widths=(4, 16), train=TrainConfig(epochs=25, patience=8), quick=True)


def _routing(scores: list["AblationScore"]) -> dict[str, Any] | None:
    """The expert load over seeds: its entropy and dead fraction (mean ± std) and each seed's
    load."""
    kept = [s.routing for s in scores if s.routing is not None]
    if not kept:
        return None
    return {"load_entropy": summarize([r["entropy"] for r in kept]),
            "dead_fraction": summarize([r["dead_fraction"] for r in kept]),
            "load_per_seed": [r["load"] for r in kept]}


def model_specs(config: AblationConfig, num_features: int, num_classes: int) -> dict[str, ModelSpec]:
    """The ablation's models by name (see the module docstring)."""
    base = dict(num_features=num_features, num_classes=num_classes,
                num_experts=config.num_experts, num_layers=config.num_layers)
    specs = {"A": ModelSpec(router="linear", **base),
             "B_paper": ModelSpec(router="quantum", ansatz="paper", **base),
             "B_sel": ModelSpec(router="quantum", ansatz="sel", **base)}
    for width in config.widths:
        specs[f"C_h{width}"] = ModelSpec(router="mlp", router_hidden=width, **base)
    specs["D"] = ModelSpec(router="quantum", ansatz="paper", expert="quantum",
                           expert_layers=config.expert_layers, **base)
    return {name: specs[name] for name in config.selected_models()}


@dataclass(frozen=True)
class AblationScore:
    """One model trained on one seed, scored on that seed's held-out test split."""

    name: str
    seed: int
    spec: ModelSpec
    scores: dict[str, float]
    parameters: dict[str, int]
    seconds: float
    history: dict[str, Any]
    split_sizes: dict[str, int]
    state: dict[str, torch.Tensor] | None  # weights, kept for the first seed only
    provenance: dict[str, Any]
    routing: dict[str, Any] | None = None  # expert load on the test split (routing_stats)


@dataclass(frozen=True)
class AblationCell:
    config: AblationConfig
    seed: int
    name: str

    @property
    def label(self) -> str:
        return f"model={self.name}, seed={self.seed}"

    def __call__(self, *, progress: bool = False) -> AblationScore:
        config = self.config
        data = prepare(dataclasses.replace(config.data, seed=self.seed))
        spec = model_specs(config, data.num_features, data.num_classes)[self.name]
        seed_everything(self.seed)
        model = build_model(spec)
        tic = time.perf_counter()
        history = train(model, data.x_train, data.y_train, data.x_val, data.y_val,
                        dataclasses.replace(config.train, seed=self.seed), progress=False)
        seconds = time.perf_counter() - tic
        keep = self.seed == config.seeds[0]
        return AblationScore(
            name=self.name, seed=self.seed, spec=spec,
            scores=evaluate(model, data.x_test, data.y_test),
            parameters=model.parameter_counts(), seconds=seconds, history=history.to_dict(),
            split_sizes={"train": len(data.y_train), "val": len(data.y_val),
                         "test": len(data.y_test)},
            state=model.state_dict() if keep else None, provenance=data.provenance(),
            routing=routing_stats(gates(model, data.x_test)))


def _saver(model, score: AblationScore):
    return lambda path: save_model(path, model, score.spec,
                                   {**score.provenance, "test": score.scores})


def _summary(models: dict[str, Any]) -> str:
    lines = [f"{'model':<10} {'router P':>8} {'total P':>8}  {'test accuracy':<15} {'eta':>6}"]
    for name, m in models.items():
        acc = m["test_accuracy"]
        lines.append(f"{name:<10} {m['router_params']:>8} {m['total_params']:>8}  "
                     f"{acc['mean']:.3f} ± {acc['std']:.3f}   {m['efficiency']:>6.3f}")
    return "\n".join(lines)


def describe_model(name: str) -> str:
    """An ablation model's name with what it is, for figure legends: ``A (linear router)``."""
    what = {"A": "linear router", "B_paper": "quantum router, paper ansatz",
            "B_sel": "quantum router, SEL ansatz", "D": "quantum router and experts"}.get(name)
    if what is None and name.startswith("C_h"):
        what = f"MLP router, {name[3:]} hidden"
    return f"{name} ({what})" if what else name


def _figures(trained: dict, config: AblationConfig) -> dict[str, Any]:
    data = prepare(dataclasses.replace(config.data, seed=config.seeds[0]))
    figures = {}
    if data.num_features == 2:
        names = [n for n in ("A", "B_paper", "B_sel") if n in trained]
        widths = [n for n in trained if n.startswith("C_h")]
        if widths:
            names.append(widths[-1])
        left = [n for n in trained if n not in names]
        figures["decision_boundaries.png"] = decision_boundaries(
            [(describe_model(n), trained[n][0]) for n in names], data.x_test, data.y_test,
            title=f"Decision boundaries on {config.data.label}, seed {config.seeds[0]} "
                  f"(points: its held-out test split). {len(names)} of {len(trained)} models "
                  f"shown: the linear and quantum routers and the widest MLP router"
                  + (f"; not shown: {', '.join(left)} (their scores are in the report)"
                     if left else ""))
    curves = {describe_model(n): score.history for n, (_, score) in trained.items()}
    figures["training_curves.png"] = training_curves(
        curves, title=f"Training curves on {config.data.label}, seed {config.seeds[0]} (the "
                      f"first of {len(config.seeds)}; the weights of this seed are kept)")
    return figures


def _report(results: dict, config: AblationConfig) -> str:
    sizes = results["split_sizes"]
    lines = [
        f"# Router ablation: {results['dataset']}" + (" (quick run)" if config.quick else ""),
        "",
        f"Data: {config.data.dataset}, {config.data.n_samples} samples, noise {config.data.noise}; "
        f"stratified split train/val/test = {sizes['train']}/{sizes['val']}/{sizes['test']}, "
        f"redrawn for each seed. Seeds: {', '.join(map(str, config.seeds))}. "
        f"Training: Adam lr {config.train.lr}, batch {config.train.batch_size}, "
        f"up to {config.train.epochs} epochs, early stopping on validation loss "
        f"(patience {config.train.patience}), best weights kept.",
        "",
        "Accuracy and macro F1 are on the **held-out test split** (never used for training or "
        "early stopping), mean ± sample std over seeds. η = accuracy / ln(1 + router params).",
        "",
        "Load entropy: the entropy of the share of test inputs whose largest gate is each "
        "expert's, over log(experts) (1: even, 0: one expert takes all); dead: the share of "
        "experts no test input is routed to.",
        "",
        "| model | router | experts | router params | total params | test accuracy | F1 | η | "
        "load entropy | dead | train s/seed |",
        "|---|---|---|---:|---:|---|---|---:|---|---:|---:|",
    ]
    for name, m in results["models"].items():
        spec = m["spec"]
        router = spec["router"] + (f" ({spec['ansatz']}, {spec['num_layers']} layers)"
                                   if spec["router"] == "quantum" else
                                   f" (hidden {spec['router_hidden']})" if spec["router"] == "mlp"
                                   else "")
        acc, f1 = m["test_accuracy"], m["f1"]
        lines.append(
            f"| {name} | {router} | {spec['expert']} | {m['router_params']} | "
            f"{m['total_params']} | {acc['mean']:.3f} ± {acc['std']:.3f} | "
            f"{f1['mean']:.3f} ± {f1['std']:.3f} | {m['efficiency']:.3f} | "
            + (f"{routing['load_entropy']['mean']:.2f} ± {routing['load_entropy']['std']:.2f} | "
               f"{routing['dead_fraction']['mean']:.2f} | " if (routing := m.get("routing"))
               else "— | — | ")
            + f"{m['train_seconds']['mean']:.1f} |")
    lines += [
        "",
        "The published code of the hybrid paper scores on its training data; these numbers are "
        "held-out scores and are not directly comparable with that paper's table.",
        "",
        f"Wall time: {results['wall_seconds']:.0f} s.",
        "",
        "![decision boundaries](decision_boundaries.png)",
        "",
        "![training curves](training_curves.png)",
        "",
    ]
    return "\n".join(lines)
