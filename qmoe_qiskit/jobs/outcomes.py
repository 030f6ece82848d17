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
    circuits_path, counts_path = folder / CIRCUITS_FILE, folder / COUNTS_FILE
    try:
        with open(circuits_path, "rb") as handle:
            circuits = qpy.load(handle)
        if not isinstance(circuits, list) or not all(isinstance(c, QuantumCircuit)
                                                     for c in circuits):
            raise ValueError("it holds no list of circuits")
    except Exception as exc:  # a damaged QPY file fails in many ways (struct, QPY, version)
        raise DataError(_unreadable(circuits_path, exc)) from None
    try:
        with np.load(counts_path, allow_pickle=False) as arrays:
            pubs = [MeasuredPub(isa, arrays[f"values_{i}"], arrays[f"counts_{i}"],
                                int(arrays[f"repeat_{i}"]) if f"repeat_{i}" in arrays else 0)
                    for i, isa in enumerate(circuits)]
    except Exception as exc:  # truncated or foreign: zipfile, pickle, key and value errors
        raise DataError(_unreadable(counts_path, exc)) from None
    for i, pub in enumerate(pubs):
        problem = _counts_problem(pub)
        if problem:
            raise DataError(f"{counts_path} is damaged (PUB {i}: {problem}); run the model "
                            f"again, or restore the file")
    return pubs


def _unreadable(path: Path, exc: Exception) -> str:
    text = " ".join(str(exc).split())[:200]
    name = type(exc).__name__
    if name == "error":  # struct.error, zlib.error: say whose
        name = f"{type(exc).__module__}.error"
    return (f"{path} cannot be read ({name}: {text}); it is damaged or not what "
            f"qmoe run wrote: run the model again, or restore the file")


def _counts_problem(pub: MeasuredPub) -> str | None:
    """What is wrong with a PUB's bindings and counts, or ``None``: counts must be whole,
    non-negative, finite numbers, every binding measured with the same shots (at least one),
    and the shapes must fit the circuit."""
    values, counts = pub.values, pub.counts
    rows = len(values) if values.ndim else 0
    if values.ndim != 2 or values.shape[1] != len(pub.isa.parameters):
        return (f"bindings of shape {values.shape} for a circuit of "
                f"{len(pub.isa.parameters)} parameters")
    if counts.ndim != 2 or len(counts) != rows or counts.shape[1] != 2 ** pub.isa.num_clbits:
        return f"{rows} bindings, counts of shape {counts.shape}"
    if values.dtype.kind not in "iuf" or not np.isfinite(values).all():
        return "a binding is not a finite number"
    if counts.dtype.kind not in "iuf" or not np.isfinite(counts).all():
        return "a count is not a finite number"
    if (counts < 0).any():
        return "a count is negative"
    if (counts != np.round(counts)).any():
        return "a count is not a whole number"
    shots = counts.sum(axis=1)
    if rows and shots.min() < 1:
        return f"binding {int(np.argmin(shots))} has no counts at all"
    if rows and (shots != shots[0]).any():
        return (f"bindings were measured with different shots "
                f"({int(shots.min())} to {int(shots.max())})")
    return None


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
