"""Quantum routers and experts: a qiskit-machine-learning QNN inside ``TorchConnector``.

Where the circuit runs is decided only by the primitive (and gradient) handed in: the default is
this package's exact simulator with adjoint gradients; an Aer or IBM Runtime primitive can be
swapped in with :meth:`QuantumLayer.set_primitive` without touching the trained weights.
"""

from __future__ import annotations

import math

import torch
from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.gradients import BaseEstimatorGradient, BaseSamplerGradient
from qiskit_machine_learning.neural_networks import EstimatorQNN, SamplerQNN
from torch import nn

from ..circuits import AnsatzCircuit, build_ansatz, coherent_ansatz, reuploading_ansatz
from ..errors import DataError
from ..simulation import (
    ExactEstimator,
    ExactEstimatorGradient,
    ExactSampler,
    ExactSamplerGradient,
)

__all__ = ["QuantumLayer", "QuantumRouter", "QuantumExpert", "ReuploadingExpert",
           "CoherentExperts", "Primitive", "Gradient"]

Primitive = BaseSamplerV2 | BaseEstimatorV2
Gradient = BaseSamplerGradient | BaseEstimatorGradient


class QuantumLayer(nn.Module):
    """An ansatz evaluated by a ``SamplerQNN`` (probabilities) or ``EstimatorQNN`` (⟨Z_i⟩).

    ``input_gradients=True`` lets gradients flow to torch layers placed before this one; it is
    off by default because the inputs here are data, and their gradients cost extra work.
    """

    def __init__(self, ansatz: AnsatzCircuit, *, primitive: Primitive | None = None,
                 gradient: Gradient | None = None, input_gradients: bool = False):
        super().__init__()
        self.ansatz = ansatz
        self.input_gradients = input_gradients
        self.primitive, self.gradient = primitive, gradient
        weights = torch.rand(len(ansatz.weights), dtype=torch.float64) * (2 * math.pi)
        self.connector = TorchConnector(
            self._make_qnn(primitive, gradient), initial_weights=weights.numpy()
        )

    @property
    def qnn(self) -> SamplerQNN | EstimatorQNN:
        return self.connector.neural_network

    @property
    def num_outputs(self) -> int:
        return self.ansatz.num_outputs

    def set_primitive(self, primitive: Primitive | None,
                      gradient: Gradient | None = None) -> None:
        """Run on ``primitive`` (a V2 sampler for ``paper``, estimator for ``sel``) from now on;
        ``None`` means the exact simulator with adjoint gradients.

        The trained weights are kept. Without ``gradient``, qiskit-machine-learning's
        parameter-shift gradient on that primitive is used.
        """
        weights = self.connector.weight.detach().cpu().numpy().copy()
        self.connector = TorchConnector(self._make_qnn(primitive, gradient), initial_weights=weights)
        self.primitive, self.gradient = primitive, gradient

    def state(self) -> tuple:
        """What :meth:`restore` brings back: the QNN (its circuit objects, so a backend's
        compiled circuits and cache keys stay the same), primitive and gradient."""
        return self.connector, self.primitive, self.gradient

    def restore(self, state: tuple) -> None:
        """Run again on the QNN, primitive and gradient of an earlier :meth:`state`, with the
        weights as they are now (trained since, or not)."""
        connector, primitive, gradient = state
        if connector is not self.connector:
            with torch.no_grad():
                connector.weight.copy_(self.connector.weight)
        self.connector, self.primitive, self.gradient = connector, primitive, gradient

    def _make_qnn(self, primitive: Primitive | None,
                  gradient: Gradient | None) -> SamplerQNN | EstimatorQNN:
        """The QNN on ``primitive``; ``None`` means the exact simulator with adjoint gradients."""
        a = self.ansatz
        common = dict(circuit=a.circuit, input_params=list(a.inputs),
                      weight_params=list(a.weights), input_gradients=self.input_gradients)
        if a.readout == "probabilities":
            if primitive is None:
                primitive = ExactSampler(default_shots=None)  # exact distributions
                gradient = gradient or ExactSamplerGradient(primitive)
            return SamplerQNN(sampler=primitive, gradient=gradient, interpret=a.interpret,
                              output_shape=a.num_outputs, **common)
        if primitive is None:
            primitive = ExactEstimator()
            gradient = gradient or ExactEstimatorGradient(primitive)
        # default_precision=0: the library default (1/64) makes estimators add sampling noise.
        return EstimatorQNN(estimator=primitive, gradient=gradient,
                            observables=list(a.observables), default_precision=0.0, **common)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != len(self.ansatz.inputs):
            raise DataError(
                f"input has {x.shape[-1]} features but this circuit embeds "
                f"{len(self.ansatz.inputs)} (on {self.ansatz.num_qubits} qubits)"
            )
        _check_finite(x)
        return self.connector(x).to(torch.get_default_dtype())


class QuantumRouter(nn.Module):
    """P(expert | x) from a parameterized circuit.

    ``paper``: probabilities of the measured basis states, folded onto experts by the routing
    rule. ``sel``: ⟨Z_i⟩ per qubit, then a trainable ``Linear(n, N)`` adapter and softmax.
    """

    def __init__(self, num_features: int, num_experts: int, *, ansatz: str = "sel",
                 num_qubits: int | None = None, num_layers: int = 3,
                 primitive: Primitive | None = None, gradient: Gradient | None = None,
                 input_gradients: bool = False):
        super().__init__()
        num_qubits = num_features if num_qubits is None else num_qubits
        built = build_ansatz(ansatz, num_qubits, num_layers, num_features=num_features,
                             num_outputs=num_experts if ansatz == "paper" else None)
        self.num_experts = num_experts
        self.layer = QuantumLayer(built, primitive=primitive, gradient=gradient,
                                  input_gradients=input_gradients)
        self.adapter = nn.Linear(num_qubits, num_experts) if built.readout == "expectations" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        if self.adapter is None:
            return out
        return torch.softmax(self.adapter(out), dim=-1)

    def set_primitive(self, primitive: Primitive | None,
                      gradient: Gradient | None = None) -> None:
        self.layer.set_primitive(primitive, gradient)


class QuantumExpert(nn.Module):
    """A small PQC classifier (``paper`` ansatz, one output per class).

    Returns log-probabilities: logits whose softmax is the circuit's class distribution, so its
    outputs mix with those of classical experts.
    """

    def __init__(self, num_features: int, num_classes: int, *, num_qubits: int | None = None,
                 num_layers: int = 2, primitive: Primitive | None = None,
                 gradient: Gradient | None = None):
        super().__init__()
        num_qubits = num_features if num_qubits is None else num_qubits
        built = build_ansatz("paper", num_qubits, num_layers, num_features=num_features,
                             num_outputs=num_classes)
        self.layer = QuantumLayer(built, primitive=primitive, gradient=gradient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.layer(x).clamp_min(1e-12))

    def set_primitive(self, primitive: Primitive | None,
                      gradient: Gradient | None = None) -> None:
        self.layer.set_primitive(primitive, gradient)


class ReuploadingExpert(nn.Module):
    """A data re-uploading PQC classifier: the features are embedded again before each of its
    layers (:func:`~qmoe_qiskit.circuits.ansatze.reuploading_ansatz`), each copy scaled by
    learnable weights of its own (``input_scale``, ``(layers, features)``, starting at 1).

    The scaling is a torch parameter in front of the circuit, so the circuit's angles stay
    affine in its inputs (the exact simulator's fast path) and its gradient reaches the
    scales through the QNN's input gradients. Returns log-probabilities, as
    :class:`QuantumExpert` does.
    """

    def __init__(self, num_features: int, num_classes: int, *, num_layers: int = 2,
                 primitive: Primitive | None = None, gradient: Gradient | None = None):
        super().__init__()
        built = reuploading_ansatz(num_features, num_layers, num_outputs=num_classes,
                                   num_features=num_features)
        self.num_layers = num_layers
        self.input_scale = nn.Parameter(torch.ones(num_layers, num_features))
        self.layer = QuantumLayer(built, primitive=primitive, gradient=gradient,
                                  input_gradients=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (self.input_scale.unsqueeze(0) * x.unsqueeze(1)).reshape(len(x), -1)
        return torch.log(self.layer(scaled).clamp_min(1e-12))

    def set_primitive(self, primitive: Primitive | None,
                      gradient: Gradient | None = None) -> None:
        self.layer.set_primitive(primitive, gradient)


def _check_finite(x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise DataError("input features contain NaN or infinite values")


class CoherentExperts(nn.Module):
    """Quantum experts aggregated coherently with a ``paper``-ansatz router, in one circuit
    (:func:`~qmoe_qiskit.circuits.ansatze.coherent_ansatz`): one ``SamplerQNN`` in
    ``TorchConnector`` whose weights are the experts' angles and the aggregation angles ω, and
    whose inputs are the features and the router's own weights (so the router trains through
    this circuit as well as through its own).

    Called with the features and the router's weights, it returns log P(class | routing
    outcome 0): the class distribution of the experts' superposed states, postselected on
    the routing register. With ``reupload``, each expert's copies of the features are scaled
    by learnable weights of its own (``input_scale``, ``(experts, layers, features)``), as in
    :class:`ReuploadingExpert`.
    """

    def __init__(self, num_features: int, num_classes: int, num_experts: int, *,
                 router_qubits: int | None = None, router_layers: int = 3,
                 num_layers: int = 2, reupload: bool = False,
                 primitive: Primitive | None = None, gradient: Gradient | None = None):
        super().__init__()
        built = coherent_ansatz(num_features, num_experts, num_classes,
                                router_qubits=router_qubits, router_layers=router_layers,
                                expert_layers=num_layers, reupload=reupload)
        self.num_experts, self.num_classes = num_experts, num_classes
        self.input_scale = (nn.Parameter(torch.ones(num_experts, num_layers, num_features))
                            if reupload else None)
        self.layer = QuantumLayer(built, primitive=primitive, gradient=gradient,
                                  input_gradients=True)

    def joint(self, x: torch.Tensor, router_weights: torch.Tensor) -> torch.Tensor:
        """P(routing outcome r, class c | x) as ``(batch, classes, experts)``: ``[:, c, r]``."""
        parts = [x, router_weights.to(x.dtype).expand(len(x), -1)]
        if self.input_scale is not None:
            parts.append((self.input_scale.unsqueeze(0) * x[:, None, None, :]).reshape(len(x), -1))
        probs = self.layer(torch.cat(parts, dim=-1))
        return probs.reshape(len(x), self.num_classes, self.num_experts)

    def forward(self, x: torch.Tensor, router_weights: torch.Tensor) -> torch.Tensor:
        kept = self.joint(x, router_weights)[:, :, 0]  # postselected on routing outcome 0
        total = kept.sum(dim=-1, keepdim=True)
        return torch.log(kept.clamp_min(1e-12)) - torch.log(total.clamp_min(1e-12))

    def postselection_rate(self, x: torch.Tensor, router_weights: torch.Tensor) -> torch.Tensor:
        """P(routing outcome 0 | x) per input: the share of shots the readout keeps."""
        return self.joint(x, router_weights)[:, :, 0].sum(dim=-1)

    def set_primitive(self, primitive: Primitive | None,
                      gradient: Gradient | None = None) -> None:
        self.layer.set_primitive(primitive, gradient)
