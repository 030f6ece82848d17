"""Noise models for Aer: factories and the primitives that run a QNN's circuits under them.

Factories (:mod:`.factories`) return qiskit-aer ``NoiseModel`` objects: :func:`depolarizing`,
:func:`thermal_relaxation`, :func:`device` (from a backend's calibration, optionally restricted
to some qubits and with every error rate scaled). :func:`aer_primitives` turns any of them into
a sampler and an estimator a QNN can use; :func:`aer_simulator` into a ready ``AerSimulator``.
The batched parameter-shift gradients train a QNN under any of them.
"""

from .factories import (
    DEFAULT_BASIS,
    depolarizing,
    device,
    gates_without_noise,
    readout_matrices,
    thermal_relaxation,
)
from .gradients import BatchedShiftEstimatorGradient, BatchedShiftSamplerGradient
from .primitives import NoisyEstimator, NoisySampler, NoisySimulation, aer_primitives, aer_simulator

__all__ = [
    "DEFAULT_BASIS",
    "depolarizing",
    "thermal_relaxation",
    "device",
    "readout_matrices",
    "gates_without_noise",
    "NoisySimulation",
    "NoisySampler",
    "NoisyEstimator",
    "aer_primitives",
    "aer_simulator",
    "BatchedShiftSamplerGradient",
    "BatchedShiftEstimatorGradient",
]
