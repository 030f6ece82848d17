"""Fast exact simulation for training: batched statevectors with adjoint gradients."""

from .primitives import (
    ExactEstimator,
    ExactEstimatorGradient,
    ExactSampler,
    ExactSamplerGradient,
)
from .arrays import array_backend, set_array_backend
from .kernels import set_threads, threads
from .statevector import SUPPORTED_GATES, compile_circuit

__all__ = [
    "ExactSampler",
    "ExactEstimator",
    "ExactSamplerGradient",
    "ExactEstimatorGradient",
    "compile_circuit",
    "SUPPORTED_GATES",
    "set_threads",
    "threads",
    "set_array_backend",
    "array_backend",
]
