"""The training loop: Adam on cross-entropy, early stopping on validation loss, history.

Models this small gain nothing from several torch threads, and on a shared machine idle
threads spin and slow every step (about 10x on 2 cores with a second process running): training
uses one intra-op thread unless the model has a circuit of :data:`MANY_QUBITS` qubits or more
(``TrainConfig.threads`` overrides; ``benchmarks/threads.py`` measures it).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import ConfigError, check_seed
from .metrics import classification_scores
from .names import TRAIN_DEFAULTS
from .models import QuantumLayer
from .simulation import kernels

__all__ = ["TrainConfig", "History", "train", "evaluate", "predict", "logits", "gates",
           "seed_everything", "default_threads", "torch_threads", "MANY_QUBITS",
           "step_seconds", "training_seconds"]

MANY_QUBITS = 10  # circuits this wide do enough work per step for extra threads to pay
# Adam's first float32 step is lr / (1 - beta1) = 10 lr; beyond about 3e37 torch overflows.
MAX_LEARNING_RATE = 1e30


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = TRAIN_DEFAULTS["epochs"]
    lr: float = TRAIN_DEFAULTS["lr"]
    batch_size: int = TRAIN_DEFAULTS["batch_size"]
    patience: int | None = TRAIN_DEFAULTS["patience"]  # epochs without validation-loss improvement; None: never stop
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None: default_threads(model)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be an integer >= 1 or None (automatic), "
                              f"got {self.threads!r}")
        if not (math.isfinite(self.lr) and 0 < self.lr < MAX_LEARNING_RATE):
            raise ConfigError(f"learning rate must be a finite number > 0 and below "
                              f"{MAX_LEARNING_RATE:g} (float32 steps overflow), got {self.lr}")
        check_seed(self.seed)
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 or None, got {self.patience}")


@dataclass
class History:
    """Per-epoch metrics; ``best_epoch`` is the epoch whose weights were kept."""

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def default_threads(model: nn.Module) -> int | None:
    """1 when every circuit of ``model`` has fewer than :data:`MANY_QUBITS` qubits (classical
    models included); ``None`` (torch's default) otherwise."""
    widths = [m.ansatz.num_qubits for m in model.modules() if isinstance(m, QuantumLayer)]
    return 1 if max(widths, default=0) < MANY_QUBITS else None


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch's intra-op thread count, and the exact simulator's (the threads it splits a
    batch's rows over), set to ``threads`` inside the block (``None``: unchanged)."""
    if threads is None:
        yield
        return
    before, simulator = torch.get_num_threads(), kernels.threads_asked()
    torch.set_num_threads(threads)
    kernels.set_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        kernels.set_threads(simulator)


def step_seconds(model: nn.Module, x: np.ndarray, y: np.ndarray, *,
                 threads: int | None = None) -> float:
    """Seconds one training step (forward, cross-entropy, backward) takes on the batch
    ``(x, y)``, with the threads training would use: the second of two steps (the first
    compiles the circuits). The model's gradients are cleared again; its weights do not move."""
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    with torch_threads(threads if threads is not None else default_threads(model)):
        for _ in range(2):
            tic = time.perf_counter()
            nn.functional.cross_entropy(model(xt), yt).backward()
            seconds = time.perf_counter() - tic
    model.zero_grad(set_to_none=True)
    return seconds


def training_seconds(step: float, train_rows: int, val_rows: int, config: TrainConfig) -> float:
    """What ``config.epochs`` epochs take at ``step`` seconds per batch: every batch of the
    training rows, and each epoch's validation pass (a forward pass, taken as a third of a
    step per batch). Early stopping can only make it shorter."""
    batches = -(-train_rows // config.batch_size)
    validation = -(-val_rows // config.batch_size) * step / 3
    return config.epochs * (batches * step + validation)


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy's global generators (model initialisation draws from torch's)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Class predictions (argmax of the mixed logits)."""
    return logits(model, x, batch_size).argmax(axis=1)


def logits(model: nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = [model(torch.as_tensor(x[i:i + batch_size], dtype=torch.float32)).numpy()
               for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return np.concatenate(out)


def gates(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The routing weights ``(samples, experts)`` of a mixture of experts (one router pass)."""
    with torch.no_grad():
        return model.gates(torch.as_tensor(x, dtype=torch.float32)).numpy()


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 on ``(x, y)``."""
    return classification_scores(y, predict(model, x))


def train(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
          y_val: np.ndarray, config: TrainConfig = TrainConfig(), *,
          progress: bool = True, desc: str = "training") -> History:
    """Train ``model`` in place and return its history; the best-validation-loss weights are kept.

    The training loss is cross-entropy, plus the load-balancing loss of a mixture whose
    ``balance_weight`` is set; validation loss (early stopping) is cross-entropy alone.

    Batches are shuffled by a generator seeded with ``config.seed``, so a run repeats exactly
    given the same initial weights.
    """
    threads = config.threads if config.threads is not None else default_threads(model)
    with torch_threads(threads):
        return _train(model, x_train, y_train, x_val, y_val, config, progress, desc)


def _train(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
           y_val: np.ndarray, config: TrainConfig, progress: bool, desc: str) -> History:
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    yt = torch.as_tensor(y_train, dtype=torch.long)
    xv = torch.as_tensor(x_val, dtype=torch.float32)
    yv = torch.as_tensor(y_val, dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config.seed)
    history = History()
    best_state, best_loss, waited = copy.deepcopy(model.state_dict()), float("inf"), 0

    bar = tqdm(range(config.epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        total, correct = 0.0, 0
        for start in range(0, len(xt), config.batch_size):
            idx = order[start:start + config.batch_size]
            optimizer.zero_grad()
            if getattr(model, "balance_weight", 0):  # cross-entropy + load balancing
                loss, out = model.training_loss(xt[idx], yt[idx])
            else:
                out = model(xt[idx])
                loss = loss_fn(out, yt[idx])
            if not torch.isfinite(loss):
                raise ConfigError(f"training diverged: the loss became {loss.item()} in epoch "
                                  f"{epoch + 1}; lower the learning rate (now {config.lr:g})")
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == yt[idx]).sum().item()
        model.eval()
        with torch.no_grad():
            val_out = model(xv)
            val_loss = loss_fn(val_out, yv).item()
        history.loss.append(total / len(xt))
        history.train_accuracy.append(correct / len(xt))
        history.val_loss.append(val_loss)
        history.val_accuracy.append((val_out.argmax(1) == yv).float().mean().item())
        bar.set_postfix(loss=f"{history.loss[-1]:.3f}", val_loss=f"{val_loss:.3f}")
        if val_loss < best_loss - 1e-6:
            best_loss, waited, history.best_epoch = val_loss, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if config.patience is not None and waited >= config.patience:
                history.stopped_early = True
                break
    model.load_state_dict(best_state)
    model.eval()
    return history
