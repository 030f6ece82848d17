"""Routers, experts and the mixture of experts."""

from .classical import LinearExpert, LinearRouter, MLPExpert, MLPRouter
from .moe import (
    EXPERTS,
    ROUTERS,
    CoherentMixture,
    MixtureOfExperts,
    ModelSpec,
    build_model,
    load_model,
    model_from_state,
    model_path,
    save_model,
)
from .quantum import CoherentExperts, QuantumExpert, QuantumLayer, QuantumRouter, ReuploadingExpert

__all__ = [
    "LinearRouter",
    "MLPRouter",
    "QuantumRouter",
    "LinearExpert",
    "MLPExpert",
    "QuantumExpert",
    "QuantumLayer",
    "MixtureOfExperts",
    "CoherentMixture",
    "CoherentExperts",
    "ReuploadingExpert",
    "ModelSpec",
    "build_model",
    "save_model",
    "load_model",
    "model_from_state",
    "model_path",
    "ROUTERS",
    "EXPERTS",
]
