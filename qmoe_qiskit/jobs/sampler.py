"""``RuntimeSampler``: a ``BaseSamplerV2`` that runs on IBM Quantum (or its local testing mode)
through the job layer: ISA transpilation, the result cache, the job ledger, batch mode.

A QNN handed this sampler keeps its logical circuit; the sampler transpiles it once per circuit
(its output keys follow the logical clbits, which avoids ``SamplerQNN``'s wrong post-processing
of circuits it is given already transpiled), sends all bindings as one PUB, and answers from
the cache when the same PUB was run before. With ``plan_only`` it records what it would submit
and returns placeholder results, so a model's forward pass yields the exact job plan of a run.

:meth:`RuntimeSampler.run_together` makes a whole forward pass one job: the pass is first
only planned, then every PUB it needs that the cache does not hold goes out in as few jobs as
the service's limit allows (:data:`MAX_EXECUTIONS` per sampler job; a PUB larger than that is
split by bindings), then the pass runs again on those results. Each PUB has its own cache
entry and ledger line, so a job's PUBs resume and are reused one by one.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any, TypeVar

import numpy as np
from filelock import FileLock, Timeout
from qiskit import QuantumCircuit
from qiskit.primitives import BitArray, DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit_ibm_runtime.executor_sampler import Sampler as ExecutorSampler

from ..errors import (
    ConfigError,
    JobError,
    StorageError,
    UnsupportedCircuitError,
    choices,
)
from ..primitives import SyncSampler, binding_rows, outcome_counts
from ..transpile import Compiled, Compiler, check_optimization_level, measured_qubits
from .cache import ResultCache, pub_key
from .ledger import Ledger, LedgerEntry, now
from .service import Connection, one_line, scrub

__all__ = ["JobOptions", "RuntimeSampler", "PubRecord", "PubOutcome", "MAX_EXECUTIONS",
           "collect", "pack", "wait"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

DD_SEQUENCES = ("XX", "XpXm", "XY4")
DEFAULT_REP_DELAY = 250e-6  # seconds between shots when the backend does not say
# Bindings x shots one sampler job may hold on IBM Quantum (the service's job limits guide:
# "at most, 10 million executions are allowed for Sampler jobs"; the limit is per job).
MAX_EXECUTIONS = 10_000_000


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
    job_pubs: int = 1  # how many PUBs its job carried
    qpu_seconds: float | None = None  # the job's charged QPU time (``job.usage()``), if known
    ran_at: str | None = None  # when its job started running (UTC), if the service says
    repeat: int = 0  # which measurement of the same PUB (``RuntimeSampler.repeat``)


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



@dataclass(frozen=True)
class _Part:
    """One PUB as the service sees it: a circuit's bindings, or a slice of them when they
    exceed one job."""

    label: str  # the circuit's name, with the rows when it is a slice
    compiled: Compiled
    values: np.ndarray
    key: str

    @property
    def executions(self) -> int:
        return len(self.values)


class RuntimeSampler(SyncSampler):
    """A V2 sampler on ``connection``'s backend; use it as a context manager (batch mode).

    Its results are ``BitArray`` samples; :class:`~qmoe_qiskit.primitives.SamplerEstimator`
    on top of it measures I/Z observables the same way, through the same cache and ledger.
    Unless it only plans, the cache and the ledger must be writable when it is made, so no job
    is submitted that could not be recorded. Processes sharing a cache take a lock per PUB:
    one submits, the others wait and read its result from the cache. Setting ``repeat`` to
    ``j > 0`` measures the same PUBs again as a separate measurement: their own cache keys,
    ledger lines and jobs (a study of drift between jobs).
    """

    def __init__(self, connection: Connection, options: JobOptions | None = None, *,
                 cache: ResultCache | None = None, ledger: Ledger | None = None,
                 plan_only: bool = False, on_record: Callable[[PubRecord], None] | None = None,
                 on_wait: Callable[[str, str, float], None] | None = None,
                 seed: int | None = None, max_executions: int = MAX_EXECUTIONS):
        self.connection = connection
        self.seed = seed  # local testing mode: the simulator's seed (a rehearsal repeats)
        self.on_record = on_record  # called once per PUB, after its result is in
        self.on_wait = on_wait  # called while a job runs: (its circuits, job state, seconds)
        self.options = options or JobOptions()
        self.max_executions = int(max_executions)  # bindings x shots per job
        self.cache = cache
        self.ledger = ledger
        self.plan_only = plan_only
        self.repeat = 0
        self.records: list[PubRecord] = []
        self.outcomes: list[PubOutcome] = []  # every PUB that ran (not planned ones)
        o = self.options
        if self.max_executions < o.shots:
            raise ConfigError(f"max_executions ({self.max_executions:,}) is below the shots of "
                              f"one binding ({o.shots:,})")
        self.compiler = Compiler(connection.backend, initial_layout=o.initial_layout,
                                 optimization_level=o.optimization_level,
                                 seed_transpiler=o.seed_transpiler)
        self._batch = None
        self._held: dict[str, tuple[SamplerPubResult, str, str | None, int, dict]] = {}
        self._gathering: list[tuple[QuantumCircuit, np.ndarray]] | None = None
        self._measured: dict[int, list[int]] = {}  # physical qubits each circuit measures
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
        """``forward()`` (a model's pass on this sampler) with all its PUBs in one job.

        The pass first runs on placeholders only to collect its PUBs; those neither held nor
        cached are submitted together (split where they exceed one job), and the pass runs
        again on their results. A pass whose later circuits depended on earlier results would
        submit those circuits as it goes; QMoE models feed every circuit the input alone."""
        if self.plan_only:
            return forward()
        self._gathering = []
        try:
            forward()
            gathered = self._gathering
        finally:
            self._gathering = None
        self.prefetch(gathered)
        return forward()

    def prefetch(self, pubs: Iterable[tuple[QuantumCircuit, Any]]) -> None:
        """Obtain the results of ``pubs`` (circuit, parameter values) ahead of the calls that
        ask for them: those the cache holds are left there, the rest are fetched from jobs the
        ledger knows or submitted together, in as few jobs as the execution limit allows."""
        if self.plan_only:
            return
        parts: dict[str, _Part] = {}
        for circuit, values in pubs:
            pub = SamplerPub.coerce((circuit, values) if circuit.num_parameters else (circuit,),
                                    self.default_shots)
            compiled = self.compile(pub.circuit)
            rows = binding_rows(pub.parameter_values, compiled.isa.parameters)
            for part in self._parts(circuit.name, compiled, rows):
                if part.key not in self._held and self._stored(part.key) is None:
                    parts.setdefault(part.key, part)
        if parts:
            with self._locks(sorted(parts)):
                self._obtain([p for p in parts.values() if self._stored(p.key) is None])

    def stats(self) -> dict[str, int]:
        sources = [r.source for r in self.records]
        jobs = {r.job_id for r in self.records if r.source == "submitted"}
        return {"pubs": len(sources), "jobs_submitted": len(jobs),
                "pubs_submitted": sources.count("submitted"),
                "jobs_fetched": len({r.job_id for r in self.records if r.source == "fetched"}),
                "cache_hits": sources.count("cache")}

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
        self._measured[id(compiled)] = list(compiled.measured)
        values = binding_rows(pub.parameter_values, isa.parameters)
        if self._gathering is not None:  # run_together's first pass: collect, run nothing
            self._gathering.append((pub.circuit, pub.parameter_values))
            return _reshape(_placeholder(isa, len(values)), pub)
        results, first = [], None
        for part in self._parts(pub.circuit.name, compiled, values):
            record = self._record(part)
            first = first or record
            result = self._taken(part.key, record)
            if result is None:
                result = self._cached(part.key, record)
            if result is None and self.plan_only:
                record.source = "planned"
                result = _placeholder(isa, len(part.values))
            elif result is None:
                with self._locks([part.key]):  # another process may be running this very PUB
                    result = self._cached(part.key, record)
                    if result is None:
                        self._obtain([part])
                        result = self._taken(part.key, record)
            results.append(result)
            if self.on_record is not None:
                self.on_record(record)
        result = _concatenate(results)
        if first.source != "planned":
            self.outcomes.append(PubOutcome(first, isa, values, {
                name: outcome_counts(result.data[name]) for name in result.data.keys()}))
        return _reshape(result, pub)

    def _taken(self, key: str, record: PubRecord):
        """The result :meth:`_obtain` holds for ``key`` (removed), its provenance written into
        ``record``; ``None`` when none is held."""
        held = self._held.pop(key, None)
        if held is None:
            return None
        result, record.source, record.job_id, record.job_pubs, facts = held
        record.qpu_seconds, record.ran_at = facts["qpu_seconds"], facts["ran_at"]
        return result

    def _parts(self, name: str, compiled: Compiled, values: np.ndarray) -> list[_Part]:
        """The PUBs that carry ``values``: one, or slices of rows that each fit in a job."""
        rows = max(1, self.max_executions // self.options.shots)
        spans = [(0, len(values))] if len(values) <= rows else \
            [(i, min(i + rows, len(values))) for i in range(0, len(values), rows)]
        again = f" (repeat {self.repeat})" if self.repeat else ""
        return [_Part((name if len(spans) == 1 else f"{name}[{a}:{b}]") + again, compiled,
                      values[a:b], self._key(compiled.isa, values[a:b]))
                for a, b in spans]

    def _key(self, isa: QuantumCircuit, values: np.ndarray) -> str:
        return pub_key(isa, values, shots=self.options.shots, backend=self.connection.name,
                       calibration=self.connection.calibration, options=asdict(self.options),
                       repeat=self.repeat)

    def _stored(self, key: str):
        return self.cache.get(key) if self.cache is not None else None

    def _cached(self, key: str, record: PubRecord):
        result = self._stored(key)
        if result is not None:
            record.source = "cache"
            meta = self.cache.meta(key) or {}
            record.job_id, record.qpu_seconds = meta.get("job_id"), meta.get("qpu_seconds")
            record.ran_at = meta.get("ran_at")
        return result

    @contextmanager
    def _locks(self, keys: Sequence[str]) -> Iterator[None]:
        """OS file locks on ``keys`` beside the cache (or the ledger), taken in sorted order;
        none without either."""
        folder = (self.cache.root if self.cache is not None else
                  self.ledger.path.parent if self.ledger is not None else None)
        if folder is None:
            yield
            return
        (folder / "locks").mkdir(parents=True, exist_ok=True)
        held = []
        try:
            for key in sorted(keys):
                lock = FileLock(folder / "locks" / f"{key}.lock")
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    logger.warning("another process is running the same PUB (%s…); waiting for "
                                   "it and reading its result from the cache", key[:12])
                    lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()

    # ------------------------------------------------------------------ jobs
    def _obtain(self, parts: Sequence[_Part]) -> None:
        """Results of ``parts`` into ``self._held``: from the jobs the ledger recorded for
        them where those can still be fetched, else from new jobs (as few as the limit
        allows)."""
        fresh = []
        resumed: dict[str, tuple[Any, list[tuple[LedgerEntry, _Part]]]] = {}
        for part in parts:
            entry = self.ledger.find(part.key, self.connection.name) \
                if self.ledger is not None else None
            job, entry = self._resume(entry) if entry is not None else (None, None)
            if job is None:
                fresh.append(part)
            else:
                resumed.setdefault(entry.job_id, (job, []))[1].append((entry, part))
        for job, pairs in resumed.values():
            self._finish(job, pairs, "fetched")
        for group in pack([p.executions * self.options.shots for p in fresh],
                          self.max_executions):
            chosen = [fresh[i] for i in group]
            job, entries = self._submit_recorded(chosen)
            self._finish(job, list(zip(entries, chosen)), "submitted")

    def _finish(self, job, pairs: list[tuple[LedgerEntry, _Part]], source: str) -> None:
        if self.on_wait is not None:
            what = "+".join(dict.fromkeys(p.label for _, p in pairs))
            wait(job, lambda state, seconds: self.on_wait(what, state, seconds))
        done, facts = collect(job, [entry for entry, _ in pairs], ledger=self.ledger,
                              cache=self.cache)
        for result, entry in done:
            self._held[entry.key] = (result, source, entry.job_id, len(pairs), facts)

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

    def _submit_recorded(self, parts: Sequence[_Part]) -> tuple[Any, list[LedgerEntry]]:
        """Submit one job carrying ``parts``, recorded in the ledger (one line per PUB, with a
        tag unique to the job, so a crash before its id is written can still find it) before
        it leaves, and again with its id."""
        conn = self.connection
        tag = f"qmoe-{uuid.uuid4().hex}"
        entries = [LedgerEntry(job_id="", backend=conn.name, key=part.key, status="submitting",
                               submitted=now(), updated=now(), local=conn.local,
                               circuit=part.label, bindings=len(part.values),
                               shots=self.options.shots, tag=tag, pid=os.getpid(),
                               host=socket.gethostname(), index=i)
                   for i, part in enumerate(parts)]
        for entry in entries:
            if self.ledger is not None:
                self.ledger.record(entry)
        job = self._submit([(p.compiled.isa, p.values) for p in parts], tag)
        conn.remember(job)
        entries = [replace(e, job_id=job.job_id(), status="submitted", updated=now())
                   for e in entries]
        for entry in entries:  # before waiting: an interrupted run fetches it by id
            if self.ledger is not None:
                self.ledger.record(entry)
        return job, entries

    def _submit(self, pubs: Sequence[tuple[QuantumCircuit, np.ndarray]], tag: str):
        """The one place that calls the runtime: a sampler job in this sampler's batch."""
        if self._batch is None:
            self._batch = self.connection.open_batch()
        options = self.options.runtime_options(tag)
        if self.connection.local and self.seed is not None:
            options["simulator"] = {"seed_simulator": int(self.seed)}
        sampler = ExecutorSampler(mode=self._batch, options=options)
        return sampler.run([(isa, values) if isa.num_parameters else (isa,)
                            for isa, values in pubs])

    def _record(self, part: _Part) -> PubRecord:
        compiled, isa = part.compiled, part.compiled.isa
        backend = self.connection.backend
        try:
            duration = float(isa.estimate_duration(backend.target, unit="s"))
        except Exception:  # targets without gate durations (ideal simulators)
            duration = None
        rep_delay = getattr(backend, "default_rep_delay", None) or DEFAULT_REP_DELAY
        shots, bindings = self.options.shots, len(part.values)
        record = PubRecord(
            circuit=part.label, key=part.key, source="", job_id=None, bindings=bindings,
            repeat=self.repeat,
            shots=shots, layout=compiled.initial_layout, physical_qubits=compiled.used_qubits,
            layout_method=compiled.layout_method, measured=list(compiled.measured),
            depth=isa.depth(),
            two_qubit_gates=sum(1 for inst in isa.data
                                if inst.operation.num_qubits == 2 and inst.name != "barrier"),
            duration_s=duration,
            shot_seconds=None if duration is None else bindings * shots * (duration + rep_delay))
        self.records.append(record)
        return record


def pack(executions: Sequence[int], limit: int) -> list[list[int]]:
    """Indices of PUBs grouped into jobs of at most ``limit`` executions each, in order (a
    PUB is never split here; :class:`RuntimeSampler` slices larger ones first)."""
    jobs: list[list[int]] = []
    total = limit + 1
    for i, n in enumerate(executions):
        if total + n > limit:
            jobs.append([])
            total = 0
        jobs[-1].append(i)
        total += n
    return jobs


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


def collect(job, entries: Sequence[LedgerEntry], *, ledger: Ledger | None,
            cache: ResultCache | None) -> tuple[list[tuple[Any, LedgerEntry]], dict[str, Any]]:
    """Wait for ``job``, store the result of each PUB ``entries`` name (by index) in the
    cache and mark it ``done``; returns each result with its entry's new state, and what the
    service says of the job: ``qpu_seconds`` charged and ``ran_at``, when it started running
    (the calibration in force then is the one that describes it; ``None`` where unknown). A
    failure is marked ``failed`` on every entry and raised as :class:`JobError` (token
    scrubbed)."""
    try:
        results = job.result()
        picked = [results[entry.index] for entry in entries]
    except Exception as exc:  # the runtime raises several unrelated types here
        if ledger is not None:
            for entry in entries:
                ledger.update(entry, "failed", scrub(f"{type(exc).__name__}: {exc}")[:500])
        name = entries[0].job_id if entries else "?"
        raise JobError(f"job {name} on {entries[0].backend if entries else '?'} failed: "
                       f"{one_line(exc)}") from exc
    done, facts = [], {"qpu_seconds": _usage(job), "ran_at": _running_since(job)}
    for result, entry in zip(picked, entries):
        if cache is not None:
            try:
                cache.put(entry.key, result, {"job_id": entry.job_id, "backend": entry.backend,
                                              "shots": entry.shots, "bindings": entry.bindings,
                                              "index": entry.index, **facts,
                                              "stored": now()})
            except StorageError as exc:  # a disk that filled up while the job ran
                logger.warning("the result of job %s was not cached (%s); it stays in the "
                               "ledger and `qmoe jobs fetch %s` stores it later", entry.job_id,
                               exc, entry.job_id)
        if ledger is not None and entry.status != "done":
            entry = ledger.update(entry, "done")
        done.append((result, entry))
    return done, facts


def _usage(job) -> float | None:
    """The QPU seconds the service charged for ``job`` (0 in local testing mode), if it says."""
    try:
        usage = job.usage()
    except Exception as exc:  # not final yet, an older runtime, a network blip
        logger.debug("the usage of job %s is unknown (%s)", getattr(job, "job_id", "?"), exc)
        return None
    return float(usage) if isinstance(usage, (int, float)) else None


def _running_since(job) -> str | None:
    """When ``job`` started running (ISO, UTC), from the service's job metrics."""
    try:
        stamp = job.metrics()["timestamps"]["running"]
    except Exception as exc:  # no metrics (older runtimes), a network blip
        logger.debug("the start time of job %s is unknown (%s)", getattr(job, "job_id", "?"),
                     exc)
        return None
    if isinstance(stamp, datetime):
        return stamp.astimezone(timezone.utc).isoformat(timespec="seconds")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(
            timezone.utc).isoformat(timespec="seconds")
    except ValueError:
        return None


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
