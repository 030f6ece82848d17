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

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from qiskit import QuantumCircuit
from qiskit.primitives import BitArray, DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit_ibm_runtime.executor_sampler import Sampler as ExecutorSampler

from ..errors import ConfigError, JobError, StorageError, UnsupportedCircuitError, choices
from ..primitives import SyncSampler, binding_rows, outcome_counts
from ..transpile import Compiled, Compiler, check_optimization_level, measured_qubits
from .cache import ResultCache, pub_key
from .ledger import Ledger, LedgerEntry, now
from .service import Connection, one_line, scrub

__all__ = ["JobOptions", "RuntimeSampler", "PubRecord", "PubOutcome", "collect", "wait"]

logger = logging.getLogger(__name__)

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

    def runtime_options(self, tag: str | None = None) -> dict[str, Any]:
        """The options of the runtime's sampler (``tag``: the job tag to submit with)."""
        return {
            "environment": {"job_tags": [tag] if tag else []},
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
    measured: list[int]  # physical qubit measured into each clbit
    depth: int
    two_qubit_gates: int
    duration_s: float | None  # one execution of the ISA circuit
    shot_seconds: float | None  # bindings × shots × (duration + repetition delay)


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
    Unless it only plans, the cache and the ledger must be writable when it is made, so no job
    is submitted that could not be recorded. Processes sharing a cache take a lock per PUB:
    one submits, the others wait and read its result from the cache.
    """

    def __init__(self, connection: Connection, options: JobOptions | None = None, *,
                 cache: ResultCache | None = None, ledger: Ledger | None = None,
                 plan_only: bool = False, on_record: Callable[[PubRecord], None] | None = None,
                 on_wait: Callable[[PubRecord, str, float], None] | None = None,
                 seed: int | None = None):
        self.connection = connection
        self.seed = seed  # local testing mode: the simulator's seed (a rehearsal repeats)
        self.on_record = on_record  # called once per PUB, after its result is in
        self.on_wait = on_wait  # called while a job runs: (record, job state, seconds waited)
        self.options = options or JobOptions()
        self.cache = cache
        self.ledger = ledger
        self.plan_only = plan_only
        self.records: list[PubRecord] = []
        self.outcomes: list[PubOutcome] = []  # every PUB that ran (not planned ones)
        o = self.options
        self.compiler = Compiler(connection.backend, initial_layout=o.initial_layout,
                                 optimization_level=o.optimization_level,
                                 seed_transpiler=o.seed_transpiler)
        self._batch = None
        if not plan_only:
            for store in (cache, ledger):
                if store is not None:
                    store.check_writable()

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
        result = self._cached(key, record)
        if result is None and self.plan_only:
            record.source = "planned"
            result = _placeholder(isa, len(values))
        elif result is None:
            with self._lock(key):  # another process may be running this very PUB
                result = self._cached(key, record)
                if result is None:
                    result = self._fetch_or_submit(isa, values, key, record)
        if record.source != "planned":
            self.outcomes.append(PubOutcome(record, isa, values, {
                name: outcome_counts(result.data[name]) for name in result.data.keys()}))
        if self.on_record is not None:
            self.on_record(record)
        return _reshape(result, pub)

    def _cached(self, key: str, record: PubRecord):
        result = self.cache.get(key) if self.cache is not None else None
        if result is not None:
            record.source = "cache"
            record.job_id = (self.cache.meta(key) or {}).get("job_id")
        return result

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        """An OS file lock on ``key`` beside the cache (or the ledger); none without either."""
        folder = (self.cache.root if self.cache is not None else
                  self.ledger.path.parent if self.ledger is not None else None)
        if folder is None:
            yield
            return
        (folder / "locks").mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / "locks" / f"{key}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.warning("another process is running the same PUB (%s…); waiting for it and "
                           "reading its result from the cache", key[:12])
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _fetch_or_submit(self, isa: QuantumCircuit, values: np.ndarray, key: str,
                         record: PubRecord):
        entry = self.ledger.find(key, self.connection.name) if self.ledger is not None else None
        job, entry = self._resume(entry) if entry is not None else (None, None)
        if job is not None:
            record.source = "fetched"
        else:
            job, entry = self._submit_recorded(isa, values, key, record)
            record.source = "submitted"
        record.job_id = entry.job_id
        if self.on_wait is not None:
            wait(job, lambda state, seconds: self.on_wait(record, state, seconds))
        return collect(job, entry, ledger=self.ledger, cache=self.cache)[0]

    def _resume(self, entry: LedgerEntry):
        """``(job, entry)`` for a recorded submission that can still be fetched, else
        ``(None, None)`` (the entry marked ``lost`` unless a live process owns it)."""
        conn = self.connection
        if entry.status == "submitting":  # no job id was recorded: look for its tag
            job = conn.find_tagged(entry.tag)
            if job is not None:
                return job, self.ledger.record(replace(entry, job_id=job.job_id(),
                                                       status="submitted", updated=now()))
            reason = ("local job gone with its process" if conn.local
                      else "IBM Quantum has no job with its tag: it was never submitted")
        else:
            job = conn.retrieve(entry.job_id)
            if job is not None:
                return job, entry
            reason = ("local job gone with its process" if conn.local
                      else "IBM Quantum can no longer return it")
        if not _owned_by_live_process(entry):
            self.ledger.update(entry, "lost", reason)
        return None, None

    def _submit_recorded(self, isa: QuantumCircuit, values: np.ndarray, key: str,
                         record: PubRecord) -> tuple[Any, LedgerEntry]:
        """Submit one job, recorded in the ledger before it leaves (with a unique tag, so a
        crash before its id is written can still find it) and again with its id."""
        conn = self.connection
        entry = LedgerEntry(job_id="", backend=conn.name, key=key, status="submitting",
                            submitted=now(), updated=now(), local=conn.local,
                            circuit=record.circuit, bindings=record.bindings,
                            shots=record.shots, tag=f"qmoe-{uuid.uuid4().hex}",
                            pid=os.getpid(), host=socket.gethostname())
        if self.ledger is not None:
            self.ledger.record(entry)
        job = self._submit(isa, values, entry.tag)
        conn.remember(job)
        entry = replace(entry, job_id=job.job_id(), status="submitted", updated=now())
        if self.ledger is not None:
            self.ledger.record(entry)  # before waiting: an interrupted run fetches it by id
        return job, entry

    def _submit(self, isa: QuantumCircuit, values: np.ndarray, tag: str):
        """The one place that calls the runtime: a sampler job in this sampler's batch."""
        if self._batch is None:
            self._batch = self.connection.open_batch()
        options = self.options.runtime_options(tag)
        if self.connection.local and self.seed is not None:
            options["simulator"] = {"seed_simulator": int(self.seed)}
        sampler = ExecutorSampler(mode=self._batch, options=options)
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
            layout_method=compiled.layout_method, measured=list(compiled.measured),
            depth=isa.depth(),
            two_qubit_gates=sum(1 for inst in isa.data
                                if inst.operation.num_qubits == 2 and inst.name != "barrier"),
            duration_s=duration,
            shot_seconds=None if duration is None else bindings * shots * (duration + rep_delay))
        self.records.append(record)
        return record


def wait(job, report: Callable[[str, float], None], *, longest: float = 5.0) -> None:
    """Poll ``job`` until it is final, reporting its state (``QUEUED``, ``RUNNING``, ...,
    ``DONE``) and the seconds waited, at least once; polls back off to one every ``longest``
    seconds. If the state cannot be read, waiting is left to ``job.result()``."""
    tic, pause = time.monotonic(), 0.25
    try:
        while True:
            status = job.status()
            report(getattr(status, "name", str(status)), time.monotonic() - tic)
            if job.in_final_state():
                return
            time.sleep(pause)
            pause = min(longest, pause * 1.5)
    except Exception as exc:  # a network blip while polling: the result call still waits
        logger.debug("cannot poll job state (%s); waiting for the result", exc)


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
        raise JobError(f"job {entry.job_id} on {entry.backend} failed: {one_line(exc)}") from exc
    if cache is not None:
        try:
            cache.put(entry.key, result, {"job_id": entry.job_id, "backend": entry.backend,
                                          "shots": entry.shots, "bindings": entry.bindings,
                                          "stored": now()})
        except StorageError as exc:  # a disk that filled up while the job ran
            logger.warning("the result of job %s was not cached (%s); it stays in the ledger "
                           "and `qmoe jobs fetch %s` stores it later", entry.job_id, exc,
                           entry.job_id)
    if ledger is not None and entry.status != "done":
        entry = ledger.update(entry, "done")
    return result, entry


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


def _owned_by_live_process(entry: LedgerEntry) -> bool:
    """Whether another process on this machine that is still running submitted ``entry``
    (its local job may still finish there, so it is not ours to mark lost)."""
    if not entry.pid or entry.pid == os.getpid() or entry.host != socket.gethostname():
        return False
    try:
        os.kill(entry.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
