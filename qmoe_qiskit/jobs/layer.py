"""The job layer's machinery, shared by its primitives (:class:`~.sampler.RuntimeSampler`,
:class:`~.estimator.RuntimeEstimator`): one connection and batch, the result cache, the job
ledger, a lock per PUB, the gathering of a whole forward pass into one job, resume of recorded
jobs, and what each PUB cost.

A primitive turns each PUB it is given into :class:`Part` objects (a circuit's bindings, or a
slice of them where they exceed one job) with a cache key, and asks :meth:`JobLayer.result`
for each part's result. The layer answers from results it holds, from the cache, from a job
the ledger recorded, or from a new job, which the part's primitive submits (its ``_submit``:
the one place that calls the runtime). Parts of different primitives never share a job.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, TypeVar

import numpy as np
from filelock import FileLock, Timeout

from ..errors import ConfigError, JobError, StorageError, choices
from ..transpile import Compiled, check_optimization_level
from .cache import ResultCache
from .ledger import Ledger, LedgerEntry, now
from .service import Connection, one_line, scrub

__all__ = ["JobOptions", "JobLayer", "Part", "PubRecord", "MAX_EXECUTIONS", "DD_SEQUENCES",
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
    shot_seconds: float | None  # bindings × shots × (duration + repetition delay), summed
    # over every circuit variant the primitive runs (noise factors, calibrations)
    job_pubs: int = 1  # how many PUBs its job carried
    qpu_seconds: float | None = None  # the job's charged QPU time (``job.usage()``), if known
    ran_at: str | None = None  # when its job started running (UTC), if the service says
    repeat: int = 0  # which measurement of the same PUB (``JobLayer.repeat``)
    primitive: str = "sampler"  # "sampler", or "estimator" with its mitigation
    variants: int = 1  # circuit variants per binding (noise factors, PEC's overhead cap): a
    # job's executions are bindings x shots x variants


@dataclass(frozen=True)
class Part:
    """One PUB as the service sees it: a circuit's bindings, or a slice of them when they
    exceed one job, with its cache key and what its primitive submits for it."""

    label: str  # the circuit's name, with the rows when it is a slice
    compiled: Compiled
    values: np.ndarray
    key: str
    primitive: Any  # the primitive whose ``_submit`` sends it
    payload: tuple = ()  # what ``primitive._submit`` sends for it
    executions: int = 0  # bindings x shots x circuit variants: what the job limit counts

    @property
    def bindings(self) -> int:
        return len(self.values)


@dataclass
class _Held:
    result: Any
    source: str
    job_id: str | None
    job_pubs: int
    facts: dict = field(default_factory=dict)


class JobLayer:
    """The connection, stores and jobs that the job layer's primitives share.

    Unless it only plans, the cache and the ledger must be writable when it is made, so no job
    is submitted that could not be recorded. Processes sharing a cache take a lock per PUB:
    one submits, the others wait and read its result from the cache. Setting ``repeat`` to
    ``j > 0`` measures the same PUBs again as a separate measurement: their own cache keys,
    ledger lines and jobs (a study of drift between jobs).
    """

    def __init__(self, connection: Connection, *, cache: ResultCache | None = None,
                 ledger: Ledger | None = None, plan_only: bool = False,
                 on_record: Callable[[PubRecord], None] | None = None,
                 on_wait: Callable[[str, str, float], None] | None = None,
                 seed: int | None = None, max_executions: int = MAX_EXECUTIONS):
        self.connection = connection
        self.seed = seed  # local testing mode: the simulator's seed (a rehearsal repeats)
        self.on_record = on_record  # called once per PUB, after its result is in
        self.on_wait = on_wait  # called while a job runs: (its circuits, job state, seconds)
        self.max_executions = int(max_executions)  # executions per job
        self.cache = cache
        self.ledger = ledger
        self.plan_only = plan_only
        self.repeat = 0
        self.records: list[PubRecord] = []
        self.gathering: list[Part] | None = None  # run_together's first pass collects here
        self._batch = None
        self._held: dict[str, _Held] = {}
        self._answered: dict[str, tuple[Any, PubRecord]] | None = None  # this pass's answers
        if not plan_only:
            for store in (cache, ledger):
                if store is not None:
                    store.check_writable()

    # ------------------------------------------------------------------ passes
    def run_together(self, forward: Callable[[], T]) -> T:
        """``forward()`` (a model's pass on this layer's primitives) with all its PUBs in one
        job per primitive.

        The pass first runs on placeholders only to collect its PUBs; those neither held nor
        cached are submitted together (split where they exceed one job), and the pass runs
        again on their results. A PUB asked for again in the same pass (a mitigating wrapper
        reading the counts the raw pass read) gets the same result and record: it is measured
        and counted once. A pass whose later circuits depended on earlier results would
        submit those circuits as it goes; QMoE models feed every circuit the input alone."""
        self._answered = {}
        try:
            if self.plan_only:
                return forward()
            self.gathering = []
            try:
                forward()
                gathered = self.gathering
            finally:
                self.gathering = None
            self.prefetch(gathered)
            return forward()
        finally:
            self._answered = None

    def answer(self, part: Part, record: Callable[[], PubRecord],
               placeholder: Callable[[], Any]) -> tuple[Any, PubRecord, bool]:
        """``part``'s result and its record (made by ``record()``, filled in by
        :meth:`result`), and whether it is new: inside :meth:`run_together` a part already
        answered in the pass returns that answer, without a new record."""
        if self._answered is not None and part.key in self._answered:
            return (*self._answered[part.key], False)
        made = record()
        result = self.result(part, made, placeholder)
        if self._answered is not None:
            self._answered[part.key] = (result, made)
        return result, made, True

    def prefetch(self, parts: Sequence[Part]) -> None:
        """Obtain the results of ``parts`` ahead of the calls that ask for them: those the
        cache holds are left there, the rest are fetched from jobs the ledger knows or
        submitted together, in as few jobs as the execution limit allows."""
        if self.plan_only:
            return
        wanted: dict[str, Part] = {}
        for part in parts:
            if part.key not in self._held and self.stored(part.key) is None:
                wanted.setdefault(part.key, part)
        if wanted:
            with self.locks(sorted(wanted)):
                self._obtain([p for p in wanted.values() if self.stored(p.key) is None])

    def result(self, part: Part, record: PubRecord, placeholder: Callable[[], Any]):
        """``part``'s result (held, cached, from a recorded job or a new one), its provenance
        written into ``record``; ``placeholder()`` when the layer only plans or gathers."""
        if self.gathering is not None:
            self.gathering.append(part)
            return placeholder()
        result = self._taken(part.key, record)
        if result is None:
            result = self._cached(part.key, record)
        if result is None and self.plan_only:
            record.source = "planned"
            result = placeholder()
        elif result is None:
            with self.locks([part.key]):  # another process may be running this very PUB
                result = self._cached(part.key, record)
                if result is None:
                    self._obtain([part])
                    result = self._taken(part.key, record)
        if self.on_record is not None:
            self.on_record(record)
        return result

    def spans(self, rows: int, executions_per_row: int) -> list[tuple[int, int]]:
        """Row slices of a PUB of ``rows`` bindings that each fit in one job."""
        most = max(1, self.max_executions // max(1, executions_per_row))
        return [(0, rows)] if rows <= most else \
            [(i, min(i + most, rows)) for i in range(0, rows, most)]

    def label(self, name: str, span: tuple[int, int], whole: bool) -> str:
        again = f" (repeat {self.repeat})" if self.repeat else ""
        return (name if whole else f"{name}[{span[0]}:{span[1]}]") + again

    def record(self, part: Part, *, shots: int, primitive: str = "sampler",
               variants: Sequence[float] = (1.0,), calibration_shots: int = 0) -> PubRecord:
        """A new record of ``part``: its circuit's facts and its estimated cost, bindings x
        shots x (duration x variant + repetition delay) summed over the circuit variants (the
        noise factors of gate folding stretch a circuit that many times), plus
        ``calibration_shots`` of a measurement-only circuit (TREX's calibration)."""
        compiled, isa = part.compiled, part.compiled.isa
        backend = self.connection.backend
        try:
            duration = float(isa.estimate_duration(backend.target, unit="s"))
        except Exception:  # targets without gate durations (ideal simulators)
            duration = None
        rep_delay = getattr(backend, "default_rep_delay", None) or DEFAULT_REP_DELAY
        bindings = part.bindings
        record = PubRecord(
            circuit=part.label, key=part.key, source="", job_id=None, bindings=bindings,
            repeat=self.repeat, primitive=primitive, variants=len(variants),
            shots=shots, layout=compiled.initial_layout, physical_qubits=compiled.used_qubits,
            layout_method=compiled.layout_method, measured=list(compiled.measured),
            depth=isa.depth(),
            two_qubit_gates=sum(1 for inst in isa.data
                                if inst.operation.num_qubits == 2 and inst.name != "barrier"),
            duration_s=duration,
            shot_seconds=None if duration is None else float(sum(
                bindings * shots * (duration * v + rep_delay) for v in variants)
                + calibration_shots * rep_delay))
        self.records.append(record)
        return record

    def stats(self) -> dict[str, int]:
        sources = [r.source for r in self.records]
        jobs = {r.job_id for r in self.records if r.source == "submitted"}
        return {"pubs": len(sources), "jobs_submitted": len(jobs),
                "pubs_submitted": sources.count("submitted"),
                "jobs_fetched": len({r.job_id for r in self.records if r.source == "fetched"}),
                "cache_hits": sources.count("cache")}

    def batch(self):
        """The batch every job of this layer goes in (opened on the first submission)."""
        if self._batch is None:
            self._batch = self.connection.open_batch()
        return self._batch

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None

    # ------------------------------------------------------------------ stores
    def stored(self, key: str):
        return self.cache.get(key) if self.cache is not None else None

    def _taken(self, key: str, record: PubRecord):
        """The result :meth:`_obtain` holds for ``key`` (removed), its provenance written into
        ``record``; ``None`` when none is held."""
        held = self._held.pop(key, None)
        if held is None:
            return None
        record.source, record.job_id, record.job_pubs = held.source, held.job_id, held.job_pubs
        record.qpu_seconds, record.ran_at = held.facts["qpu_seconds"], held.facts["ran_at"]
        return held.result

    def _cached(self, key: str, record: PubRecord):
        result = self.stored(key)
        if result is not None:
            record.source = "cache"
            meta = self.cache.meta(key) or {}
            record.job_id, record.qpu_seconds = meta.get("job_id"), meta.get("qpu_seconds")
            record.ran_at = meta.get("ran_at")
        return result

    @contextmanager
    def locks(self, keys: Sequence[str]) -> Iterator[None]:
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
    def _obtain(self, parts: Sequence[Part]) -> None:
        """Results of ``parts`` into ``self._held``: from the jobs the ledger recorded for
        them where those can still be fetched, else from new jobs (as few as the limit
        allows, one primitive per job)."""
        fresh: dict[int, list[Part]] = {}
        resumed: dict[str, tuple[Any, list[tuple[LedgerEntry, Part]]]] = {}
        for part in parts:
            entry = self.ledger.find(part.key, self.connection.name) \
                if self.ledger is not None else None
            job, entry = self._resume(entry) if entry is not None else (None, None)
            if job is None:
                fresh.setdefault(id(part.primitive), []).append(part)
            else:
                resumed.setdefault(entry.job_id, (job, []))[1].append((entry, part))
        for job, pairs in resumed.values():
            self._finish(job, pairs, "fetched")
        for group in fresh.values():
            for chosen in pack([p.executions for p in group], self.max_executions):
                chosen = [group[i] for i in chosen]
                job, entries = self._submit_recorded(chosen)
                self._finish(job, list(zip(entries, chosen)), "submitted")

    def _finish(self, job, pairs: list[tuple[LedgerEntry, Part]], source: str) -> None:
        if self.on_wait is not None:
            what = "+".join(dict.fromkeys(p.label for _, p in pairs))
            wait(job, lambda state, seconds: self.on_wait(what, state, seconds))
        done, facts = collect(job, [entry for entry, _ in pairs], ledger=self.ledger,
                              cache=self.cache)
        for result, entry in done:
            self._held[entry.key] = _Held(result, source, entry.job_id, len(pairs), facts)

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

    def _submit_recorded(self, parts: Sequence[Part]) -> tuple[Any, list[LedgerEntry]]:
        """Submit one job carrying ``parts`` (all of one primitive), recorded in the ledger
        (one line per PUB, with a tag unique to the job, so a crash before its id is written
        can still find it) before it leaves, and again with its id."""
        conn = self.connection
        primitive = parts[0].primitive
        prepare = getattr(primitive, "_prepare", None)  # jobs the submission needs first
        if prepare is not None:  # (noise learning), each recorded and cached on its own
            prepare([p.payload for p in parts])
        tag = f"qmoe-{uuid.uuid4().hex}"
        entries = [LedgerEntry(job_id="", backend=conn.name, key=part.key, status="submitting",
                               submitted=now(), updated=now(), local=conn.local,
                               circuit=part.label, bindings=part.bindings,
                               shots=primitive.default_shots, tag=tag, pid=os.getpid(),
                               host=socket.gethostname(), index=i)
                   for i, part in enumerate(parts)]
        for entry in entries:
            if self.ledger is not None:
                self.ledger.record(entry)
        job = primitive._submit([p.payload for p in parts], tag)
        conn.remember(job)
        entries = [replace(e, job_id=job.job_id(), status="submitted", updated=now())
                   for e in entries]
        for entry in entries:  # before waiting: an interrupted run fetches it by id
            if self.ledger is not None:
                self.ledger.record(entry)
        return job, entries

    def side_job(self, key: str, label: str, submit: Callable[[str], Any],
                 decode: Callable[[Any], Any], *, kind: str) -> tuple[Any, str, str | None,
                                                                  dict[str, Any]]:
        """The result of a job beside the PUBs (a noise-learning job): from the cache, from the
        job the ledger recorded for ``key``, or from ``submit(tag)``, recorded in the ledger
        (``kind``) before it is waited on. ``decode(job.result())`` is what is cached and
        returned, with its source, job id and the service's facts (QPU seconds, start)."""
        held = self._side_cached(key)
        if held is not None:
            return held
        with self.locks([key]):  # another process may be learning the very same layers
            held = self._side_cached(key)
            if held is not None:
                return held
            conn = self.connection
            entry = self.ledger.find(key, conn.name) if self.ledger is not None else None
            job, entry = self._resume(entry) if entry is not None else (None, None)
            source = "fetched"
            if job is None:
                tag = f"qmoe-{uuid.uuid4().hex}"
                entry = LedgerEntry(job_id="", backend=conn.name, key=key, status="submitting",
                                    submitted=now(), updated=now(), local=conn.local,
                                    circuit=label, tag=tag, pid=os.getpid(),
                                    host=socket.gethostname(), kind=kind)
                if self.ledger is not None:
                    self.ledger.record(entry)
                job = submit(tag)
                conn.remember(job)
                entry = replace(entry, job_id=job.job_id(), status="submitted", updated=now())
                if self.ledger is not None:
                    self.ledger.record(entry)
                source = "submitted"
            if self.on_wait is not None:
                wait(job, lambda state, seconds: self.on_wait(label, state, seconds))
            try:
                payload = decode(job.result())
            except Exception as exc:  # the runtime raises several unrelated types here
                if self.ledger is not None:
                    self.ledger.update(entry, "failed",
                                       scrub(f"{type(exc).__name__}: {exc}")[:500])
                raise JobError(f"{label} job {entry.job_id} on {conn.name} failed: "
                               f"{one_line(exc)}") from exc
            facts = {"qpu_seconds": _usage(job), "ran_at": _running_since(job)}
            if self.cache is not None:
                try:
                    self.cache.put(key, payload, {"job_id": entry.job_id, "backend": conn.name,
                                                  "kind": kind, **facts, "stored": now()})
                except StorageError as exc:
                    logger.warning("the %s of job %s was not cached (%s)", label,
                                   entry.job_id, exc)
            if self.ledger is not None:
                self.ledger.update(entry, "done")
            return payload, source, entry.job_id, facts

    def _side_cached(self, key: str):
        payload = self.stored(key)
        if payload is None:
            return None
        meta = self.cache.meta(key) or {}
        return payload, "cache", meta.get("job_id"), {"qpu_seconds": meta.get("qpu_seconds"),
                                                      "ran_at": meta.get("ran_at")}

    def runtime_extras(self) -> dict[str, Any]:
        """Options every submission adds: the simulator's seed in local testing mode."""
        if self.connection.local and self.seed is not None:
            return {"simulator": {"seed_simulator": int(self.seed)}}
        return {}


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
