"""The project's exceptions: one small hierarchy.

Each also subclasses the matching built-in, so ``except ValueError`` keeps working for callers
that do not know this package.
"""

from __future__ import annotations


class QMoEError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(QMoEError, ValueError):
    """An unknown name, an out-of-range number or an inconsistent combination of options."""


class DataError(QMoEError, ValueError):
    """Input data that cannot be used: NaN or infinite features, wrong widths, missing files."""


class UnsupportedCircuitError(QMoEError, ValueError):
    """A circuit the exact simulator cannot run (an unsupported gate, a mid-circuit measurement)."""


class ModelFileError(QMoEError, ValueError):
    """A saved model that is missing, corrupt, or written by an incompatible version."""


def choices(values) -> str:
    """Format valid choices for an error message: ``'a', 'b', 'c'``."""
    return ", ".join(repr(v) for v in values)


def closest(value, valid, *, what: str = "valid choices", many: int = 10,
            fallback=()) -> str:
    """The valid choices for an error message; when there are more than ``many``, only the
    closest few to ``value`` and how many there are, so the message stays one short line:
    ``closest: 'fake_manila', 'fake_lima' (69 offline fake backends)``. Names are matched
    without the prefix they all share (``fake_``); with nothing close, ``fallback`` (or the
    first three) is offered instead."""
    import difflib
    import os

    valid = list(valid)
    if len(valid) <= many:
        return f"{what}: {choices(valid)}"
    prefix = os.path.commonprefix(valid)
    text = str(value).strip().lower()
    text = text[len(prefix):] if text.startswith(prefix) else text
    stems = {name[len(prefix):]: name for name in valid}
    near = [stems[m] for m in difflib.get_close_matches(text, list(stems), n=3, cutoff=0.6)]
    if near:
        return f"closest: {choices(near)} ({len(valid)} {what})"
    offered = [name for name in fallback if name in valid] or valid[:3]
    return f"for example {choices(offered)} ({len(valid)} {what})"


def check_seed(seed, name: str = "seed") -> None:
    """A seed is an integer >= 0 (NumPy, scikit-learn and the transpiler refuse others deep
    inside)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {seed!r}")


MAX_SEEDS = 100  # seeds of one study: each trains every model again


def check_seed_count(seeds, what: str) -> None:
    """A study's seeds: at least 2 (a standard deviation) and at most :data:`MAX_SEEDS`."""
    count = len(seeds)
    if not 2 <= count <= MAX_SEEDS:
        raise ConfigError(f"{what} needs from 2 to {MAX_SEEDS} seeds (at least 2 for a "
                          f"standard deviation; each trains every model again), got {count:,}")


def seed_range(count: int, what: str) -> tuple[int, ...]:
    """Seeds ``0 .. count - 1`` for ``--seeds count``, checked before they are made."""
    check_seed_count(range(count), what)
    return tuple(range(count))


class AccountError(QMoEError, PermissionError):
    """No IBM Quantum account, or one the service rejected. Never carries the token."""


class JobError(QMoEError, RuntimeError):
    """A submitted job that failed, was cancelled, or whose result cannot be read."""


class StorageError(QMoEError, OSError):
    """A run folder, cache or ledger location that cannot be read or written as needed."""


class ServiceUnreachable(QMoEError, ConnectionError):
    """IBM Quantum cannot be reached (no network, a proxy, the service down)."""


class ClusterError(QMoEError, ConnectionError):
    """A Ray cluster that cannot be reached, or whose Python or packages differ from this
    process's."""


class CellError(QMoEError, RuntimeError):
    """A cell of an experiment failed; the finished cells are kept for a re-run."""


def install_hint(extra: str) -> str:
    """The command that installs one of the project's extras *here*, for an error message.

    The package is installed from its clone (it is not on PyPI), so the hint names this
    interpreter's pip and the clone's folder, e.g. ``/x/.venv/bin/python -m pip install -e
    '/x[ray]'`` plus ``bash scripts/setup.sh --test``, which installs every extra. Installed
    some other way (a wheel), it names the extra to reinstall with.
    """
    import shlex
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "scripts" / "setup.sh").is_file():
        return (f"{shlex.quote(sys.executable)} -m pip install -e "
                f"{shlex.quote(f'{root}[{extra}]')} (or, in {root}: bash scripts/setup.sh "
                f"--test, which installs every extra)")
    return f"reinstall qmoe-qiskit with its '{extra}' extra (qmoe-qiskit[{extra}])"
