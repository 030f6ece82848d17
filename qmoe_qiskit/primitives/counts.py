"""From measured outcomes to primitive results: outcome counts and probabilities of a sampler's
result field, and I/Z observables evaluated on them, as hardware measures them.

Shared by the noisy Aer estimator (exact probabilities), the sampler-based estimator (counts
from any sampler) and the batched parameter-shift gradients.
"""

from __future__ import annotations

import numpy as np
from qiskit.primitives import BitArray, DataBin, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.quantum_info import SparsePauliOp

from ..errors import UnsupportedCircuitError
from .base import ExactDistributions

__all__ = ["diagonal_eigenvalues", "expectations_from_counts", "estimator_pub_result",
           "outcome_counts", "outcome_probabilities", "popcount"]


def popcount(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each (non-negative) integer in ``x``."""
    count = np.zeros_like(x)
    while np.any(x):
        count += x & 1
        x = x >> 1
    return count


def outcome_counts(bits: BitArray) -> np.ndarray:
    """Counts ``(rows, 2**num_bits)`` of each outcome (as an integer) for each binding."""
    array = bits.array.reshape(-1, bits.num_shots, bits.array.shape[-1]).astype(np.int64)
    weights = 256 ** np.arange(array.shape[-1] - 1, -1, -1, dtype=np.int64)
    outcomes = array @ weights  # (rows, shots); byte 0 is the most significant
    size = 2 ** bits.num_bits
    offsets = np.arange(len(outcomes))[:, None] * size
    return np.bincount((outcomes + offsets).ravel(),
                       minlength=size * len(outcomes)).reshape(len(outcomes), size)


def outcome_probabilities(field: BitArray | ExactDistributions) -> np.ndarray:
    """A sampler result field as outcome probabilities ``field.shape + (2**num_bits,)``: the
    exact distributions themselves, or the frequencies of sampled outcomes."""
    if isinstance(field, ExactDistributions):
        return field.probabilities
    counts = outcome_counts(field)
    return (counts / field.num_shots).reshape(field.shape + counts.shape[-1:])


def diagonal_eigenvalues(observables: list) -> tuple[list[int], np.ndarray]:
    """For I/Z observables: the qubits they act on (``support``) and each observable's
    eigenvalue on each computational outcome of those qubits, ``(observables, 2**len(support))``
    (outcome bit ``i`` is ``support[i]``)."""
    terms = [_diagonal_terms(obs) for obs in observables]
    support = sorted({q for t in terms for mask, _ in t for q in _bits(mask)})
    outcomes = np.arange(2 ** len(support))
    eig = np.zeros((len(observables), len(outcomes)))
    for i, t in enumerate(terms):
        for mask, coeff in t:
            local = sum(1 << support.index(q) for q in _bits(mask))
            eig[i] += coeff * (1 - 2 * (popcount(outcomes & local) & 1))
    return support, eig


def expectations_from_counts(counts: np.ndarray, eig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expectation values and their standard errors ``(bindings, observables)`` from outcome
    counts ``(bindings, outcomes)``."""
    shots = counts.sum(axis=1, keepdims=True)
    freq = counts / shots
    table = freq @ eig.T
    second = freq @ (eig.T ** 2)
    return table, np.sqrt(np.maximum(second - table**2, 0) / shots)


def estimator_pub_result(pub: EstimatorPub, table: np.ndarray, stds: np.ndarray, *,
                         shots: int | None) -> PubResult:
    """Broadcast a ``(bindings, observables)`` table to the PUB's shape as an estimator result."""
    obs_idx = np.arange(pub.observables.size).reshape(pub.observables.shape)
    val_idx = np.arange(max(1, pub.parameter_values.size)).reshape(pub.parameter_values.shape)
    obs_idx, val_idx = np.broadcast_arrays(obs_idx, val_idx)
    evs, std = table[val_idx, obs_idx], stds[val_idx, obs_idx]
    return PubResult(DataBin(evs=evs, stds=std, shape=evs.shape), metadata={"shots": shots})


def _diagonal_terms(obs) -> list[tuple[int, float]]:
    """``[(z_mask, coeff), ...]`` of an observable made of I and Z Paulis only."""
    items = obs.items() if isinstance(obs, dict) else SparsePauliOp(obs).to_list()
    terms = []
    for label, coeff in items:
        if set(label) - set("IZ"):
            raise UnsupportedCircuitError(
                f"observables are measured in the computational basis, so only I/Z Paulis are "
                f"supported; got {label!r}")
        if abs(np.imag(coeff)) > 1e-12:
            raise UnsupportedCircuitError(f"observable coefficient {coeff} is not real")
        mask = sum(1 << q for q, c in enumerate(reversed(label)) if c == "Z")
        terms.append((mask, float(np.real(coeff))))
    return terms


def _bits(mask: int) -> list[int]:
    return [q for q in range(mask.bit_length()) if mask >> q & 1]
