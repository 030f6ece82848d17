"""The job ledger: every job, recorded before it is submitted and again once it has an id.

An append-only JSON-lines file: each line is one state of one PUB's submission (a job that
carries several PUBs has one line per PUB, sharing its tag and id). ``submitting`` is
written (and synced) before the job goes to the service, carrying a unique tag that the job is
submitted with; ``submitted`` follows with the service's job id, then ``done``, ``failed``,
``cancelled`` or ``lost``. The last line of a submission is its state. A run that was
interrupted (Ctrl-C, a crash, a closed laptop), even between the service accepting the job and
the id being written, finds its PUB's job here (by id, or by tag on IBM Quantum) and fetches it
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
from ..files import check_writable_dir, os_reason

__all__ = ["Ledger", "LedgerEntry", "STATUSES", "default_cache_dir"]

logger = logging.getLogger(__name__)

STATUSES = ("submitting", "submitted", "done", "failed", "cancelled", "lost")
RESUMABLE = ("submitting", "submitted", "done")


def default_cache_dir() -> Path:
    """``$QMOE_CACHE_DIR``, else ``~/.cache/qmoe-qiskit``."""
    return Path(os.environ.get("QMOE_CACHE_DIR") or Path.home() / ".cache" / "qmoe-qiskit")


@dataclass(frozen=True)
class LedgerEntry:
    job_id: str  # "" while submitting: the service has not answered yet
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
    tag: str = ""  # the job tag it was submitted with; identifies the submission
    pid: int = 0  # the process that submitted it, on ``host``
    host: str = ""
    index: int = 0  # the PUB's position in its job (a job carries the PUBs of one pass)
    kind: str = "pub"  # "pub", or "noise learner" (a job beside the PUBs: its result is the
    # learned noise of a circuit's layers, cached under ``key``)

    @property
    def identity(self) -> str:
        return f"{self.tag or self.job_id}#{self.index}"

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

    def check_writable(self) -> None:
        """:class:`~qmoe_qiskit.errors.StorageError` unless jobs can be recorded here."""
        check_writable_dir(self.path.parent, "job ledger folder")
        if os.path.lexists(self.path):
            try:
                open(self.path, "ab").close()
            except OSError as exc:
                raise StorageError(f"cannot write the job ledger {self.path}: "
                                   f"{os_reason(exc)}") from None

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
            raise StorageError(f"cannot write the job ledger {self.path}: "
                               f"{os_reason(exc)}") from None
        return entry

    def update(self, entry: LedgerEntry, status: str, message: str = "") -> LedgerEntry:
        return self.record(replace(entry, status=status, updated=now(), message=message))

    def entries(self) -> list[LedgerEntry]:
        """The latest state of every submission, in order of first record."""
        latest: dict[str, LedgerEntry] = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot read the job ledger {self.path}: "
                               f"{os_reason(exc)}") from None
        for number, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                entry = LedgerEntry.from_json(line.decode("utf-8"))
            except ValueError as exc:  # cut short by a crash, or edited by hand
                logger.warning("skipping unreadable ledger line %d of %s (%s)",
                               number, self.path, exc)
                continue
            latest[entry.identity] = entry
        return list(latest.values())

    def find(self, key: str, backend: str) -> LedgerEntry | None:
        """The most recent job for this PUB on this backend that may still hold its result."""
        for entry in reversed(self.entries()):
            if entry.key == key and entry.backend == backend and entry.status in RESUMABLE:
                return entry
        return None

    def get(self, job_id: str) -> LedgerEntry | None:
        return next((e for e in self.entries() if e.job_id == job_id), None)

