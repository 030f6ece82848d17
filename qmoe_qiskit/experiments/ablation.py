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
from typing import Any

from tqdm.auto import tqdm

from ..data import DataSpec, prepare
from ..errors import ConfigError
from ..models import ModelSpec, build_model, save_model
from ..plots import decision_boundaries, training_curves
from ..training import TrainConfig, evaluate, seed_everything, train
from .runs import RunFolder, summarize

__all__ = ["AblationConfig", "model_specs", "run_ablation", "QUICK"]


@dataclass(frozen=True)
class AblationConfig:
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
        if len(self.seeds) < 2:
            raise ConfigError("the ablation needs at least 2 seeds to report a standard deviation")
        if any(w < 1 for w in self.widths):
            raise ConfigError(f"MLP widths must be >= 1, got {self.widths}")
        if self.models is not None:
            valid = self.model_names()
            unknown = sorted(set(self.models) - set(valid))
            if unknown:
                raise ConfigError(f"unknown ablation models {unknown}; valid models: {valid}")

    def model_names(self) -> list[str]:
        return ["A", "B_paper", "B_sel", *(f"C_h{w}" for w in self.widths), "D"]

    def selected_models(self) -> list[str]:
        return [n for n in self.model_names() if self.models is None or n in self.models]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        return d


QUICK = dict(seeds=(0, 1, 2), widths=(4, 16), train=TrainConfig(epochs=25, patience=8), quick=True)


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


def run_ablation(config: AblationConfig, run: RunFolder, *, progress: bool = True) -> dict[str, Any]:
    """Train every model over every seed, score on held-out data, write the run folder."""
    run.write_json("config.json", {"command": "ablation", **config.to_dict()})
    started = time.perf_counter()
    per_model: dict[str, dict[str, list]] = {}
    keep: dict[str, Any] = {}  # first seed's (model, history) by name, for the figures
    first_data = None
    bar = tqdm(total=len(config.selected_models()) * len(config.seeds), desc="ablation",
               disable=not progress)
    for seed in config.seeds:
        data = prepare(dataclasses.replace(config.data, seed=seed))
        if first_data is None:
            first_data = data
        specs = model_specs(config, data.num_features, data.num_classes)
        for name, spec in specs.items():
            bar.set_postfix(model=name, seed=seed)
            seed_everything(seed)
            model = build_model(spec)
            tic = time.perf_counter()
            history = train(model, data.x_train, data.y_train, data.x_val, data.y_val,
                            dataclasses.replace(config.train, seed=seed), progress=False)
            seconds = time.perf_counter() - tic
            scores = evaluate(model, data.x_test, data.y_test)
            rec = per_model.setdefault(name, {"accuracy": [], "f1": [], "seconds": [], "epochs": []})
            rec["accuracy"].append(scores["accuracy"])
            rec["f1"].append(scores["f1"])
            rec["seconds"].append(seconds)
            rec["epochs"].append(len(history.loss))
            if seed == config.seeds[0]:
                keep[name] = (model, history)
                save_model(run.path / "models" / f"{name}.pt", model, spec,
                           {**data.provenance(), "test": scores})
            bar.update()
    bar.close()

    models = {}
    for name, rec in per_model.items():
        counts = keep[name][0].parameter_counts()
        acc = summarize(rec["accuracy"])
        models[name] = {
            "spec": specs[name].to_dict(),
            "router_params": counts["router"],
            "expert_params": counts["experts"],
            "total_params": counts["total"],
            "test_accuracy": acc,
            "f1": summarize(rec["f1"]),
            "efficiency": acc["mean"] / math.log(1 + counts["router"]),
            "train_seconds": summarize(rec["seconds"]),
            "epochs_run": rec["epochs"],
        }
    results = {
        "command": "ablation",
        "dataset": config.data.dataset,
        "split_sizes": {"train": len(first_data.y_train), "val": len(first_data.y_val),
                        "test": len(first_data.y_test)},
        "seeds": list(config.seeds),
        "scored_on": "held-out test split (not used for training or early stopping)",
        "models": models,
        "wall_seconds": time.perf_counter() - started,
    }
    run.write_json("results.json", results)
    _figures(run, keep, first_data, config)
    run.write_text("report.md", _report(results, config))
    return results


def _figures(run: RunFolder, keep: dict, data, config: AblationConfig) -> None:
    if data.num_features == 2:
        names = [n for n in ("A", "B_paper", "B_sel") if n in keep]
        widths = [n for n in keep if n.startswith("C_h")]
        if widths:
            names.append(widths[-1])
        fig = decision_boundaries([(n, keep[n][0]) for n in names], data.x_test, data.y_test)
        fig.suptitle(f"Decision boundaries, seed {config.seeds[0]} (points: held-out test split)")
        run.save_figure("decision_boundaries.png", fig)
    curves = {n: history.to_dict() for n, (_, history) in keep.items()}
    run.save_figure("training_curves.png", training_curves(curves))


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
        "| model | router | experts | router params | total params | test accuracy | F1 | η | "
        "train s/seed |",
        "|---|---|---|---:|---:|---|---|---:|---:|",
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
            f"{m['train_seconds']['mean']:.1f} |")
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
