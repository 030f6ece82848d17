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
from dataclasses import MISSING, asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path

from ..errors import StorageError

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

    @classmethod
    def from_json(cls, line: str) -> "LedgerEntry":
        """An entry from one ledger line; ``ValueError`` if it is not one."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(types))
        missing = sorted(f.name for f in fields(cls) if f.name not in data
                         and f.default is MISSING)
        if unknown or missing:
            raise ValueError(f"unknown fields {unknown}, missing fields {missing}")
        expected = {"str": str, "int": int, "bool": bool}
        for name, value in data.items():
            kind = expected[types[name]]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"field {name!r} is {value!r}, not a {types[name]}")
        if data["status"] not in STATUSES:
            raise ValueError(f"unknown status {data['status']!r}")
        return cls(**data)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Ledger:
    """The ledger file at ``path`` (``<cache>/ledger.jsonl`` by default)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def record(self, entry: LedgerEntry) -> LedgerEntry:
        """Append ``entry`` durably (flushed and synced before returning), on a line of its
        own even if the last line was cut short by a crash."""
        if entry.status not in STATUSES:
            raise ValueError(f"unknown job status {entry.status!r}")
        line = (json.dumps(asdict(entry), sort_keys=True) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as handle:
                if handle.seek(0, os.SEEK_END) > 0:
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        line = b"\n" + line
                handle.write(line)  # one write: appends from several processes do not interleave
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StorageError(f"cannot write the job ledger {self.path}: {_reason(exc)}") from None
        return entry

    def update(self, entry: LedgerEntry, status: str, message: str = "") -> LedgerEntry:
        return self.record(replace(entry, status=status, updated=now(), message=message))

    def entries(self) -> list[LedgerEntry]:
        """The latest state of every job, in order of first submission."""
        latest: dict[str, LedgerEntry] = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot read the job ledger {self.path}: {_reason(exc)}") from None
        for number, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                entry = LedgerEntry.from_json(line.decode("utf-8"))
            except ValueError as exc:  # cut short by a crash, or edited by hand
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


def _reason(exc: OSError) -> str:
    """What went wrong with a file, without Python's repr noise."""
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, NotADirectoryError):
        return "a part of its path is a file"
    return exc.strerror or str(exc)
