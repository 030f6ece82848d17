"""A content-addressed cache of PUB results on disk.

The key of a PUB is a SHA-256 over everything that decides its result: the canonical OpenQASM 3
text of the ISA circuit (QPY bytes of identically built circuits differ, so QPY cannot be the
key), its parameter names and values, the shots, the backend name and calibration time, the
submission options and the library versions. Entries are written atomically and carry a
checksum over their key, metadata and payload; a corrupt, truncated or tampered entry is
reported, removed and recomputed, never returned. An entry that exists but cannot be read
(permissions, a newer format) is reported and left alone: it may hold paid work.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, qasm3
from qiskit_ibm_runtime import RuntimeDecoder, RuntimeEncoder

from ..errors import StorageError
from ..files import atomic_write, check_writable_dir, os_reason
from .ledger import default_cache_dir  # noqa: F401  (re-exported)

__all__ = ["ResultCache", "pub_key", "default_cache_dir", "library_versions"]

logger = logging.getLogger(__name__)

FORMAT = "qmoe-qiskit-result"
FORMAT_VERSION = 2  # 2: the checksum covers key, metadata and payload; 1: the payload only
_LIBRARIES = ("qiskit", "qiskit-aer", "qiskit-ibm-runtime", "qmoe-qiskit")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a result (part of every cache key)."""
    return dict(_versions())


@lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return tuple(versions.items())


def pub_key(circuit: QuantumCircuit, values: np.ndarray, *, shots: int, backend: str,
            calibration: str, options: dict[str, Any], repeat: int = 0) -> str:
    """The cache key of one PUB: ``circuit`` (ISA) bound to each row of ``values``.
    ``repeat`` > 0 is another measurement of the same PUB, in a job of its own (the keys of
    repeat 0 are those of a PUB measured once)."""
    values = np.ascontiguousarray(values, dtype="<f8")
    content = {
        "circuit": qasm3.dumps(circuit),
        "parameters": [p.name for p in circuit.parameters],
        "values_shape": list(values.shape),
        "values_sha256": hashlib.sha256(values.tobytes()).hexdigest(),
        "shots": int(shots),
        "backend": backend,
        "calibration": calibration,
        "options": options,
        "versions": library_versions(),
    }
    if repeat:
        content["repeat"] = int(repeat)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    """PUB results stored under ``root/results/<key[:2]>/<key>.json``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.corrupt: list[str] = []  # keys whose entries were unreadable and removed

    def check_writable(self) -> None:
        """:class:`~qmoe_qiskit.errors.StorageError` unless results can be stored here."""
        check_writable_dir(self.root, "result cache")

    def path(self, key: str) -> Path:
        return self.root / "results" / key[:2] / f"{key}.json"

    def get(self, key: str):
        """The stored result of ``key``, or ``None`` (missing, or corrupt and now removed).
        :class:`~qmoe_qiskit.errors.StorageError` for an entry that cannot be read."""
        entry = self._entry(key)
        if entry is None:
            return None
        try:
            return json.loads(entry["payload"], cls=RuntimeDecoder)
        except Exception as exc:  # the runtime's decoder raises several types
            return self._corrupt(key, f"undecodable payload: {exc}")

    def meta(self, key: str) -> dict[str, Any] | None:
        """What was recorded with the entry (job id, backend, shots, ...), if it is sound."""
        entry = self._entry(key)
        return None if entry is None else entry["meta"]

    def _entry(self, key: str) -> dict[str, Any] | None:
        """The verified entry of ``key``; ``None`` if missing or corrupt (then removed)."""
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cache entry {path} cannot be read ({os_reason(exc)}); it is "
                               f"left as it is: fix its permissions, or remove it to run the "
                               f"PUB again") from None
        try:
            entry = json.loads(raw.decode("utf-8"))
            if not isinstance(entry, dict) or entry.get("format") != FORMAT:
                raise ValueError("not a qmoe-qiskit cache entry")
            version = entry.get("version")
            if version not in (1, FORMAT_VERSION):
                raise StorageError(f"cache entry {path} has format version {version!r}; this "
                                   f"qmoe-qiskit reads versions 1 and {FORMAT_VERSION}: it is "
                                   f"left as it is")
            if entry.get("key") != key or not isinstance(entry.get("payload"), str) \
                    or not isinstance(entry.get("meta"), dict):
                raise ValueError("wrong key, payload or metadata")
            if entry.get("sha256") != _checksum(entry, version):
                raise ValueError("checksum mismatch")
            return entry
        except ValueError as exc:  # truncated, not JSON, tampered with
            return self._corrupt(key, str(exc))

    def _corrupt(self, key: str, reason: str) -> None:
        path = self.path(key)
        logger.warning("cache entry %s is corrupt (%s); removing it and recomputing", path,
                       reason)
        self.corrupt.append(key)
        path.unlink(missing_ok=True)
        return None

    def put(self, key: str, result, meta: dict[str, Any]) -> Path:
        """Store ``result`` (a ``SamplerPubResult``) atomically."""
        entry = {"format": FORMAT, "version": FORMAT_VERSION, "key": key, "meta": meta,
                 "payload": json.dumps(result, cls=RuntimeEncoder)}
        entry["sha256"] = _checksum(entry, FORMAT_VERSION)
        path = self.path(key)
        try:
            atomic_write(path, json.dumps(entry))
        except OSError as exc:
            raise StorageError(f"cannot store a result in the cache {self.root}: "
                               f"{os_reason(exc)}") from None
        return path


def _checksum(entry: dict[str, Any], version: int) -> str:
    """SHA-256 of what an entry of ``version`` protects (version 1: the payload alone)."""
    if version == 1:
        text = entry["payload"]
    else:
        text = json.dumps({"key": entry["key"], "meta": entry["meta"],
                           "payload": entry["payload"]}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
