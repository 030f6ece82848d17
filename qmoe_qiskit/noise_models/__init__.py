"""Noise models for Aer: factories and the primitives that run a QNN's circuits under them.

Factories (:mod:`.factories`) return qiskit-aer ``NoiseModel`` objects: :func:`depolarizing`,
:func:`thermal_relaxation`, :func:`device` (from a backend's calibration, optionally restricted
to some qubits and with every error rate scaled). :func:`aer_primitives` turns any of them into
a sampler and an estimator a QNN can use; :func:`aer_simulator` into a ready ``AerSimulator``.
"""

from .factories import (
    DEFAULT_BASIS,
    depolarizing,
    device,
    fake_backend_names,
    gates_without_noise,
    get_backend,
    readout_matrices,
    thermal_relaxation,
)
from .primitives import NoisyEstimator, NoisySampler, NoisySimulation, aer_primitives, aer_simulator

__all__ = [
    "DEFAULT_BASIS",
    "depolarizing",
    "thermal_relaxation",
    "device",
    "fake_backend_names",
    "get_backend",
    "readout_matrices",
    "gates_without_noise",
    "NoisySimulation",
    "NoisySampler",
    "NoisyEstimator",
    "aer_primitives",
    "aer_simulator",
]
