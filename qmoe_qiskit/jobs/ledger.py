"""The job ledger: every submitted job, recorded before anyone waits on it.

An append-only JSON-lines file: each line is one state of one job (``submitted`` first, then
``done``, ``failed``, ``cancelled`` or ``lost``); the last line of a job id is its state. A run
that was interrupted (Ctrl-C, a crash, a closed laptop) finds its PUB's job here and fetches it
instead of submitting it again.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["Ledger", "LedgerEntry", "STATUSES"]

logger = logging.getLogger(__name__)

STATUSES = ("submitted", "done", "failed", "cancelled", "lost")
RESUMABLE = ("submitted", "done")


@dataclass(frozen=True)
class LedgerEntry:
    job_id: str
    backend: str
    key: str  # the PUB's cache key
    status: str
    submitted: str  # ISO time, UTC
    updated: str
    local: bool  # a local-testing job (fetchable only by the process that ran it)
    circuit: str = ""
    bindings: int = 0
    shots: int = 0
    message: str = ""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Ledger:
    """The ledger file at ``path`` (``<cache>/ledger.jsonl`` by default)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def record(self, entry: LedgerEntry) -> LedgerEntry:
        """Append ``entry`` durably (flushed and synced before returning)."""
        if entry.status not in STATUSES:
            raise ValueError(f"unknown job status {entry.status!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(entry), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def update(self, entry: LedgerEntry, status: str, message: str = "") -> LedgerEntry:
        return self.record(replace(entry, status=status, updated=now(), message=message))

    def entries(self) -> list[LedgerEntry]:
        """The latest state of every job, in order of first submission."""
        latest: dict[str, LedgerEntry] = {}
        if not self.path.exists():
            return []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = LedgerEntry(**json.loads(line))
            except (ValueError, TypeError) as exc:  # a line cut short by a crash
                logger.warning("skipping unreadable ledger line %d of %s (%s)",
                               number, self.path, exc)
                continue
            latest[entry.job_id] = entry
        return list(latest.values())

    def find(self, key: str, backend: str) -> LedgerEntry | None:
        """The most recent job for this PUB on this backend that may still hold its result."""
        for entry in reversed(self.entries()):
            if entry.key == key and entry.backend == backend and entry.status in RESUMABLE:
                return entry
        return None

    def get(self, job_id: str) -> LedgerEntry | None:
        return next((e for e in self.entries() if e.job_id == job_id), None)
