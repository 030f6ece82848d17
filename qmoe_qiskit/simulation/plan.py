"""Layers of single-qubit gates, numbered so that what does not touch the state is done at once.

A :class:`Layer` is a run of single-qubit gates of a compiled circuit, one block of gates per
qubit. :func:`make_plan` numbers the blocks of every layer in one sequence, so that the block
products, the Kronecker products of the chunks and the gates' derivative matrices are a few
large array operations for the whole circuit; :func:`make_split` separates what is the same in
every row (a QNN's weights over a batch of inputs) from what is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels import IDENTITY

__all__ = ["Layer", "Plan", "Split", "make_plan", "make_split", "block_products", "rows_of",
           "sliced", "derivative_matrices"]


@dataclass(frozen=True)
class Layer:
    """Consecutive single-qubit gates, one block of gates per qubit.

    Block ``b`` acts on ``qubits[b]`` and applies ``members[0, b]``, then ``members[1, b]``, ...
    (indices into the program's matrix table: rotation angle columns first, then constant
    matrices; short blocks are padded with the identity in front). ``angles[j, b]`` is the angle
    column of a trainable rotation, else -1; ``generators[j, b]`` its generator, else zero.
    ``chunks`` lists ``(lowest qubit, width, block per qubit or -1)`` for the matrix products.
    """

    qubits: tuple[int, ...]
    members: np.ndarray  # (m, blocks)
    angles: np.ndarray  # (m, blocks)
    generators: np.ndarray  # (m, blocks, 2, 2)
    chunks: tuple[tuple[int, int, tuple[int, ...]], ...]

    @property
    def trainable(self) -> bool:
        return bool(np.any(self.angles >= 0))


@dataclass(frozen=True)
class Plan:
    """Every layer's blocks numbered in one sequence, so that the work that does not touch
    the state (block products, Kronecker products, gate derivatives) is done for all layers
    at once.

    ``members[j, b]`` is block ``b``'s ``j``-th gate (table index, identity-padded in front);
    ``krons`` groups the chunks by width: ``(width, block indices (chunks, width), slots)``,
    index ``num_blocks`` being the identity and ``slots[c] = (op, chunk)``. The trainable
    gates are ``(depths[i], blocks[i])``, with angle column ``columns[i]`` and generator
    ``generators[i]``; ``crossed[op][chunk]`` lists the ``(qubit in chunk, block)`` pairs whose
    cross matrices the gradients need.
    """

    num_blocks: int
    members: np.ndarray
    krons: tuple
    depths: np.ndarray
    blocks: np.ndarray
    columns: np.ndarray
    generators: np.ndarray
    crossed: tuple


def make_plan(ops: tuple, num_angles: int) -> Plan:
    layers = [op for op in ops if isinstance(op, Layer)]
    depth = max((len(op.members) for op in layers), default=1)
    members, angles, generators, offsets = [], [], [], {}
    total = 0
    for i, op in enumerate(ops):
        if not isinstance(op, Layer):
            continue
        offsets[i] = total
        total += len(op.qubits)
        pad = depth - len(op.members)
        members.append(np.pad(op.members, ((pad, 0), (0, 0)), constant_values=num_angles))
        angles.append(np.pad(op.angles, ((pad, 0), (0, 0)), constant_values=-1))
        generators.append(np.pad(op.generators, ((pad, 0), (0, 0), (0, 0), (0, 0))))
    members_all = np.concatenate(members, axis=1) if layers else np.zeros((1, 0), np.intp)
    angles_all = np.concatenate(angles, axis=1) if layers else np.zeros((1, 0), np.intp)
    depths, blocks = np.nonzero(angles_all >= 0)
    trainable_blocks = set(blocks.tolist())
    by_width: dict[int, tuple[list, list]] = {}
    crossed = []
    for i, op in enumerate(ops):
        if not isinstance(op, Layer):
            crossed.append(None)
            continue
        wanted = []
        for j, (_, width, bits) in enumerate(op.chunks):
            index, slots = by_width.setdefault(width, ([], []))
            index.append([offsets[i] + b if b >= 0 else total for b in bits])
            slots.append((i, j))
            wanted.append(tuple((t, offsets[i] + b) for t, b in enumerate(bits)
                                if b >= 0 and offsets[i] + b in trainable_blocks))
        crossed.append(tuple(wanted))
    return Plan(
        num_blocks=total,
        members=members_all,
        krons=tuple((w, np.array(index, dtype=np.intp), tuple(slots))
                    for w, (index, slots) in sorted(by_width.items())),
        depths=depths,
        blocks=blocks,
        columns=angles_all[depths, blocks],
        generators=np.concatenate(generators, axis=1)[depths, blocks] if layers
        else np.zeros((0, 2, 2)),
        crossed=tuple(crossed),
    )


@dataclass(frozen=True)
class Split:
    """The blocks computed once (``one``) and per row (``rows``), and the Kronecker groups
    ``(width, block indices, slots, shared)`` of :class:`Plan`, split the same way."""

    one: np.ndarray
    rows: np.ndarray
    krons: tuple


def make_split(plan: Plan, shared: np.ndarray) -> Split:
    block_shared = shared[plan.members].all(axis=0)
    block_shared = np.append(block_shared, True)  # the identity
    krons = []
    for width, index, slots in plan.krons:
        chunk_shared = block_shared[index].all(axis=1)
        for flag in (True, False):
            chosen = np.flatnonzero(chunk_shared == flag)
            if len(chosen):
                krons.append((width, index[chosen], tuple(slots[c] for c in chosen), flag))
    return Split(one=np.flatnonzero(block_shared[:-1]), rows=np.flatnonzero(~block_shared[:-1]),
                  krons=tuple(krons))


def block_products(table: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Each block's product of gate matrices ``(rows, blocks, 2, 2)``: ``members[-1] ...
    members[0]``."""
    product = table[:, members[0]]
    for row in members[1:]:
        product = np.matmul(table[:, row], product)
    return product


def rows_of(array: np.ndarray, sl: slice) -> np.ndarray:
    """Rows ``sl`` of a per-row array, or the array itself where one row serves all."""
    return array if len(array) == 1 else array[sl]


def sliced(matrices: list, sl: slice) -> list:
    return [None if m is None else [rows_of(c, sl) for c in m] for m in matrices]


def derivative_matrices(plan: Plan, table: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """``B_j = S_j A_j S_j^dagger`` per row for every trainable gate ``j`` ``(rows, J, 2, 2)``
    (one row where the gates after each trainable one are ``shared`` by every row): a block
    ``U = G_(m-1) ... G_0`` has ``dU/dtheta_j = B_j U`` with ``S_j = G_(m-1) ... G_(j+1)`` and
    ``A_j`` the rotation's generator, so the gradient is ``2 Re <lam| B_j |phi> = 2 Re
    sum_ab B_j[a, b] E[a, b]`` for the qubit's cross matrix E."""
    if shared[plan.members[1:]].all():
        table = table[:1]
    rows = len(table)
    depth = plan.members.shape[0]
    suffix = np.empty((rows, depth, plan.num_blocks, 2, 2), dtype=table.dtype)
    suffix[:, depth - 1] = IDENTITY
    for j in range(depth - 1, 0, -1):
        np.matmul(suffix[:, j], table[:, plan.members[j]], out=suffix[:, j - 1])
    chosen = suffix[:, plan.depths, plan.blocks]
    return np.matmul(np.matmul(chosen, plan.generators), np.conj(np.swapaxes(chosen, -1, -2)))
