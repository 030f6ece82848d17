"""Execution building blocks shared by ``simulation``, ``noise_models`` and ``jobs``.

The floor of the execution layer: it imports nothing above it. A done job, the exact-distribution
result field, binding rows, a per-circuit cache, synchronous V2 sampler / estimator bases and
gradient bases (each backend writes only its per-PUB or per-circuit step), outcome counts and
I/Z expectations, and an estimator built on any sampler.
"""

from .base import (
    DoneJob,
    ExactDistributions,
    SyncEstimator,
    SyncSampler,
    binding_rows,
    check_finite,
    one_register,
)
from .cache import CircuitCache
from .counts import (
    diagonal_eigenvalues,
    estimator_pub_result,
    expectations_from_counts,
    outcome_counts,
    outcome_probabilities,
    popcount,
)
from .estimator import MEASURED_REGISTER, SamplerEstimator
from .gradients import (
    ParameterColumns,
    SyncEstimatorGradient,
    SyncSamplerGradient,
    group_by_circuit,
)

__all__ = [
    "CircuitCache",
    "DoneJob",
    "ExactDistributions",
    "SyncSampler",
    "SyncEstimator",
    "binding_rows",
    "check_finite",
    "one_register",
    "diagonal_eigenvalues",
    "estimator_pub_result",
    "expectations_from_counts",
    "outcome_counts",
    "outcome_probabilities",
    "popcount",
    "SamplerEstimator",
    "MEASURED_REGISTER",
    "SyncSamplerGradient",
    "SyncEstimatorGradient",
    "ParameterColumns",
    "group_by_circuit",
]
