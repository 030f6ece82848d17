"""What ``qmoe jobs list|status|fetch`` does with the ledger: show jobs, ask IBM Quantum for
their state, and bring finished results into the cache (so the next run answers from it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError, JobError
from .ledger import Ledger, LedgerEntry, now

if TYPE_CHECKING:
    from .cache import ResultCache

# ``list`` reads the ledger only: the runtime (about 1.5 s to import) is imported by the
# functions that reach IBM Quantum.

__all__ = ["job_table", "select", "refresh_status", "fetch_results", "per_job"]

_FINAL = {"DONE": "done", "ERROR": "failed", "CANCELLED": "cancelled"}


def job_table(entries: Sequence[LedgerEntry]) -> str:
    if not entries:
        return "no jobs recorded"
    lines = [f"{'job id':<38} {'pub':>3} {'backend':<16} {'status':<10} {'submitted':<26} "
             f"{'circuit':<14} {'bindings':>8} {'shots':>6}"]
    for e in entries:
        lines.append(f"{e.job_id or e.tag:<38} {e.index:>3} {e.backend:<16} {e.status:<10} "
                     f"{e.submitted:<26} {e.circuit:<14} {e.bindings:>8} {e.shots:>6}")
    return "\n".join(lines)


def per_job(rows: Sequence[tuple[LedgerEntry, str]]) -> list[str]:
    """One line per job (a job holds one ledger entry per PUB): its id, backend, PUB count and
    state; where its PUBs' states differ, each state with its count."""
    jobs: dict[str, list[tuple[LedgerEntry, str]]] = {}
    for entry, state in rows:
        jobs.setdefault(entry.job_id or entry.tag, []).append((entry, state))
    lines = []
    for name, pubs in jobs.items():
        states: dict[str, int] = {}
        for _, state in pubs:
            states[state] = states.get(state, 0) + 1
        said = (next(iter(states)) if len(states) == 1 else
                "; ".join(f"{n} PUB{'s' * (n > 1)} {state}" for state, n in states.items()))
        n = len(pubs)
        lines.append(f"{name}  {pubs[0][0].backend:<16} {n} PUB{'s' * (n > 1)}  {said}")
    return lines


def select(ledger: Ledger, job_ids: Sequence[str]) -> list[LedgerEntry]:
    """The ledger entries named by ``job_ids`` (all of them when none is named)."""
    entries = ledger.entries()
    if not job_ids:
        return entries
    known = {name for e in entries for name in (e.job_id, e.tag) if name}
    missing = [j for j in job_ids if j not in known]
    if missing:
        raise ConfigError(f"job(s) {missing} are not in the ledger {ledger.path} "
                          f"({len(entries)} PUBs recorded; see `qmoe jobs list`)")
    wanted = set(job_ids)  # every PUB of each named job
    return [e for e in entries if e.job_id in wanted or e.tag in wanted]


def refresh_status(ledger: Ledger, entries: Sequence[LedgerEntry],
                   service: Callable) -> list[tuple[LedgerEntry, str]]:
    """Each entry with its state now; IBM Quantum jobs are asked (``service()`` gives the
    ``QiskitRuntimeService``, once per job however many PUBs it holds), and final states are
    written to the ledger. A job the service cannot return is reported as
    ``unavailable: <reason>`` and left as recorded."""
    rows, runtime, asked = [], None, {}
    for entry in entries:
        if entry.local:
            rows.append((entry, entry.status if entry.status not in ("submitting", "submitted")
                         else "local testing job: it lived only in the process that ran it"))
            continue
        if not entry.job_id:
            rows.append((entry, "submitting: no job id was recorded; running the same command "
                                "again finds the job by its tag"))
            continue
        if runtime is None:
            runtime = service()
        if entry.job_id not in asked:
            try:
                asked[entry.job_id] = _job_status(runtime, entry.job_id)
            except JobError as exc:
                asked[entry.job_id] = exc
        status = asked[entry.job_id]
        if isinstance(status, JobError):
            rows.append((entry, f"unavailable: {status}"))
            continue
        state = getattr(status, "name", str(status))
        if entry.status == "submitted" and state in _FINAL and _FINAL[state] != "done":
            entry = ledger.update(entry, _FINAL[state])
        rows.append((entry, state))
    return rows


def fetch_results(ledger: Ledger, cache: ResultCache, entries: Sequence[LedgerEntry],
                  service: Callable) -> list[tuple[LedgerEntry, str]]:
    """Store the results of finished IBM Quantum jobs in the cache (waiting for unfinished
    ones); already cached, failed, local and unavailable jobs are reported and skipped."""
    from .layer import collect
    from .learning import LEARNER
    from .service import remote_job

    rows, runtime = [], None
    for entry in entries:
        if cache.get(entry.key) is not None:
            rows.append((entry, "already cached"))
            continue
        if entry.local or entry.status not in ("submitted", "done"):
            reason = 'local testing job' if entry.local else entry.status
            rows.append((entry, f"skipped ({reason})"))
            continue
        if runtime is None:
            runtime = service()
        try:
            if entry.kind == LEARNER:
                entry = _fetch_learning(remote_job(runtime, entry.job_id), entry, ledger, cache)
            else:
                [(_, entry)], _ = collect(remote_job(runtime, entry.job_id), [entry],
                                       ledger=ledger, cache=cache)
        except JobError as exc:
            rows.append((entry, f"unavailable: {exc}"))
            continue
        rows.append((entry, "fetched into the cache"))
    return rows


def _fetch_learning(job, entry: LedgerEntry, ledger: Ledger, cache: ResultCache) -> LedgerEntry:
    """A noise-learning job's maps into the cache, as the run that submitted it keeps them."""
    from .learning import LEARNER, learned_payload
    from .service import one_line

    try:
        payload = learned_payload(job.result())
    except Exception as exc:  # the runtime raises several unrelated types here
        raise JobError(f"noise-learning job {entry.job_id} failed: {one_line(exc)}") from None
    cache.put(entry.key, payload, {"job_id": entry.job_id, "backend": entry.backend,
                                   "kind": LEARNER, "stored": now()})
    return ledger.update(entry, "done") if entry.status != "done" else entry


def _job_status(runtime, job_id: str):
    """The job's state (a string, or a ``JobStatus`` locally); one-line :class:`JobError`
    when IBM Quantum cannot say."""
    from .service import one_line, remote_job

    job = remote_job(runtime, job_id)
    try:
        return job.status()
    except Exception as exc:  # the runtime raises several unrelated types here
        raise JobError(f"the state of job {job_id} cannot be read: {one_line(exc)}") from None
