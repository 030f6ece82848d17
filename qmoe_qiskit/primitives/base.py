"""What every execution package builds its primitives from.

Qiskit's V2 primitives return jobs; ours compute at submission, so :class:`DoneJob` carries a
finished result. :class:`SyncSampler` / :class:`SyncEstimator` do the V2 ``run`` bookkeeping
(coercing PUBs with the default shots or precision, collecting results) and leave each backend
only its per-PUB step. :class:`ExactDistributions` is the result field of a sampler that
returns probabilities instead of samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
)
from qiskit.primitives.base.base_primitive_job import BasePrimitiveJob
from qiskit.primitives.containers.bindings_array import BindingsArray
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import JobStatus

from ..errors import UnsupportedCircuitError
from .pubs import coerce_estimator_pub, coerce_sampler_pub

__all__ = ["DoneJob", "ExactDistributions", "SyncSampler", "SyncEstimator", "binding_rows",
           "one_register", "check_finite"]


class DoneJob(BasePrimitiveJob):
    """A job whose result was computed synchronously at submission."""

    def __init__(self, result: Any, job_id: str = "done"):
        super().__init__(job_id=job_id)
        self._result = result

    def result(self) -> Any:
        return self._result

    def status(self) -> JobStatus:
        return JobStatus.DONE

    def done(self) -> bool:
        return True

    def running(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def in_final_state(self) -> bool:
        return True

    def cancel(self) -> None:
        return None


class ExactDistributions:
    """Exact outcome distributions of one classical register over a PUB's bindings.

    ``probabilities`` has shape ``pub_shape + (2**num_bits,)``; index ``k`` is the outcome whose
    bitstring is ``format(k, f"0{num_bits}b")`` (clbit 0 rightmost, as in Qiskit).
    """

    def __init__(self, probabilities: np.ndarray, num_bits: int):
        self.probabilities = probabilities
        self.num_bits = num_bits

    @property
    def shape(self) -> tuple[int, ...]:
        return self.probabilities.shape[:-1]

    def get_probabilities(self, loc: int | tuple[int, ...] | None = None) -> dict[str, float]:
        """Bitstring -> probability at ``loc`` (required unless the PUB has shape ``()``, whose
        one binding ``loc=0`` also names, as ``SamplerQNN`` asks for it)."""
        if self.shape == () and loc in (0, (0,)):
            loc = None
        row = self.probabilities[() if loc is None else loc]
        if row.ndim != 1:
            raise ValueError(f"loc must select one binding of a PUB of shape {self.shape}")
        return {format(k, f"0{self.num_bits}b"): float(p) for k, p in enumerate(row) if p > 0}

    def get_counts(self, loc: int | tuple[int, ...] | None = None) -> dict[str, float]:
        """The exact distribution as weights that sum to one: the limit of counts / shots (an
        exact-mode result draws no shots). Consumers that normalise counts, such as
        ``SamplerQNN``, read the exact probabilities through it."""
        return self.get_probabilities(loc)


class SyncSampler(BaseSamplerV2):
    """A V2 sampler that computes each PUB when it is submitted.

    Subclasses write :meth:`_run_pub`, and :meth:`_resolve_shots` where they restrict shots
    (``None`` asks for exact probabilities where the sampler can give them).
    """

    default_shots: int | None = None

    def run(self, pubs: Iterable, *, shots: int | None = None) -> DoneJob:
        shots = self._resolve_shots(shots)
        coerced = [coerce_sampler_pub(pub, shots) for pub in pubs]
        for i, pub in enumerate(coerced):
            check_finite(pub.parameter_values, f"PUB {i}")
        return DoneJob(PrimitiveResult([self._run_pub(pub) for pub in coerced],
                                       metadata={"version": 2}))

    def _resolve_shots(self, shots: int | None) -> int | None:
        return self.default_shots if shots is None else shots

    def _run_pub(self, pub: SamplerPub) -> SamplerPubResult:
        raise NotImplementedError


class SyncEstimator(BaseEstimatorV2):
    """A V2 estimator that computes each PUB when it is submitted.

    Subclasses write :meth:`_run_pubs` (all PUBs of one call, so they can share work such as
    one measurement for several observables) and :meth:`_resolve_precision`.
    """

    def run(self, pubs: Iterable, *, precision: float | None = None) -> DoneJob:
        precision = self._resolve_precision(precision)
        coerced = [coerce_estimator_pub(pub, precision) for pub in pubs]
        for i, pub in enumerate(coerced):
            check_finite(pub.parameter_values, f"PUB {i}")
        return DoneJob(PrimitiveResult(self._run_pubs(coerced), metadata={"version": 2}))

    def _resolve_precision(self, precision: float | None) -> float | None:
        return precision

    def _run_pubs(self, pubs: list[EstimatorPub]) -> list[PubResult]:
        raise NotImplementedError


def check_finite(values: BindingsArray | np.ndarray, where: str) -> None:
    """Refuse NaN and infinite parameter values as Qiskit's reference primitives do: NaN
    raises ``RuntimeError("Binding to NaN.")`` and an infinity ``ZeroDivisionError("attempted
    to bind infinite value to parameter")``; the messages also name ``where`` and the column.
    A simulator would otherwise return a distribution for a meaningless circuit."""
    if isinstance(values, BindingsArray):
        columns = [(names, np.asarray(array)) for names, array in values.data.items()]
    else:
        columns = [(None, np.asarray(values, dtype=float))]
    for names, array in columns:
        if array.dtype.kind not in "fc" or np.isfinite(array).all():
            continue
        name = "a parameter value" if names is None else \
            "a value of " + ", ".join(str(n) for n in names)
        if np.isnan(array).any():
            raise RuntimeError(f"Binding to NaN. ({where}: {name} is NaN)")
        raise ZeroDivisionError(
            f"attempted to bind infinite value to parameter ({where}: {name} is infinite)")


def binding_rows(bindings: BindingsArray, parameters: Sequence[Parameter]) -> np.ndarray:
    """A PUB's parameter values as rows ``(bindings, len(parameters))``, columns in the order
    of ``parameters`` (one empty row for a parameterless PUB of shape ``()``)."""
    if not len(parameters):
        return np.zeros((max(1, bindings.size), 0))
    if len(bindings.data) == 1:  # one array keyed by the names in this order: use it as it is
        (names, array), = bindings.data.items()
        if len(names) == len(parameters) and names == tuple(p.name for p in parameters):
            return array.reshape(-1, len(parameters))
    return bindings.as_array(parameters).reshape(-1, len(parameters))


def one_register(circuit: QuantumCircuit, owner: str) -> str:
    """The name of the circuit's classical register; samplers that return one distribution
    per binding need exactly one."""
    if len(circuit.cregs) != 1:
        raise UnsupportedCircuitError(
            f"{owner} needs exactly one classical register, the circuit has "
            f"{len(circuit.cregs)}")
    return circuit.cregs[0].name
