"""A run's measurements on disk: the ISA circuits that ran (QPY) and, for each PUB, its
bindings and outcome counts (NumPy ``.npz``), so a later analysis evaluates models on the very
circuits, qubits and parameter values the backend ran, without touching the backend again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qiskit import QuantumCircuit, qpy

from ..errors import DataError

__all__ = ["CIRCUITS_FILE", "COUNTS_FILE", "MeasuredPub", "measurement_files",
           "write_measurements", "read_measurements"]

CIRCUITS_FILE = "circuits.qpy"
COUNTS_FILE = "counts.npz"


@dataclass(frozen=True)
class MeasuredPub:
    """One PUB as it ran: the ISA circuit, its bindings ``(rows, len(isa.parameters))`` and
    the outcome counts ``(rows, 2**clbits)`` of its (single) classical register."""

    isa: QuantumCircuit
    values: np.ndarray
    counts: np.ndarray

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
            pubs = [MeasuredPub(isa, arrays[f"values_{i}"], arrays[f"counts_{i}"])
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
