"""The mixture of experts, its configuration, and saving / loading trained models."""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2
from qiskit_machine_learning.gradients import BaseEstimatorGradient, BaseSamplerGradient
from torch import nn

from ..circuits import ANSATZE
from ..errors import ConfigError, DataError, ModelFileError, choices
from ..names import AGGREGATIONS, EXPERTS, QUANTUM_EXPERTS, ROUTERS
from ..resources import check_memory
from .classical import LinearExpert, LinearRouter, MLPExpert, MLPRouter
from .quantum import (
    CoherentExperts,
    QuantumExpert,
    QuantumLayer,
    QuantumRouter,
    ReuploadingExpert,
)

__all__ = [
    "MixtureOfExperts",
    "CoherentMixture",
    "ModelSpec",
    "build_model",
    "save_model",
    "load_model",
    "model_path",
    "model_from_state",
    "ROUTERS",
    "EXPERTS",
]

FORMAT = "qmoe-qiskit-model"
FORMAT_VERSION = 1


def as_features(x) -> torch.Tensor:
    """Model inputs as a float tensor: a tensor as it is (integers made float32), or an
    array-like (NumPy array, list of rows) as float32; a one-line error for anything else."""
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(torch.float32)
    try:
        array = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"model inputs must be a (batch, features) array of numbers, got "
                        f"{type(x).__name__} ({exc})") from None
    return torch.from_numpy(array)


MAX_BALANCE_WEIGHT = 100.0  # beyond it the balancing term drowns the task's loss


def check_balance_weight(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not 0 <= value <= MAX_BALANCE_WEIGHT:
        raise ConfigError(f"balance weight must be a finite number from 0 to "
                          f"{MAX_BALANCE_WEIGHT:g} (0: no load balancing), got {value!r}")
    return float(value)


def check_capacity(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise ConfigError(f"capacity (the expert capacity factor) must be a finite number > 0, "
                          f"got {value!r}")
    return float(value)


def capacity_mask(probs: torch.Tensor, k: int, factor: float) -> torch.Tensor:
    """Which experts take each input under an expert capacity, as the Switch Transformer
    routes: every expert takes at most ``ceil(factor · batch · k / experts)`` inputs; inputs
    are placed in batch order, each on its ``k`` most probable experts that still have room
    (an input whose choice is full falls back to its next expert), and an input no expert has
    room for is dropped (all its gates 0). Returns a 0/1 mask like ``probs``, no gradient."""
    batch, experts = probs.shape
    room = max(1, math.ceil(factor * batch * k / experts))
    order = probs.detach().argsort(dim=-1, descending=True).tolist()
    load = [0] * experts
    mask = torch.zeros_like(probs)
    for row, ranked in enumerate(order):
        placed = 0
        for e in ranked:
            if placed == k:
                break
            if load[e] < room:
                mask[row, e], load[e], placed = 1.0, load[e] + 1, placed + 1
    return mask


def balance_loss(probs: torch.Tensor) -> torch.Tensor:
    """The Switch Transformer's auxiliary load-balancing loss of a batch's router probabilities
    ``(batch, experts)``: ``E · Σ_i f_i P_i``, with ``f_i`` the fraction of the batch whose
    largest probability is expert ``i``'s (top-1 dispatch, no gradient) and ``P_i`` the mean
    probability of expert ``i``. It is 1 when the load is uniform and ``E`` when one expert
    takes everything."""
    experts = probs.shape[-1]
    dispatch = nn.functional.one_hot(probs.argmax(dim=-1), experts).to(probs.dtype)
    return experts * (dispatch.mean(dim=0) * probs.mean(dim=0)).sum()


class MixtureOfExperts(nn.Module):
    """``y(x) = Σ_e g_e(x) f_e(x)``: expert logits mixed by the router's probabilities.

    Dense by default; ``top_k`` keeps each sample's ``k`` largest gates and renormalises them
    (every expert is still evaluated, so this changes the model, not the cost).
    """

    def __init__(self, router: nn.Module, experts: list[nn.Module] | CoherentExperts, *,
                 top_k: int | None = None, balance_weight: float = 0.0,
                 capacity: float | None = None):
        super().__init__()
        num_experts = router.num_experts
        if not isinstance(experts, CoherentExperts):
            experts = nn.ModuleList(experts)
        count = experts.num_experts if isinstance(experts, CoherentExperts) else len(experts)
        if count != num_experts:
            raise ConfigError(f"the router routes to {num_experts} experts, got {count}")
        if top_k is not None and not 1 <= top_k <= num_experts:
            raise ConfigError(f"top_k must be between 1 and {num_experts}, got {top_k}")
        self.router = router
        self.experts = experts
        self.top_k = top_k
        self.balance_weight = check_balance_weight(balance_weight)
        self.capacity = check_capacity(capacity)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Routing weights ``(batch, experts)`` after top-k selection (rows sum to one)."""
        return self._select(self.router(as_features(x)))

    def _select(self, probs: torch.Tensor) -> torch.Tensor:
        if self.capacity is not None:
            mask = capacity_mask(probs, self.top_k or probs.shape[-1], self.capacity)
            kept = probs * mask
            total = kept.sum(dim=-1, keepdim=True)
            return torch.where(total > 0, kept / total.clamp_min(1e-30), kept)  # dropped: 0
        if self.top_k is None or self.top_k == probs.shape[-1]:
            return probs
        top, index = probs.topk(self.top_k, dim=-1)
        sparse = torch.zeros_like(probs).scatter(-1, index, top)
        return sparse / sparse.sum(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_gates(x)[0]

    def forward_with_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed output and the routing weights of one pass (the router runs once).
        ``x``: a tensor, or anything NumPy reads as a ``(batch, features)`` array of numbers."""
        out, gates, _ = self.forward_with_router(x)
        return out, gates

    def forward_with_router(self, x: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixed output, the routing weights and the router's own probabilities (before
        top-k) of one pass: what the load-balancing loss reads."""
        x = as_features(x)
        probs = self.router(x)
        gates = self._select(probs)
        outputs = torch.stack([expert(x) for expert in self.experts], dim=-2)  # (B, E, C)
        return (gates.unsqueeze(-1) * outputs).sum(dim=-2), gates, probs

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
        """``(loss, logits)`` of a training step: cross-entropy, plus ``balance_weight`` times
        the load-balancing loss (:func:`balance_loss`) where it is set."""
        out, _, probs = self.forward_with_router(x)
        loss = nn.functional.cross_entropy(out, y)
        if self.balance_weight:
            loss = loss + self.balance_weight * balance_loss(probs)
        return loss, out

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters split into router / experts / total."""
        router = sum(p.numel() for p in self.router.parameters() if p.requires_grad)
        experts = sum(p.numel() for p in self.experts.parameters() if p.requires_grad)
        return {"router": router, "experts": experts, "total": router + experts}

    def quantum_layers(self) -> list[QuantumLayer]:
        """Every circuit of the model (router first, then quantum experts)."""
        return [m for m in self.modules() if isinstance(m, QuantumLayer)]

    def set_primitives(self, *, sampler: BaseSamplerV2 | None = None,
                       estimator: BaseEstimatorV2 | None = None,
                       sampler_gradient: BaseSamplerGradient | None = None,
                       estimator_gradient: BaseEstimatorGradient | None = None) -> None:
        """Run every quantum part on new primitives, keeping the trained weights.

        Circuits read as probabilities (paper ansatz routers, quantum experts) use ``sampler``;
        circuits read as expectation values (sel routers) use ``estimator``. ``None`` means the
        exact simulator with adjoint gradients; a missing gradient means parameter shift on
        the given primitive.
        """
        for layer in self.quantum_layers():
            if layer.ansatz.readout == "probabilities":
                layer.set_primitive(sampler, sampler_gradient)
            else:
                layer.set_primitive(estimator, estimator_gradient)

    @contextmanager
    def using(self, *, sampler: BaseSamplerV2 | None = None,
              estimator: BaseEstimatorV2 | None = None,
              sampler_gradient: BaseSamplerGradient | None = None,
              estimator_gradient: BaseEstimatorGradient | None = None
              ) -> Iterator["MixtureOfExperts"]:
        """Run on these primitives inside the ``with`` block (as :meth:`set_primitives`), then
        on the ones before (their very QNNs and circuits), even if the block raises; weights
        trained inside are kept."""
        before = [(layer, layer.state()) for layer in self.quantum_layers()]
        self.set_primitives(sampler=sampler, estimator=estimator,
                            sampler_gradient=sampler_gradient,
                            estimator_gradient=estimator_gradient)
        try:
            yield self
        finally:
            for layer, state in before:
                layer.restore(state)


class CoherentMixture(MixtureOfExperts):
    """Router and quantum experts in one circuit (:class:`~.quantum.CoherentExperts`): the
    output is the class distribution of the experts' states superposed with the router's
    amplitudes, postselected on the routing register, instead of ``Σ_e g_e f_e(x)``.

    The router (a ``paper``-ansatz :class:`~.quantum.QuantumRouter` on ``2**m`` experts) still
    runs on its own in each pass, for the routing weights that reports and the
    load-balancing loss read; its weights drive the routing register of the joint circuit.
    Top-k and capacity select among measured router probabilities, which this model never
    forms, so they are refused.
    """

    def __init__(self, router: QuantumRouter, experts: CoherentExperts, *,
                 balance_weight: float = 0.0):
        if not isinstance(router, QuantumRouter) or router.layer.ansatz.name != "paper":
            raise ConfigError("coherent aggregation runs the router's circuit inside the "
                              "experts' circuit, so it needs a quantum router with the paper "
                              "ansatz (--router quantum --ansatz paper)")
        super().__init__(router, experts, balance_weight=balance_weight)

    def forward_with_router(self, x: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities of the coherent circuit, and the router's probabilities (as both
        the routing weights and the router's own)."""
        x = as_features(x)
        probs = self.router(x)
        return self.experts(x, self.router.layer.connector.weight), probs, probs

    def postselection_rate(self, x: torch.Tensor) -> torch.Tensor:
        """The share of shots the readout keeps, per input (P(routing outcome 0 | x))."""
        return self.experts.postselection_rate(as_features(x), self.router.layer.connector.weight)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model; saved with its weights.

    ``num_features`` and ``num_classes`` may be left ``None`` until the data is known
    (:meth:`for_data` fills them in); a model is built only from a complete spec.
    """

    num_features: int | None = None
    num_classes: int | None = None
    num_experts: int = 2
    router: str = "quantum"
    ansatz: str = "sel"
    num_qubits: int | None = None
    num_layers: int = 3
    router_hidden: int = 8
    expert: str = "linear"
    expert_hidden: int = 8
    expert_layers: int = 2
    top_k: int | None = None
    balance_weight: float = 0.0  # the Switch load-balancing loss's weight in training
    capacity: float | None = None  # expert capacity factor (None: every expert takes all)
    aggregation: str = "classical"  # or "coherent": router and experts in one circuit

    def __post_init__(self):
        if self.router not in ROUTERS:
            raise ConfigError(f"unknown router {self.router!r}; valid routers: {choices(ROUTERS)}")
        if self.expert not in EXPERTS:
            raise ConfigError(f"unknown expert {self.expert!r}; valid experts: {choices(EXPERTS)}")
        if self.ansatz not in ANSATZE:
            raise ConfigError(f"unknown ansatz {self.ansatz!r}; valid ansätze: {choices(ANSATZE)}")
        for name in ("num_features", "num_classes", "num_experts", "num_layers", "router_hidden",
                     "expert_hidden", "expert_layers"):
            value = getattr(self, name)
            if value is None and name in ("num_features", "num_classes"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.num_experts < 2 or (self.num_classes is not None and self.num_classes < 2):
            raise ConfigError("a mixture needs at least 2 experts and 2 classes")
        if self.num_qubits is not None and (not isinstance(self.num_qubits, int) or self.num_qubits < 1):
            raise ConfigError(f"num_qubits must be an integer >= 1, got {self.num_qubits!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(
                self.top_k, int) or not 1 <= self.top_k <= self.num_experts):
            raise ConfigError(f"top-k must be an integer from 1 to the number of experts "
                              f"({self.num_experts}), got {self.top_k!r}")
        object.__setattr__(self, "balance_weight", check_balance_weight(self.balance_weight))
        object.__setattr__(self, "capacity", check_capacity(self.capacity))
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"unknown aggregation {self.aggregation!r}; valid aggregations: "
                              f"{choices(AGGREGATIONS)}")
        if self.aggregation == "coherent":
            self._check_coherent()

    def _check_coherent(self) -> None:
        why = "coherent aggregation"
        if self.expert not in QUANTUM_EXPERTS:
            raise ConfigError(f"{why} combines the experts' amplitudes in one circuit, so it "
                              f"needs quantum experts (--expert {' or '.join(QUANTUM_EXPERTS)}); "
                              f"--expert {self.expert} is classical")
        if self.router != "quantum" or self.ansatz != "paper":
            got = f"--ansatz {self.ansatz}" if self.router == "quantum" else \
                f"--router {self.router}"
            raise ConfigError(f"{why} runs the router's circuit inside the experts' circuit, so "
                              f"it needs --router quantum --ansatz paper; got {got}")
        if self.num_experts & (self.num_experts - 1):
            raise ConfigError(f"{why} addresses experts by the basis states of a routing "
                              f"register, so it needs 2, 4, 8, ... experts; got "
                              f"{self.num_experts}")
        if self.top_k is not None or self.capacity is not None:
            raise ConfigError(f"{why} never measures the router, so top-k and capacity (which "
                              f"select among its measured probabilities) do not apply; leave "
                              f"--top-k and --capacity out")

    def for_data(self, num_features: int, num_classes: int) -> "ModelSpec":
        """This spec for data with ``num_features`` features and ``num_classes`` classes."""
        for name, given, found in (("features", self.num_features, num_features),
                                   ("classes", self.num_classes, num_classes)):
            if given is not None and given != found:
                raise ConfigError(f"the model is set for {given} {name} but the data has {found}")
        return dataclasses.replace(self, num_features=num_features, num_classes=num_classes)

    def circuit_widths(self) -> dict[str, int]:
        """The qubits of each kind of circuit the model holds: ``{"router": n}`` for a quantum
        router (``num_qubits``, else one per feature), ``{"expert": d}`` for quantum experts
        (one qubit per feature)."""
        d = self.num_features or 1
        widths = {}
        if self.router == "quantum":
            widths["router"] = self.num_qubits or d
        if self.expert in QUANTUM_EXPERTS:
            widths["expert"] = d
        if self.aggregation == "coherent":
            widths["coherent"] = widths["router"] + d
        return widths

    def check_width(self) -> None:
        """Refuse, in one line and before anything is built, a circuit wider than the exact
        simulator that trains and scores every model holds."""
        from ..simulation.statevector import MAX_QUBITS

        for part, qubits in self.circuit_widths().items():
            if qubits > MAX_QUBITS:
                why = ("one per feature: the data has " f"{self.num_features} features"
                       if part == "expert" or self.num_qubits is None else "--qubits")
                fix = ("reduce the features with --features K (PCA) or give the router "
                       "--qubits K" if part != "expert" else
                       "reduce the features with --features K (PCA)")
                what = f"a quantum {part}"
                if part == "coherent":
                    what = "the coherent aggregation circuit"
                    why = (f"the router's {qubits - self.num_features} and the data "
                           f"register's {self.num_features}")
                raise ConfigError(f"{what} on {qubits} qubits ({why}) is too wide "
                                  f"for the exact simulator (at most {MAX_QUBITS}); {fix}")

    def memory_estimate(self) -> int:
        """Rough peak bytes to build and train the model: 16 per weight (the weight, its
        gradient and Adam's two moments), 8 per hidden unit for each of up to 4096 rows
        evaluated at once, about 4 KB per expert module, and per circuit about 30 KB a gate plus
        8 bytes per pair of rotations (the simulator's affine map from parameters to angles);
        measured on the exact simulator's training step."""
        d, n = self.num_features or 1, self.num_experts
        c = self.num_classes or 2

        def circuit(qubits: int, layers: int, rotations_per_gate_layer: int) -> int:
            rotations = rotations_per_gate_layer * qubits * layers + d
            return 8 * rotations * rotations + 30_000 * (rotations + qubits * layers)

        weights, hidden, circuits = 0, 0, 0
        if self.router == "linear":
            weights += d * n + n
        elif self.router == "mlp":
            weights += (d + 1) * self.router_hidden + (self.router_hidden + 1) * n
            hidden += self.router_hidden
        else:
            qubits = self.num_qubits or d
            circuits += circuit(qubits, self.num_layers, 3 if self.ansatz == "sel" else 1)
            weights += 3 * qubits * self.num_layers + (qubits + 1) * n
        if self.expert == "linear":
            weights += n * (d + 1) * c
        elif self.expert == "mlp":
            weights += n * ((d + 1) * self.expert_hidden + (self.expert_hidden + 1) * c)
            hidden += n * self.expert_hidden
        elif self.aggregation == "coherent":  # n multiplexed rotations per qubit and layer
            circuits += circuit((self.num_qubits or d) + d, self.expert_layers, n)
        else:
            circuits += n * circuit(d, self.expert_layers, 1)
        return 16 * weights + 8 * 4096 * hidden + 4096 * n + circuits

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model settings {unknown}; valid settings: {sorted(known)}")
        return cls(**data)


def build_model(spec: ModelSpec) -> MixtureOfExperts:
    """Build a fresh (randomly initialised from torch's RNG) model from ``spec``."""
    if spec.num_features is None or spec.num_classes is None:
        raise ConfigError("the model spec has no num_features / num_classes yet; "
                          "use spec.for_data(num_features, num_classes)")
    spec.check_width()
    check_memory(spec.memory_estimate(), f"a {spec.router}-router model of this size",
                 "use fewer layers, hidden units or experts")
    d, n, c = spec.num_features, spec.num_experts, spec.num_classes
    if spec.router == "linear":
        router = LinearRouter(d, n)
    elif spec.router == "mlp":
        router = MLPRouter(d, n, spec.router_hidden)
    else:
        router = QuantumRouter(d, n, ansatz=spec.ansatz, num_qubits=spec.num_qubits,
                               num_layers=spec.num_layers)
    if spec.aggregation == "coherent":
        experts = CoherentExperts(d, c, n, router_qubits=spec.num_qubits,
                                  router_layers=spec.num_layers, num_layers=spec.expert_layers,
                                  reupload=spec.expert == "reupload")
        return CoherentMixture(router, experts, balance_weight=spec.balance_weight)
    if spec.expert == "linear":
        experts = [LinearExpert(d, c) for _ in range(n)]
    elif spec.expert == "mlp":
        experts = [MLPExpert(d, c, spec.expert_hidden) for _ in range(n)]
    elif spec.expert == "reupload":
        experts = [ReuploadingExpert(d, c, num_layers=spec.expert_layers) for _ in range(n)]
    else:
        experts = [QuantumExpert(d, c, num_layers=spec.expert_layers) for _ in range(n)]
    return MixtureOfExperts(router, experts, top_k=spec.top_k,
                            balance_weight=spec.balance_weight, capacity=spec.capacity)


def save_model(path: str | Path, model: MixtureOfExperts, spec: ModelSpec,
               extra: dict[str, Any] | None = None) -> Path:
    """Write weights, spec and ``extra`` (JSON-like: preprocessing, data settings) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "state_dict": model.state_dict(),
        "extra": extra or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def model_path(path: str | Path) -> Path:
    """The model file ``path`` names: the file, a folder's ``model.pt``, or ``path.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists() and path.with_suffix(".pt").exists():
        path = path.with_suffix(".pt")
    return path


def load_model(path: str | Path) -> tuple[MixtureOfExperts, ModelSpec, dict[str, Any]]:
    """Load what :func:`save_model` wrote: ``(model, spec, extra)``, the model in eval mode."""
    path = model_path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise ModelFileError(f"model file {path} cannot be read "
                             f"({exc.strerror or type(exc).__name__})") from None
    if not head:
        raise ModelFileError(f"model file {path} is empty")
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        raise ModelFileError(f"{path} is not a qmoe-qiskit model file (not a PyTorch archive)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
            ValueError, io.UnsupportedOperation) as exc:
        raise ModelFileError(f"{path} is not a readable qmoe-qiskit model (corrupt or truncated): "
                             f"{type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a qmoe-qiskit model file")
    if payload.get("version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {payload.get('version')!r}; this qmoe-qiskit "
            f"reads version {FORMAT_VERSION}"
        )
    try:
        spec = ModelSpec.from_dict(payload["spec"])
        model = model_from_state(spec, payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, ConfigError) as exc:
        raise ModelFileError(f"{path} does not match its model settings: {exc}") from exc
    return model, spec, payload.get("extra", {})


def model_from_state(spec: ModelSpec, state: dict[str, torch.Tensor]) -> MixtureOfExperts:
    """The model of ``spec`` with the trained weights ``state``, in eval mode."""
    model = build_model(spec)
    model.load_state_dict(state)
    model.eval()
    return model
