"""``RuntimeSampler``: a ``BaseSamplerV2`` that runs on IBM Quantum (or its local testing mode)
through the job layer: ISA transpilation, the result cache, the job ledger, batch mode.

A QNN handed this sampler keeps its logical circuit; the sampler transpiles it once per circuit
(its output keys follow the logical clbits, which avoids ``SamplerQNN``'s wrong post-processing
of circuits it is given already transpiled), sends all bindings as one PUB, and answers from
the cache when the same PUB was run before. With ``plan_only`` it records what it would submit
and returns placeholder results, so a model's forward pass yields the exact job plan of a run.

:meth:`RuntimeSampler.run_together` makes a whole forward pass one job (its
:class:`~.layer.JobLayer`, shared with a :class:`~.estimator.RuntimeEstimator` beside it, does
the gathering, caching, ledger, locks and resume): at most :data:`MAX_EXECUTIONS` per sampler
job; a PUB larger than that is split by bindings. Each PUB has its own cache entry and ledger
line, so a job's PUBs resume and are reused one by one.

Submission goes through qiskit-ibm-runtime's client-side ``executor_sampler.Sampler`` (its
current interface; the server-side ``SamplerV2`` is deprecated since 0.50). That choice lives in
:meth:`RuntimeSampler._submit` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BitArray, DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit_ibm_runtime.executor_sampler import Sampler as ExecutorSampler

from ..errors import ConfigError, UnsupportedCircuitError
from ..primitives import SyncSampler, binding_rows, outcome_counts
from ..transpile import Compiled, Compiler, measured_qubits
from .cache import ResultCache, pub_key
from .layer import MAX_EXECUTIONS, JobLayer, JobOptions, Part, PubRecord
from .ledger import Ledger
from .service import Connection

__all__ = ["RuntimeSampler", "PubOutcome"]

T = TypeVar("T")


@dataclass(frozen=True)
class PubOutcome:
    """What one PUB measured: the ISA circuit that ran, its bindings (rows, columns in the
    order of ``isa.parameters``) and each register's outcome counts ``(rows, 2**bits)``.
    What a later analysis of the run (``qmoe compare``) needs to evaluate models on the very
    circuits and qubits the backend ran."""

    record: PubRecord
    isa: QuantumCircuit
    values: np.ndarray
    counts: dict[str, np.ndarray]


class RuntimeSampler(SyncSampler):
    """A V2 sampler on ``connection``'s backend; use it as a context manager (batch mode).

    Its results are ``BitArray`` samples; :class:`~qmoe_qiskit.primitives.SamplerEstimator`
    on top of it measures I/Z observables the same way, through the same cache and ledger.
    The stores, locks, repeats and plans are its :class:`~.layer.JobLayer`'s (``jobs``): unless
    it only plans, the cache and the ledger must be writable when it is made.
    """

    def __init__(self, connection: Connection, options: JobOptions | None = None, *,
                 cache: ResultCache | None = None, ledger: Ledger | None = None,
                 plan_only: bool = False, on_record: Callable[[PubRecord], None] | None = None,
                 on_wait: Callable[[str, str, float], None] | None = None,
                 seed: int | None = None, max_executions: int = MAX_EXECUTIONS):
        self.options = options or JobOptions()
        o = self.options
        if int(max_executions) < o.shots:
            raise ConfigError(f"max_executions ({int(max_executions):,}) is below the shots of "
                              f"one binding ({o.shots:,})")
        self.jobs = JobLayer(connection, cache=cache, ledger=ledger, plan_only=plan_only,
                             on_record=on_record, on_wait=on_wait, seed=seed,
                             max_executions=max_executions)
        self.outcomes: list[PubOutcome] = []  # every PUB that ran (not planned ones)
        self.compiler = Compiler(connection.backend, initial_layout=o.initial_layout,
                                 optimization_level=o.optimization_level,
                                 seed_transpiler=o.seed_transpiler)
        self._measured: dict[int, list[int]] = {}  # physical qubits each circuit measures

    # the layer's state, read where the sampler was the whole job layer
    connection = property(lambda self: self.jobs.connection)
    cache = property(lambda self: self.jobs.cache)
    ledger = property(lambda self: self.jobs.ledger)
    plan_only = property(lambda self: self.jobs.plan_only)
    records = property(lambda self: self.jobs.records)
    seed = property(lambda self: self.jobs.seed)
    max_executions = property(lambda self: self.jobs.max_executions)

    @property
    def repeat(self) -> int:
        """Which measurement of the same PUBs this is (0: the first; see ``JobLayer``)."""
        return self.jobs.repeat

    @repeat.setter
    def repeat(self, value: int) -> None:
        self.jobs.repeat = int(value)

    @property
    def default_shots(self) -> int:
        """Shots per binding (``JobOptions.shots``); a PUB asking for others is refused."""
        return self.options.shots

    # ------------------------------------------------------------------ public
    def compile(self, circuit: QuantumCircuit) -> Compiled:
        """``circuit`` compiled for the backend (once per circuit object)."""
        _check_measured(circuit)
        return self.compiler(circuit)

    def place(self, circuit: QuantumCircuit, qubits: Sequence[int]) -> Compiled:
        """Run ``circuit`` on exactly the physical ``qubits`` from now on (calibration
        circuits of given qubits), instead of the layout this sampler would choose."""
        _check_measured(circuit)
        return self.compiler.place(circuit, qubits)

    def measured_qubits(self) -> list[int]:
        """Every physical qubit the circuits run (or planned) so far measure."""
        return sorted({q for qubits in self._measured.values() for q in qubits})

    def run_together(self, forward: Callable[[], T]) -> T:
        """``forward()`` with all its PUBs in one job per primitive
        (:meth:`JobLayer.run_together`)."""
        return self.jobs.run_together(forward)

    def prefetch(self, pubs: Iterable[tuple[QuantumCircuit, Any]]) -> None:
        """Obtain the results of ``pubs`` (circuit, parameter values) ahead of the calls that
        ask for them (:meth:`JobLayer.prefetch`)."""
        parts = []
        for circuit, values in pubs:
            pub = SamplerPub.coerce((circuit, values) if circuit.num_parameters else (circuit,),
                                    self.default_shots)
            compiled = self.compile(pub.circuit)
            parts += self._parts(circuit.name, compiled,
                                 binding_rows(pub.parameter_values, compiled.isa.parameters))
        self.jobs.prefetch(parts)

    def stats(self) -> dict[str, int]:
        return self.jobs.stats()

    def close(self) -> None:
        self.jobs.close()

    def __enter__(self) -> "RuntimeSampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ one PUB
    def _resolve_shots(self, shots: int | None) -> int:
        if shots is not None and shots != self.default_shots:
            raise ConfigError(f"this sampler runs {self.default_shots} shots per binding (set "
                              f"JobOptions(shots=...)); got shots={shots}")
        return self.default_shots

    def _run_pub(self, pub: SamplerPub) -> SamplerPubResult:
        compiled = self.compile(pub.circuit)
        isa = compiled.isa
        self._measured[id(compiled)] = list(compiled.measured)
        values = binding_rows(pub.parameter_values, isa.parameters)
        parts = self._parts(pub.circuit.name, compiled, values)
        if self.jobs.gathering is not None:  # run_together's first pass: collect, run nothing
            for part in parts:
                self.jobs.result(part, None, lambda: None)
            return _reshape(_placeholder(isa, len(values)), pub)
        results, first, new = [], None, False
        for part in parts:
            result, record, fresh = self.jobs.answer(
                part, lambda part=part: self.jobs.record(part, shots=self.options.shots),
                lambda part=part: _placeholder(isa, part.bindings))
            first, new = first or record, new or fresh
            results.append(result)
        result = _concatenate(results)
        if new and first.source != "planned":
            self.outcomes.append(PubOutcome(first, isa, values, {
                name: outcome_counts(result.data[name]) for name in result.data.keys()}))
        return _reshape(result, pub)

    def _parts(self, name: str, compiled: Compiled, values: np.ndarray) -> list[Part]:
        """The PUBs that carry ``values``: one, or slices of rows that each fit in a job."""
        spans = self.jobs.spans(len(values), self.options.shots)
        payload = compiled.isa if compiled.isa.num_parameters else None
        return [Part(self.jobs.label(name, (a, b), len(spans) == 1), compiled, values[a:b],
                     self._key(compiled.isa, values[a:b]), self,
                     (compiled.isa, values[a:b]) if payload is not None else (compiled.isa,),
                     (b - a) * self.options.shots)
                for a, b in spans]

    def _key(self, isa: QuantumCircuit, values: np.ndarray) -> str:
        return pub_key(isa, values, shots=self.options.shots, backend=self.connection.name,
                       calibration=self.connection.calibration, options=asdict(self.options),
                       repeat=self.repeat)

    def _submit(self, pubs: Sequence[tuple], tag: str):
        """The one place that calls the runtime's sampler: a job in the layer's batch."""
        options = {**self.options.runtime_options(tag), **self.jobs.runtime_extras()}
        sampler = ExecutorSampler(mode=self.jobs.batch(), options=options)
        return sampler.run(list(pubs))


def _check_measured(circuit: QuantumCircuit) -> None:
    if not circuit.cregs or -1 in measured_qubits(circuit):
        raise UnsupportedCircuitError(
            f"circuit {circuit.name!r} must measure every classical bit it declares")


def _concatenate(results: list[SamplerPubResult]) -> SamplerPubResult:
    """The results of a PUB's slices as one result, rows in order."""
    if len(results) == 1:
        return results[0]
    first = results[0].data
    fields = {name: BitArray.concatenate([r.data[name] for r in results])
              for name in first.keys()}
    rows = sum(r.data[next(iter(first.keys()))].shape[0] for r in results)
    return SamplerPubResult(DataBin(**fields, shape=(rows,)), metadata=results[0].metadata)


def _reshape(result: SamplerPubResult, pub: SamplerPub) -> SamplerPubResult:
    """The runtime's result (one row per binding) in the shape of the QNN's PUB."""
    fields = {name: result.data[name].reshape(pub.shape) for name in result.data.keys()}
    return SamplerPubResult(DataBin(**fields, shape=pub.shape), metadata=result.metadata)


def _placeholder(isa: QuantumCircuit, rows: int) -> SamplerPubResult:
    """One all-zero shot per binding: plans need a forward pass, not its values, and must not
    allocate the shots they only count."""
    fields = {creg.name: BitArray(np.zeros((rows, 1, (creg.size + 7) // 8), dtype=np.uint8),
                                  creg.size) for creg in isa.cregs}
    return SamplerPubResult(DataBin(**fields, shape=(rows,)), metadata={"planned": True})
