"""Files that hold results: checks that a location can be written before work starts, atomic
writes, and plain words for what went wrong with a file."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from .errors import StorageError

__all__ = ["atomic_write", "check_writable_dir", "file_sha256", "os_reason"]


def os_reason(exc: OSError) -> str:
    """What went wrong with a file, without Python's repr noise."""
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, NotADirectoryError):
        return "a part of its path is a file"
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    return exc.strerror or str(exc)


def check_writable_dir(path: str | Path, what: str) -> Path:
    """``path`` if it is, or can be created as, a directory this process can write in; else
    :class:`StorageError` naming the problem. Creates nothing that stays."""
    path = Path(path)
    if not str(path).strip():
        raise StorageError(f"the {what} path is empty; give a folder")
    for ancestor in (path, *path.parents):
        if not os.path.lexists(ancestor):
            continue
        if not ancestor.is_dir():
            if ancestor == path:
                raise StorageError(f"the {what} {path} is a file, not a folder")
            raise StorageError(f"the {what} {path} cannot be created: {ancestor} is a file")
        if ancestor == path:
            _probe_write(path, what)
        elif not os.access(ancestor, os.W_OK | os.X_OK):
            raise StorageError(f"the {what} {path} cannot be created: {ancestor} is not writable")
        return path
    return path


def _probe_write(folder: Path, what: str) -> None:
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-check-")
    except OSError as exc:
        raise StorageError(f"cannot write in the {what} {folder}: {os_reason(exc)}") from None
    os.close(fd)
    os.unlink(name)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
