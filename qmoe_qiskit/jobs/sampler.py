"""``RuntimeSampler``: a ``BaseSamplerV2`` that runs on IBM Quantum (or its local testing mode)
through the job layer: ISA transpilation, the result cache, the job ledger, batch mode.

A QNN handed this sampler keeps its logical circuit; the sampler transpiles it once per circuit
(its output keys follow the logical clbits, which avoids ``SamplerQNN``'s wrong post-processing
of circuits it is given already transpiled), sends all bindings as one PUB, and answers from
the cache when the same PUB was run before. With ``plan_only`` it records what it would submit
and returns placeholder results, so a model's forward pass yields the exact job plan of a run.

Submission goes through qiskit-ibm-runtime's client-side ``executor_sampler.Sampler`` (its
current interface; the server-side ``SamplerV2`` is deprecated since 0.50). That choice lives in
:func:`_submit` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BitArray, DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit_ibm_runtime.executor_sampler import Sampler as ExecutorSampler

from ..errors import ConfigError, JobError, UnsupportedCircuitError, choices
from ..primitives import SyncSampler, binding_rows
from ..transpile import Compiled, Compiler, check_optimization_level, measured_qubits
from .cache import ResultCache, pub_key
from .ledger import Ledger, LedgerEntry, now
from .service import Connection, scrub

__all__ = ["JobOptions", "RuntimeSampler", "PubRecord", "collect"]

DD_SEQUENCES = ("XX", "XpXm", "XY4")
DEFAULT_REP_DELAY = 250e-6  # seconds between shots when the backend does not say


@dataclass(frozen=True)
class JobOptions:
    """How circuits are compiled and run. Every field is part of the cache key."""

    shots: int = 1024
    optimization_level: int = 1
    seed_transpiler: int = 0
    initial_layout: tuple[int, ...] | None = None
    twirling: bool = False  # Pauli twirling of gates and measurements
    dynamical_decoupling: bool = False
    dd_sequence: str = "XX"

    def __post_init__(self):
        if isinstance(self.shots, bool) or not isinstance(self.shots, (int, np.integer)) \
                or self.shots < 1:
            raise ConfigError(f"shots must be a positive integer, got {self.shots!r}")
        check_optimization_level(self.optimization_level)
        if self.dd_sequence not in DD_SEQUENCES:
            raise ConfigError(f"unknown dynamical decoupling sequence {self.dd_sequence!r}; "
                              f"valid sequences: {choices(DD_SEQUENCES)}")

    def runtime_options(self) -> dict[str, Any]:
        """The options of the runtime's sampler."""
        return {
            "default_shots": int(self.shots),
            "twirling": {"enable_gates": self.twirling, "enable_measure": self.twirling},
            "dynamical_decoupling": {"enable": self.dynamical_decoupling,
                                     "sequence_type": self.dd_sequence},
        }


@dataclass
class PubRecord:
    """What happened to one PUB: where its result came from and what it cost."""

    circuit: str
    key: str
    source: str  # "cache", "submitted", "fetched" or "planned"
    job_id: str | None
    bindings: int
    shots: int
    layout: list[int]  # physical qubit each logical qubit starts on
    physical_qubits: list[int]  # every physical qubit the ISA circuit touches
    layout_method: str
    depth: int
    two_qubit_gates: int
    duration_s: float | None  # one execution of the ISA circuit
    shot_seconds: float | None  # bindings × shots × (duration + repetition delay)


class RuntimeSampler(SyncSampler):
    """A V2 sampler on ``connection``'s backend; use it as a context manager (batch mode).

    Its results are ``BitArray`` samples; :class:`~qmoe_qiskit.primitives.SamplerEstimator`
    on top of it measures I/Z observables the same way, through the same cache and ledger.
    """

    def __init__(self, connection: Connection, options: JobOptions | None = None, *,
                 cache: ResultCache | None = None, ledger: Ledger | None = None,
                 plan_only: bool = False, on_record: Callable[[PubRecord], None] | None = None):
        self.connection = connection
        self.on_record = on_record  # called once per PUB, after its result is in
        self.options = options or JobOptions()
        self.cache = cache
        self.ledger = ledger
        self.plan_only = plan_only
        self.records: list[PubRecord] = []
        o = self.options
        self.compiler = Compiler(connection.backend, initial_layout=o.initial_layout,
                                 optimization_level=o.optimization_level,
                                 seed_transpiler=o.seed_transpiler)
        self._batch = None

    @property
    def default_shots(self) -> int:
        """Shots per binding (``JobOptions.shots``); a PUB asking for others is refused."""
        return self.options.shots

    # ------------------------------------------------------------------ public
    def compile(self, circuit: QuantumCircuit) -> Compiled:
        """``circuit`` compiled for the backend (once per circuit object)."""
        if not circuit.cregs or -1 in measured_qubits(circuit):
            raise UnsupportedCircuitError(
                f"circuit {circuit.name!r} must measure every classical bit it declares")
        return self.compiler(circuit)

    def stats(self) -> dict[str, int]:
        sources = [r.source for r in self.records]
        return {"pubs": len(sources), "jobs_submitted": sources.count("submitted"),
                "jobs_fetched": sources.count("fetched"), "cache_hits": sources.count("cache")}

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None

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
        values = binding_rows(pub.parameter_values, isa.parameters)
        shots = self.options.shots
        key = pub_key(isa, values, shots=shots, backend=self.connection.name,
                      calibration=self.connection.calibration,
                      options=asdict(self.options))
        record = self._record(pub.circuit, compiled, key, len(values))
        result = self.cache.get(key) if self.cache is not None else None
        if result is not None:
            record.source = "cache"
            record.job_id = (self.cache.meta(key) or {}).get("job_id")
        elif self.plan_only:
            record.source = "planned"
            result = _placeholder(isa, len(values), shots)
        else:
            result = self._fetch_or_submit(isa, values, key, record)
        if self.on_record is not None:
            self.on_record(record)
        return _reshape(result, pub)

    def _fetch_or_submit(self, isa: QuantumCircuit, values: np.ndarray, key: str,
                         record: PubRecord):
        conn = self.connection
        entry = self.ledger.find(key, conn.name) if self.ledger is not None else None
        job = conn.retrieve(entry.job_id) if entry is not None else None
        if job is not None:
            record.source = "fetched"
        else:
            if entry is not None:  # a local job of a process that has ended
                self.ledger.update(entry, "lost", "local job gone with its process")
            job = self._submit(isa, values)
            conn.remember(job)
            record.source = "submitted"
            entry = LedgerEntry(job_id=job.job_id(), backend=conn.name, key=key,
                                status="submitted", submitted=now(), updated=now(),
                                local=conn.local, circuit=record.circuit,
                                bindings=record.bindings, shots=record.shots)
            if self.ledger is not None:
                self.ledger.record(entry)  # before waiting: an interrupted run can resume
        record.job_id = entry.job_id
        return collect(job, entry, ledger=self.ledger, cache=self.cache)[0]

    def _submit(self, isa: QuantumCircuit, values: np.ndarray):
        """The one place that calls the runtime: a sampler job in this sampler's batch."""
        if self._batch is None:
            self._batch = self.connection.open_batch()
        sampler = ExecutorSampler(mode=self._batch, options=self.options.runtime_options())
        pub = (isa, values) if isa.num_parameters else (isa,)
        return sampler.run([pub])

    def _record(self, circuit: QuantumCircuit, compiled: Compiled, key: str,
                bindings: int) -> PubRecord:
        isa = compiled.isa
        backend = self.connection.backend
        try:
            duration = float(isa.estimate_duration(backend.target, unit="s"))
        except Exception:  # targets without gate durations (ideal simulators)
            duration = None
        rep_delay = getattr(backend, "default_rep_delay", None) or DEFAULT_REP_DELAY
        shots = self.options.shots
        record = PubRecord(
            circuit=circuit.name, key=key, source="", job_id=None, bindings=bindings,
            shots=shots, layout=compiled.initial_layout, physical_qubits=compiled.used_qubits,
            layout_method=compiled.layout_method, depth=isa.depth(),
            two_qubit_gates=sum(1 for inst in isa.data
                                if inst.operation.num_qubits == 2 and inst.name != "barrier"),
            duration_s=duration,
            shot_seconds=None if duration is None else bindings * shots * (duration + rep_delay))
        self.records.append(record)
        return record


def collect(job, entry: LedgerEntry, *, ledger: Ledger | None,
            cache: ResultCache | None) -> tuple[Any, LedgerEntry]:
    """Wait for ``job``'s (first PUB's) result, store it in the cache and mark the job ``done``;
    returns the result and the entry's new state. A failure is marked ``failed`` and raised as
    :class:`JobError` (token scrubbed)."""
    try:
        result = job.result()[0]
    except Exception as exc:  # the runtime raises several unrelated types here
        if ledger is not None:
            ledger.update(entry, "failed", scrub(f"{type(exc).__name__}: {exc}")[:500])
        raise JobError(f"job {entry.job_id} on {entry.backend} failed: {scrub(str(exc))}") from exc
    if cache is not None:
        cache.put(entry.key, result, {"job_id": entry.job_id, "backend": entry.backend,
                                      "shots": entry.shots, "bindings": entry.bindings,
                                      "stored": now()})
    if ledger is not None and entry.status != "done":
        entry = ledger.update(entry, "done")
    return result, entry


def _reshape(result: SamplerPubResult, pub: SamplerPub) -> SamplerPubResult:
    """The runtime's result (one row per binding) in the shape of the QNN's PUB."""
    fields = {name: result.data[name].reshape(pub.shape) for name in result.data.keys()}
    return SamplerPubResult(DataBin(**fields, shape=pub.shape), metadata=result.metadata)


def _placeholder(isa: QuantumCircuit, rows: int, shots: int) -> SamplerPubResult:
    """All-zero outcomes, one row per binding (plans need a forward pass, not its values)."""
    fields = {creg.name: BitArray(np.zeros((rows, shots, (creg.size + 7) // 8), dtype=np.uint8),
                                  creg.size) for creg in isa.cregs}
    return SamplerPubResult(DataBin(**fields, shape=(rows,)), metadata={"planned": True})
