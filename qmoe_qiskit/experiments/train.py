"""``qmoe train``: one model trained on one data set, scored on its held-out test split.

The run folder holds ``model.pt`` (weights, spec and the data provenance that rebuilds the same
split), ``results.json`` (test scores, parameter counts, history), ``report.md`` and
``training_curves.png``. With ``noise_from``, the model is trained under the noise model
``qmoe compare`` fitted to a backend (:mod:`.noise_from`) and scored both exactly and under
that noise.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..data import DataSpec, prepare
from ..errors import ConfigError
from ..metrics import routing_stats
from ..models import ModelSpec, build_model, model_from_state, save_model
from ..noise_models import training_primitives
from ..plots import training_curves
from ..training import TrainConfig, evaluate, gates, seed_everything, train
from .base import Outcome, load_trained
from .noise_from import NoiseFrom

__all__ = ["TrainRun", "TrainCell", "Trained", "evaluate_saved"]


@dataclass(frozen=True)
class TrainRun:
    """Train ``model`` on ``data``; the model's initial weights are drawn with ``train.seed``."""

    command: ClassVar[str] = "train"
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise_from: NoiseFrom | None = None  # train under a noise model qmoe compare fitted

    def inputs(self) -> tuple[Path, ...]:
        """What the result depends on beyond its config: the IDX files read, and the fit
        trained under (a kept cell computed from other contents is not reused)."""
        fit = () if self.noise_from is None else (Path(self.noise_from.compare, "results.json"),)
        return (*self.data.input_files(), *fit)

    def protected(self) -> tuple[Path, ...]:
        """What --out must never be, hold or lie inside: the data folder, the compare folder
        trained from."""
        return tuple(Path(p) for p in (self.data.data_dir,
                                       self.noise_from and self.noise_from.compare) if p)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "data": self.data.to_dict(),
                "train": dataclasses.asdict(self.train),
                "noise_from": (None if self.noise_from is None
                               else dataclasses.asdict(self.noise_from))}

    def plan(self) -> list["TrainCell"]:
        data = prepare(self.data)
        model = build_model(self.model.for_data(data.num_features, data.num_classes))
        if self.noise_from is not None:
            if not model.quantum_layers():
                raise ConfigError("--noise-from trains quantum circuits under noise; this "
                                  "model has none (choose --router quantum or quantum experts)")
            # a bad folder, or a fit that does not cover the model, fails before any training
            self.noise_from.resolve().simulation_for(model)
        return [TrainCell(self)]

    def aggregate(self, cells, results: list["Trained"], seconds: float) -> Outcome:
        [trained] = results
        spec, scores, history = trained.spec, trained.scores, trained.history
        noisy = trained.noisy
        model = model_from_state(spec, trained.state)
        report = "\n".join([
            "# Trained model", "",
            f"Router {spec.router}" + (f" ({spec.ansatz})" if spec.router == "quantum" else "")
            + f", {spec.num_experts} {spec.expert} experts, on {self.data.dataset}.", "",
            "| split | samples | accuracy | macro F1 |", "|---|---:|---:|---:|",
            f"| test (held out) | {trained.test_samples} | {scores['accuracy']:.3f} | "
            f"{scores['f1']:.3f} |",
            *([] if noisy is None else [
                f"| test under the fitted noise | {trained.test_samples} | "
                f"{noisy['scores']['accuracy']:.3f} | {noisy['scores']['f1']:.3f} |", "",
                f"Trained under the noise `qmoe compare` fitted in `{noisy['fit']['compare']}`: "
                f"{noisy['fit']['model']} = {noisy['fit']['value']:.4g} on "
                f"{noisy['fit']['device']} (qubits {noisy['fit']['qubits']}); exact values and "
                f"reverse-mode gradients of the fast noisy engine."]),
            "", f"Trainable parameters: {trained.parameters['total']} "
            f"({trained.parameters['router']} in the router, {trained.parameters['experts']} in "
            f"the experts). Trained {len(history['loss'])} epochs "
            f"(best {history['best_epoch'] + 1}) in {trained.seconds:.1f} s.", "",
            *_routing_lines(trained.routing, spec),
            "![training curves](training_curves.png)", ""])
        return Outcome(
            results={"command": "train", "test": scores, "parameters": trained.parameters,
                     "history": history, "train_seconds": trained.seconds,
                     "routing": trained.routing,
                     "trained_under": None if noisy is None else noisy["fit"],
                     "test_under_fitted_noise": None if noisy is None else noisy["scores"],
                     "wall_seconds": seconds},
            report=report,
            summary=f"test accuracy {scores['accuracy']:.3f}, macro F1 {scores['f1']:.3f}"
            + ("" if noisy is None else " (exact simulation); under the fitted noise it was "
               f"trained for ({noisy['fit']['model']} = {noisy['fit']['value']:.4g}): test "
               f"accuracy {noisy['scores']['accuracy']:.3f}, macro F1 "
               f"{noisy['scores']['f1']:.3f}"),
            figures={"training_curves.png": training_curves(
                {"model": history}, title=f"Training curves on {self.data.label}, seed "
                                          f"{self.train.seed}")},
            files={"model.pt": lambda path: save_model(path, model, spec,
                                                       {**trained.provenance, "test": scores})})


def _routing_lines(routing: dict[str, Any] | None, spec: ModelSpec) -> list[str]:
    if routing is None:
        return []
    load = " / ".join(f"{v:.2f}" for v in routing["load"])
    dead = round(routing["dead_fraction"] * len(routing["load"]))
    balance = (f"load-balancing weight {spec.balance_weight:g}" if spec.balance_weight
               else "no load balancing")
    return [f"Routing on the test split ({balance}): expert load {load} (the share of inputs "
            f"whose largest gate is each expert's), load entropy {routing['entropy']:.3f} of 1, "
            f"{dead} of {len(routing['load'])} experts dead"
            + (f", {routing['dropped_fraction']:.1%} of the inputs dropped by the expert "
               f"capacity (factor {spec.capacity:g})" if spec.capacity is not None else "")
            + ".", ""]


@dataclass(frozen=True)
class Trained:
    """A trained model's weights, spec, scores and history."""

    spec: ModelSpec
    state: dict[str, torch.Tensor]
    scores: dict[str, float]
    history: dict[str, Any]
    parameters: dict[str, int]
    seconds: float
    test_samples: int
    provenance: dict[str, Any]
    noisy: dict[str, Any] | None = None  # the fit trained under and the scores under it
    routing: dict[str, Any] | None = None  # expert load on the test split (routing_stats)


@dataclass(frozen=True)
class TrainCell:
    run: TrainRun
    label: str = "model"

    def __call__(self, *, progress: bool = False) -> Trained:
        config = self.run
        data = prepare(config.data)
        spec = config.model.for_data(data.num_features, data.num_classes)
        seed_everything(config.train.seed)
        model = build_model(spec)
        noisy = None
        if config.noise_from is not None:
            fitted = config.noise_from.resolve()
            model.set_primitives(**training_primitives(fitted.simulation_for(model)))
        tic = time.perf_counter()
        history = train(model, data.x_train, data.y_train, data.x_val, data.y_val,
                        config.train, progress=progress,
                        desc="training" if config.noise_from is None else "training under noise")
        seconds = time.perf_counter() - tic
        if config.noise_from is not None:
            noisy = {"fit": fitted.to_dict(),
                     "scores": evaluate(model, data.x_test, data.y_test)}
            model.set_primitives()  # back to the exact simulator: scored, then saved
        return Trained(spec=spec, state=model.state_dict(),
                       scores=evaluate(model, data.x_test, data.y_test),
                       history=history.to_dict(), parameters=model.parameter_counts(),
                       seconds=seconds, test_samples=len(data.y_test),
                       provenance=data.provenance(), noisy=noisy,
                       routing=routing_stats(gates(model, data.x_test)))


def evaluate_saved(path: str | Path) -> tuple[dict[str, float], DataSpec, int]:
    """A saved model's scores on its own held-out test split: ``(scores, data spec, samples)``."""
    model, _, data = load_trained(path)
    return evaluate(model, data.x_test, data.y_test), data.spec, len(data.y_test)
