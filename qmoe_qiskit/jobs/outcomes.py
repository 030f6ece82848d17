"""A run's measurements on disk: the ISA circuits that ran (QPY) and, for each PUB, its
bindings and outcome counts (NumPy ``.npz``), so a later analysis evaluates models on the very
circuits, qubits and parameter values the backend ran, without touching the backend again. A
run that measured its circuits several times (repeats, each in jobs of its own) keeps every
repeat's PUBs, each with its repeat index."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qiskit import QuantumCircuit, qpy

from ..errors import DataError

__all__ = ["CIRCUITS_FILE", "COUNTS_FILE", "MeasuredPub", "measurement_files",
           "write_measurements", "read_measurements", "by_repeat", "pooled"]

CIRCUITS_FILE = "circuits.qpy"
COUNTS_FILE = "counts.npz"


@dataclass(frozen=True)
class MeasuredPub:
    """One PUB as it ran: the ISA circuit, its bindings ``(rows, len(isa.parameters))``, the
    outcome counts ``(rows, 2**clbits)`` of its (single) classical register, and which repeat
    of the run measured it."""

    isa: QuantumCircuit
    values: np.ndarray
    counts: np.ndarray
    repeat: int = 0  # which measurement of the run's circuits (0 unless the run repeated)

    @property
    def shots(self) -> int:
        return int(self.counts[0].sum())


def measurement_files(pubs: Sequence[MeasuredPub]) -> dict[str, Callable[[Path], None]]:
    """File name -> writer, for a run folder's ``Outcome.files``."""

    def circuits(path: Path) -> None:
        with open(path, "wb") as handle:
            qpy.dump([pub.isa for pub in pubs], handle)

    def counts(path: Path) -> None:
        arrays = {}
        for i, pub in enumerate(pubs):
            arrays[f"values_{i}"] = pub.values
            arrays[f"counts_{i}"] = pub.counts
            if pub.repeat:
                arrays[f"repeat_{i}"] = np.array(pub.repeat)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return {CIRCUITS_FILE: circuits, COUNTS_FILE: counts}


def write_measurements(folder: str | Path, pubs: Sequence[MeasuredPub]) -> None:
    """Write ``circuits.qpy`` and ``counts.npz`` into ``folder``."""
    for name, writer in measurement_files(pubs).items():
        writer(Path(folder) / name)


def read_measurements(folder: str | Path) -> list[MeasuredPub]:
    """The PUBs written by :func:`write_measurements`; :class:`DataError` if they are missing
    or do not fit together."""
    folder = Path(folder)
    missing = [name for name in (CIRCUITS_FILE, COUNTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder} has no {missing[0]}: it was written by a qmoe run that kept "
                        f"no measurements (a dry run, or an older version); run it again")
    try:
        with open(folder / CIRCUITS_FILE, "rb") as handle:
            circuits = qpy.load(handle)
        with np.load(folder / COUNTS_FILE) as arrays:
            pubs = [MeasuredPub(isa, arrays[f"values_{i}"], arrays[f"counts_{i}"],
                                int(arrays[f"repeat_{i}"]) if f"repeat_{i}" in arrays else 0)
                    for i, isa in enumerate(circuits)]
    except (OSError, ValueError, KeyError, EOFError, qpy.QpyError) as exc:
        raise DataError(f"the measurements in {folder} cannot be read "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    for i, pub in enumerate(pubs):
        rows = len(pub.values)
        if pub.counts.ndim != 2 or len(pub.counts) != rows or \
                pub.counts.shape[1] != 2 ** pub.isa.num_clbits:
            raise DataError(f"the measurements in {folder} do not fit together (PUB {i}: "
                            f"{rows} bindings, counts of shape {pub.counts.shape})")
    return pubs


def by_repeat(pubs: Sequence[MeasuredPub]) -> list[list[MeasuredPub]]:
    """The PUBs of each repeat, in repeat order; :class:`DataError` unless every repeat
    measured the same circuits (same ISA, same qubits, same bindings) as the first."""
    repeats: dict[int, list[MeasuredPub]] = {}
    for pub in pubs:
        repeats.setdefault(pub.repeat, []).append(pub)
    groups = [repeats[r] for r in sorted(repeats)]
    first = groups[0]
    for r, group in zip(sorted(repeats)[1:], groups[1:]):
        problem = None
        if len(group) != len(first):
            problem = f"{len(group)} circuits against {len(first)}"
        else:
            for a, b in zip(first, group):
                if a.isa != b.isa:
                    problem = f"circuit {b.isa.name!r} was compiled differently (layout " \
                              f"or gates)"
                elif a.values.shape != b.values.shape or \
                        not np.allclose(a.values, b.values, atol=1e-9):
                    problem = f"circuit {b.isa.name!r} has other bindings"
                elif a.counts.shape != b.counts.shape:
                    problem = f"circuit {b.isa.name!r} has counts of another shape"
                if problem:
                    break
        if problem:
            raise DataError(f"the run's repeats measured different circuits (repeat {r}: "
                            f"{problem}); repeats must run the same circuits, for instance "
                            f"with a fixed --layout")
    return groups


def pooled(pubs: Sequence[MeasuredPub]) -> list[MeasuredPub]:
    """One PUB per circuit with the counts of every repeat added up (the PUBs themselves when
    the run measured once)."""
    groups = by_repeat(pubs)
    if len(groups) == 1:
        return list(groups[0])
    return [MeasuredPub(first.isa, first.values, sum(g[i].counts for g in groups))
            for i, first in enumerate(groups[0])]
