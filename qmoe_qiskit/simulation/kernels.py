"""The exact simulator's operations on a batch of states, and how a batch's rows are split.

States are arrays ``(rows, K, 2**n)``: ``rows`` parameter bindings, ``K`` states carried per
row (the state and its adjoint vectors), amplitude index in Qiskit's order (qubit 0 least
significant). Every array operation the simulator makes on a state is here, through the array
backend of :mod:`.arrays` (NumPy by default; :func:`~.arrays.set_array_backend` swaps it in one
place); :func:`run_rows` splits a batch's rows into chunks that
bound memory and, where each part is large enough, over threads (NumPy releases the GIL in its
array loops and BLAS calls).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .arrays import array_backend

__all__ = ["Mono", "IDENTITY", "CHUNK_AMPLITUDES", "apply_mono", "apply_chunk", "fill_cross",
           "chunk_cross", "partial_trace_spec", "row_chunks", "run_rows", "set_threads",
           "threads", "threads_asked"]

IDENTITY = np.eye(2)
# Amplitudes per chunk when a batch is split to bound memory (256 MiB of complex128).
CHUNK_AMPLITUDES = 1 << 24
# A thread is handed at least this many amplitudes of a batch's work: below it, handing work
# to a thread costs more than it saves.
THREAD_AMPLITUDES = 1 << 16


@dataclass(frozen=True)
class Mono:
    """``new[s] = phase[s] * old[perm[s]]`` (either part may be ``None``)."""

    perm: np.ndarray | None
    phase: np.ndarray | None


def apply_mono(state, op: Mono, adjoint: bool = False):
    arrays = array_backend()
    perm = None if op.perm is None else arrays.constant(op.perm)
    if not adjoint:
        out = state if perm is None else state[:, :, perm]
        return out * arrays.constant(op.phase) if op.phase is not None else out
    out = state * arrays.conj(arrays.constant(op.phase)) if op.phase is not None else state
    if perm is not None:
        undone = arrays.empty_like(out)
        undone[:, :, perm] = out
        out = undone
    return out


def apply_chunk(state: np.ndarray, lo: int, width: int, matrix: np.ndarray) -> np.ndarray:
    """Apply per-row ``matrix`` ``(rows, 2**width, 2**width)`` to qubits ``lo .. lo+width-1``;
    a matrix of one row applies to every row, as one product. ``matrix`` is on the array
    backend, as ``state`` is."""
    arrays = array_backend()
    rows, k, dim = state.shape
    size = 1 << width
    if len(matrix) == 1 and rows > 1:
        if lo == 0:  # one (rows * k * dim / size, size) x (size, size) product
            out = arrays.matmul(state.reshape(-1, size), arrays.swapaxes(matrix[0], 0, 1))
        else:
            out = arrays.matmul(matrix[0], state.reshape(-1, size, 1 << lo))
    elif lo == 0:  # contiguous: one (k * dim / size, size) x (size, size) product per row
        out = arrays.matmul(state.reshape(rows, k * dim // size, size),
                            arrays.swapaxes(matrix, -1, -2))
    else:
        view = state.reshape(rows, k * (dim >> (lo + width)), size, 1 << lo)
        out = arrays.matmul(matrix[:, None], view)
    return out.reshape(rows, k, dim)


def fill_cross(state: np.ndarray, lo: int, width: int, wanted: tuple, cross: np.ndarray) -> None:
    """``cross[:, :, b]`` for each ``(t, b)`` of ``wanted``: the 2x2 cross matrix of the
    chunk's qubit ``lo + t``, its other qubits traced out."""
    chunk = chunk_cross(state, lo, width)
    chunk = chunk.reshape(tuple(chunk.shape[:2]) + (2,) * (2 * width))
    einsum = array_backend().einsum
    for t, b in wanted:
        cross[:, :, b] = einsum(partial_trace_spec(width, t), chunk)


def chunk_cross(state: np.ndarray, lo: int, width: int) -> np.ndarray:
    """``E[r, k, a, b] = sum conj(lam_k[.., a, ..]) phi[.., b, ..]`` over the other qubits."""
    arrays = array_backend()
    rows, k1, dim = state.shape
    size = 1 << width
    lam = arrays.conj(state[:, 1:]) if arrays.is_complex(state) else state[:, 1:]
    if lo == 0:
        lam_view = lam.reshape(rows, k1 - 1, dim // size, size)
        phi_view = state[:, :1].reshape(rows, 1, dim // size, size)
        return arrays.matmul(arrays.swapaxes(lam_view, -1, -2), phi_view)
    high = dim >> (lo + width)
    lam_view = lam.reshape(rows, k1 - 1, high, size, 1 << lo)
    phi_view = state[:, :1].reshape(rows, 1, high, size, 1 << lo)
    return arrays.sum(arrays.matmul(lam_view, arrays.swapaxes(phi_view, -1, -2)), 2)


@lru_cache(maxsize=None)
def partial_trace_spec(width: int, bit: int) -> str:
    """einsum spec keeping qubit ``bit`` of a ``2**width`` square matrix, tracing the others."""
    letters = "abcdefghijklmnop"[:width]
    row, col = list(letters), list(letters)
    row[width - 1 - bit], col[width - 1 - bit] = "y", "z"  # axis order: highest bit first
    shape = "".join(row) + "".join(col)
    return f"...{shape}->...yz"


def row_chunks(rows: int, amplitudes_per_row: int):
    """Slices of ``range(rows)`` holding at most ``CHUNK_AMPLITUDES`` amplitudes each."""
    step = max(1, CHUNK_AMPLITUDES // max(1, amplitudes_per_row))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


_CORES = os.cpu_count() or 1  # asked once: every simulator call asks for it
_THREADS: list = [None, None]  # [threads asked for (None: every core), (pool, its workers)]


def set_threads(count: int | None) -> None:
    """Threads the exact simulator splits a batch's rows over; ``None``: one per core."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                              or count < 1):
        raise ValueError(f"threads must be an integer >= 1 or None, got {count!r}")
    _THREADS[0] = count


def threads_asked() -> int | None:
    """What :func:`set_threads` was given last (``None``: one per core)."""
    return _THREADS[0]


def threads() -> int:
    """The threads :func:`run_rows` uses (see :func:`set_threads`)."""
    return _THREADS[0] or _CORES


def run_rows(work, rows: int, amplitudes_per_row: int) -> None:
    """``work(slice)`` for slices covering ``range(rows)``: chunks that bound memory, each split
    over :func:`threads` threads where every part gets at least ``THREAD_AMPLITUDES``
    amplitudes. ``work`` writes its own rows of arrays allocated before."""
    for chunk in row_chunks(rows, amplitudes_per_row):
        size = chunk.stop - chunk.start
        parts = min(threads(), size, size * amplitudes_per_row // THREAD_AMPLITUDES)
        if parts <= 1:
            work(chunk)
            continue
        bounds = np.linspace(chunk.start, chunk.stop, parts + 1).round().astype(int)
        for _ in _pool(parts).map(work, [slice(a, b) for a, b in zip(bounds, bounds[1:])]):
            pass  # map re-raises a part's exception here


def _pool(workers: int) -> ThreadPoolExecutor:
    held = _THREADS[1]
    if held is None or held[1] < workers:
        if held is not None:
            held[0].shutdown(wait=False)
        held = _THREADS[1] = (ThreadPoolExecutor(workers, thread_name_prefix="qmoe-sim"),
                              workers)
    return held[0]
