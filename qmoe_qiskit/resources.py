"""Memory: what this machine has free, and a check that a planned allocation fits before it is
made (a run that would exhaust memory fails at once, with the numbers, instead of after hours
or with an allocator's crash)."""

from __future__ import annotations

import os

from .errors import ConfigError

__all__ = ["available_memory", "check_memory"]


def available_memory() -> int:
    """Bytes of memory available to a new allocation (physical memory not in use)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # platforms without these names: do not block
        return 1 << 62


def check_memory(nbytes: float, what: str, fix: str, free: int | None = None) -> None:
    """:class:`ConfigError` if ``nbytes`` exceed the memory available now (or ``free``, where
    the caller has read it already)."""
    free = available_memory() if free is None else free
    if nbytes > free:
        raise ConfigError(f"{what} would need about {_size(nbytes)} of memory but "
                          f"{_size(free)} is available; {fix}")


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    return f"{nbytes:.3g} PiB"
