"""``qmoe train --calibrate-on RUN_DIR``: hardware-calibrated heads, the cheapest recovery from
hardware noise.

A ``qmoe run --split train`` measures the model's circuits on the first training samples (one
job). From its counts, every quantum layer's outputs on those samples are what the hardware gave
(the run's circuits replayed through the model, each binding checked against the model's own);
with those outputs fixed, only the classical parts are retrained: the ⟨Z⟩ adapter of a sel
router and the classical experts. The quantum weights stay as they are, so the calibrated
model's circuits, bindings and cache keys are the original's: running it on the test samples
where the original already ran costs no new job.

Only the run's training rows are read: the calibration never touches the test split (a run of
test samples is refused), so ``qmoe run`` of the calibrated model on the test samples is a
held-out score. The run must have measured this very model (same file, same quantum weights).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..files import file_sha256
from ..jobs.outcomes import pooled, read_measurements
from ..models import load_model, model_path, save_model
from ..training import seed_everything
from .base import Outcome, load_trained, read_results, recorded_path
from .replay import replay
from .run import frequencies, read_run_results, split_rows

__all__ = ["CalibrateHeads", "CalibrateCell", "Calibrated"]


@dataclass(frozen=True)
class CalibrateHeads:
    """Retrain the classical parts of the model a ``qmoe run --split train`` in ``run``
    measured, on the outputs its circuits gave there. ``model``: the model file (default: the
    run's); it must be the one the run measured."""

    command: ClassVar[str] = "train"
    run: str
    model: str | None = None
    epochs: int = 300
    lr: float = 0.02
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "run", str(self.run))
        if self.model is not None:
            object.__setattr__(self, "model", str(self.model))
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or \
                not np.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"calibrate_on": self.run, "model": self.model, "epochs": self.epochs,
                "lr": self.lr, "seed": self.seed}

    def inputs(self) -> tuple[Path, ...]:
        return (Path(self.run),) + (() if self.model is None else (Path(self.model),))

    def plan(self) -> list["CalibrateCell"]:
        results = read_run_results(self.run)
        split = results.get("split", "test")
        if split != "train":
            raise ConfigError(f"--calibrate-on needs a run over training samples; {self.run} "
                              f"measured {split} samples (run the model again with "
                              f"qmoe run --split train)")
        measured = recorded_path(self.run, results["model"])
        model = Path(self.model) if self.model is not None else measured
        if not model.exists():
            raise ConfigError(f"the model {model} the run measured is gone; give it with "
                              f"--model")
        files = [model_path(p) for p in (model, measured)]
        recorded = results.get("model_sha256")
        actual = file_sha256(files[0])
        if recorded is not None and actual != recorded:
            raise ConfigError(f"{self.run} measured another model than {model} (its file "
                              f"differs from the one the run recorded); calibrate the model the "
                              f"run measured, or run this one with qmoe run --split train")
        if recorded is None and files[0].resolve() != files[1].resolve():
            raise ConfigError(f"{self.run} measured {measured}, not {model}")
        net, _, _ = load_model(files[0])
        if not net.quantum_layers():
            raise ConfigError("the model has no quantum circuits; there is no hardware output "
                              "to calibrate its classical parts on")
        if not _classical_parameters(net):
            raise ConfigError("the model has no classical parts to calibrate (a probability "
                              "router with quantum experts); nothing would change")
        return [CalibrateCell(str(files[0]), self.run, int(results["samples"]), self.epochs,
                              float(self.lr), self.seed)]

    def aggregate(self, cells, results: list["Calibrated"], seconds: float) -> Outcome:
        [done] = results
        [cell] = cells
        model, spec, extra = load_model(cell.model)
        model.load_state_dict(done.state)
        results = {
            "command": "train", "calibrated_on": self.run, "base_model": cell.model,
            "samples": done.samples, "split": "train", "epochs": self.epochs, "lr": self.lr,
            "seed": self.seed, "trained": done.trained, "frozen": done.frozen,
            "before": done.before, "after": done.after, "loss_history": done.losses,
            "train_seconds": done.seconds, "wall_seconds": seconds,
            "rows_fingerprint": done.fingerprint,
            "next": f"qmoe run --model <this folder>/model.pt --backend {done.backend} "
                    f"(the test samples; the router's PUBs come from the cache where the "
                    f"original model ran there)"}
        summary = (f"calibrated on {done.samples} training samples measured on "
                   f"{done.backend}: in-sample accuracy on the hardware's outputs "
                   f"{done.before['accuracy']:.3f} -> {done.after['accuracy']:.3f}, loss "
                   f"{done.before['loss']:.3f} -> {done.after['loss']:.3f}; "
                   f"{sum(done.trained.values())} classical parameters retrained, "
                   f"{sum(done.frozen.values())} quantum weights kept")
        report = "\n".join([
            "# Hardware-calibrated heads", "",
            f"Model `{cell.model}`, its classical parts retrained on the outputs its circuits "
            f"gave on {done.backend} for the first {done.samples} training samples (run "
            f"`{self.run}`, one job). The quantum weights are unchanged: the calibrated model "
            f"runs the same circuits with the same bindings.", "",
            "| on the run's training samples (in-sample) | loss | accuracy |",
            "|---|---:|---:|",
            f"| original model, hardware outputs | {done.before['loss']:.4f} | "
            f"{done.before['accuracy']:.3f} |",
            f"| calibrated model, hardware outputs | {done.after['loss']:.4f} | "
            f"{done.after['accuracy']:.3f} |", "",
            f"Retrained: {', '.join(f'{k} ({v})' for k, v in done.trained.items())}; kept: "
            f"{', '.join(f'{k} ({v})' for k, v in done.frozen.items())}. Full-batch Adam, "
            f"{self.epochs} epochs, lr {self.lr:g}, seed {self.seed}.", "",
            "These are in-sample figures. The held-out score is a `qmoe run` of the calibrated "
            "model on the test samples.", ""])
        extra = {**extra, "calibrated_on": self.run}
        return Outcome(results=results, report=report, summary=summary,
                       files={"model.pt": lambda path: save_model(path, model, spec, extra)})


@dataclass(frozen=True)
class Calibrated:
    state: dict[str, torch.Tensor]
    samples: int
    backend: str
    trained: dict[str, int]
    frozen: dict[str, int]
    before: dict[str, float]
    after: dict[str, float]
    losses: list[float]
    seconds: float
    fingerprint: str


@dataclass(frozen=True)
class CalibrateCell:
    model: str
    run: str
    samples: int
    epochs: int
    lr: float
    seed: int
    label: str = "calibration"

    def __call__(self, *, progress: bool = False) -> Calibrated:
        _, results = read_results(self.run, "run")
        model, _, data = load_trained(self.model)
        x, y = split_rows(data, "train", self.samples)  # the run's rows, and no others
        pubs = pooled(read_measurements(self.run))
        outputs = _measured_outputs(model, x, pubs)
        trained = _classical_parameters(model)
        frozen = {name: p.numel() for name, p in model.named_parameters()
                  if not any(p is q for _, q in trained)}
        seed_everything(self.seed)
        target = torch.as_tensor(y, dtype=torch.long)
        loss_fn = nn.CrossEntropyLoss()
        with _fixed(model, outputs):
            before = _score(model, x, target, loss_fn)
            for _, p in trained:
                p.requires_grad_(True)
            optimiser = torch.optim.Adam([p for _, p in trained], lr=self.lr)
            losses, tic = [], time.perf_counter()
            model.train()
            for _ in range(self.epochs):
                optimiser.zero_grad()
                loss = loss_fn(model(x), target)
                if not torch.isfinite(loss):
                    raise ConfigError(f"the calibration diverged (loss {loss.item()}); use a "
                                      f"smaller --lr")
                loss.backward()
                optimiser.step()
                losses.append(float(loss.item()))
            model.eval()
            seconds = time.perf_counter() - tic
            after = _score(model, x, target, loss_fn)
        return Calibrated(model.state_dict(), len(y), results["backend"],
                          {n: p.numel() for n, p in trained}, frozen, before, after, losses,
                          seconds, _fingerprint(x.numpy()))


def _classical_parameters(model) -> list[tuple[str, nn.Parameter]]:
    """Every parameter outside the model's circuits: the adapter, the classical experts."""
    quantum = {id(layer.connector.weight) for layer in model.quantum_layers()}
    return [(n, p) for n, p in model.named_parameters() if id(p) not in quantum]


def _measured_outputs(model, x: torch.Tensor, pubs) -> dict[int, torch.Tensor]:
    """Each quantum layer's outputs on ``x`` under the run's measured frequencies (the
    bindings checked against the model's)."""
    layers = model.quantum_layers()
    outputs: dict[int, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(
        lambda module, inputs, output, i=i: outputs.__setitem__(i, output.detach().clone()))
        for i, layer in enumerate(layers)]
    try:
        replay(model, x, pubs, [frequencies(p) for p in pubs])
    except DataError as exc:
        raise ConfigError(f"the run did not measure this model on these samples ({exc})"
                          ) from None
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


@contextlib.contextmanager
def _fixed(model, outputs: dict[int, torch.Tensor]) -> Iterator[None]:
    """The model's quantum layers answer with ``outputs`` (the hardware's, for the calibration
    rows in order) instead of running their circuits."""
    layers = model.quantum_layers()

    def answer(i):
        def forward(self, x):
            if x.shape[0] != outputs[i].shape[0]:
                raise DataError(f"calibration batches must be the run's {outputs[i].shape[0]} "
                                f"rows; got {x.shape[0]}")
            return outputs[i]
        return forward

    for i, layer in enumerate(layers):
        layer.forward = types.MethodType(answer(i), layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def _score(model, x, target, loss_fn) -> dict[str, float]:
    with torch.no_grad():
        out = model(x)
    return {"loss": float(loss_fn(out, target).item()),
            "accuracy": float((out.argmax(dim=-1) == target).float().mean().item())}


def _fingerprint(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.float32).tobytes()).hexdigest()
