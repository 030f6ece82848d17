"""Noise models for Aer: factories and the primitives that run a QNN's circuits under them.

Factories (:mod:`.factories`) return qiskit-aer ``NoiseModel`` objects: :func:`depolarizing`,
:func:`thermal_relaxation`, :func:`device` (from a backend's calibration, asymmetric readout
included, optionally restricted to some qubits and with every error rate scaled) and
:func:`device_readout` (its readout errors alone). :func:`aer_primitives` turns any of them into
a sampler and an estimator a QNN can use; :func:`aer_simulator` into a ready ``AerSimulator``;
:func:`stand_in` into a hardware stand-in that runs through the job layer with a known truth.
The batched parameter-shift gradients train a QNN under any of them; :class:`IsaEvaluator`
evaluates circuits that already ran, on their own qubits, under any of them.
"""

from .evaluate import IsaEvaluator
from .factories import (
    DEFAULT_BASIS,
    calibrated_readout,
    depolarizing,
    device,
    device_readout,
    gates_without_noise,
    readout_matrices,
    thermal_relaxation,
)
from .gradients import (
    AdjointNoisyEstimatorGradient,
    AdjointNoisySamplerGradient,
    BatchedShiftEstimatorGradient,
    BatchedShiftSamplerGradient,
    NoisyEstimatorGradient,
    NoisySamplerGradient,
    training_primitives,
)
from .primitives import (
    NoisyEstimator,
    NoisySampler,
    NoisySimulation,
    aer_primitives,
    aer_simulator,
)
from .standin import StandIn, stand_in

__all__ = [
    "DEFAULT_BASIS",
    "depolarizing",
    "thermal_relaxation",
    "device",
    "device_readout",
    "calibrated_readout",
    "readout_matrices",
    "gates_without_noise",
    "NoisySimulation",
    "NoisySampler",
    "NoisyEstimator",
    "aer_primitives",
    "aer_simulator",
    "stand_in",
    "StandIn",
    "IsaEvaluator",
    "BatchedShiftSamplerGradient",
    "BatchedShiftEstimatorGradient",
    "AdjointNoisySamplerGradient",
    "AdjointNoisyEstimatorGradient",
    "training_primitives",
    "NoisySamplerGradient",
    "NoisyEstimatorGradient",
]
