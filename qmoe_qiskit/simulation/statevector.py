"""Batched exact statevector simulation with adjoint gradients.

A circuit is compiled once into a :class:`Program`: a flat list of operations on a state of
shape ``(rows, K, 2**n)`` (``rows`` parameter bindings, ``K`` states carried per row), with every
rotation angle an affine function of the circuit's parameters. Two kinds of operation:

* runs of fixed permutation/diagonal gates (CX, CZ, X, Z, S, T, SWAP, ...), fused into one
  gather-and-scale step (:class:`Mono`);
* layers of consecutive single-qubit gates (:class:`Layer`). Gates on different qubits commute,
  so each qubit's gates multiply into one 2x2 matrix per row, and the matrices of up to
  ``_CHUNK_QUBITS`` neighbouring qubits are applied together as one batched matrix product.

Gradients use the adjoint method: the final state and the vectors ``O|psi>`` for all requested
observables are swept backwards through the circuit together, so the cost is about
``(K + 1)`` state evolutions for ``K`` observables, independent of the number of parameters.
Every gradient of a layer comes from the same pair of swept states: the 2x2 "cross matrices"
``E[a, b] = sum conj(lam[.., a, ..]) phi[.., b, ..]`` of each qubit, after which each gate's
derivative is a product of 2x2 matrices.
Amplitude order follows Qiskit: qubit 0 is the least significant bit of the basis index.

What does not touch the state is done for all layers at once (:class:`Plan`: block products,
Kronecker products, gate derivatives), and once for all rows where the gates' angles are the
same in every row (a QNN's weights over a batch of inputs). The last forward pass is kept, so
the gradient call that follows it on the same values only sweeps back.

Any other gate with a definition (library circuits, feature maps, ``unitary``) is first unrolled
to these gates by Qiskit's own transpiler, once per circuit object. Angles that are not affine
in the parameters (the ZZ feature map's ``2(π - x0)(π - x1)``) are evaluated per binding, and
their gradients follow the chain rule through ``ParameterExpression.gradient``.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from qiskit import transpile
from qiskit.circuit import QuantumCircuit

from ..errors import UnsupportedCircuitError, choices
from .arrays import HOST, array_backend
from .kernels import IDENTITY, Mono, apply_chunk, apply_mono, fill_cross, run_rows
from .plan import (
    Layer,
    Plan,
    Split,
    block_products,
    derivative_matrices,
    make_plan,
    make_split,
    rows_of,
    sliced,
)
from ..primitives import CircuitCache, popcount
from ..primitives.angles import (
    GENERATORS,
    ROTATIONS,
    AngleTable,
    chain_rule,
    evaluate_angles,
    refuse_after_measurement,
)

__all__ = ["Program", "compile_circuit", "SUPPORTED_GATES"]

# Gates whose angle is a trainable or input parameter.
_PARAMETRIC = ROTATIONS
# Fixed single-qubit gates that are not permutation-times-diagonal.
_SQ2 = np.sqrt(0.5)
_DENSE_1Q = {
    "h": np.array([[_SQ2, _SQ2], [_SQ2, -_SQ2]], dtype=complex),
    "sx": 0.5 * np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]]),
    "sxdg": 0.5 * np.array([[1 - 1j, 1 + 1j], [1 + 1j, 1 - 1j]]),
}
# Fixed single-qubit diagonal gates: phase applied to |1>.
_DIAG_1Q = {
    "id": 1.0,
    "z": -1.0,
    "s": 1j,
    "sdg": -1j,
    "t": np.exp(0.25j * np.pi),
    "tdg": np.exp(-0.25j * np.pi),
}
_MONOMIAL = set(_DIAG_1Q) | {"x", "y", "cx", "cy", "cz", "swap"}
_IGNORED = ("barrier", "delay")
SUPPORTED_GATES = tuple(sorted(set(_PARAMETRIC) | set(_DENSE_1Q) | _MONOMIAL)) + ("measure",)

# R(theta) = cos(theta/2) I + sin(theta/2) * part; P is built separately.
_SINE_PARTS = {
    "rx": np.array([[0, -1j], [-1j, 0]]),
    "ry": np.array([[0, -1], [1, 0]], dtype=complex),
    "rz": np.array([[-1j, 0], [0, 1j]]),
    "p": np.zeros((2, 2), dtype=complex),
}

# Neighbouring qubits whose single-qubit gates are applied as one matrix: 2**4 x 2**4 matrices
# keep the batched products in BLAS and cost fewer passes over the state than one per qubit.
_CHUNK_QUBITS = 4
# The last forward pass is kept for the gradient call that follows it, up to this much state.
_MEMO_BYTES = 1 << 29


@dataclass(frozen=True)
class Program:
    """A compiled circuit: see the module docstring."""

    num_qubits: int
    num_parameters: int
    ops: tuple
    angle_coeffs: np.ndarray  # (num_angles, num_parameters)
    angle_offsets: np.ndarray  # (num_angles,)
    angle_kinds: tuple[str, ...]  # rotation kind of each angle column
    constants: np.ndarray  # (num_constants, 2, 2) fixed single-qubit matrices; [0] = identity
    measured: tuple[tuple[int, int], ...]  # (qubit, clbit) pairs
    num_clbits: int
    real: bool  # every gate is real: states stay real and are held as float64
    # angle columns that are not affine: (column, angle(values), ((parameter, d angle(values)),))
    expressions: tuple[tuple[int, Callable, tuple[tuple[int, Callable], ...]], ...] = ()
    single: bool = False  # states in single precision (complex64, float32 when real)

    @property
    def dtype(self) -> np.dtype:
        """The states' dtype: float64 / complex128, or float32 / complex64 when ``single``."""
        if self.real:
            return np.dtype(np.float32 if self.single else np.float64)
        return np.dtype(np.complex64 if self.single else np.complex128)

    @property
    def dim(self) -> int:
        return 1 << self.num_qubits

    # ---------------------------------------------------------------- forward
    def angles(self, values: np.ndarray) -> np.ndarray:
        return evaluate_angles(values, self.angle_coeffs, self.angle_offsets, self.expressions)

    def states(self, values: np.ndarray) -> np.ndarray:
        """Final statevectors, shape ``(rows, 2**n)``, for parameter rows ``values``."""
        state = self._forward(self._check_values(values)).state
        return state if state.dtype == complex else state.astype(complex)

    def basis_probabilities(self, values: np.ndarray) -> np.ndarray:
        """Probabilities of every basis state, shape ``(rows, 2**n)`` (qubit 0 least
        significant)."""
        state = self._forward(self._check_values(values)).state
        return np.square(state) if self.real else np.abs(state) ** 2

    def _forward(self, values: np.ndarray) -> "_Forward":
        """The forward pass of ``values``: the last one is kept (up to ``_MEMO_BYTES`` of
        state), so that a gradient call on the same values only sweeps back."""
        last = self._memo[0]
        if last is not None and last.matches(values):
            return last
        angles = self.angles(values)
        table = self._table(angles)
        # Table entries equal in every row (the weights, when a QNN binds one weight vector
        # to a batch of inputs) are multiplied once, and their chunks applied as one product.
        shared = np.ones(table.shape[1], dtype=bool)
        shared[:angles.shape[1]] = (angles == angles[:1]).all(axis=0)
        matrices = self._layer_matrices(table, shared)
        state = np.empty((len(values), self.dim), dtype=self.dtype)

        def evolve(sl: slice) -> None:
            state[sl] = array_backend().to_numpy(
                self._evolve(sliced(matrices, sl), sl.stop - sl.start)[:, 0, :])

        run_rows(evolve, len(values), self.dim)
        state.flags.writeable = False  # kept for the gradient call: nobody may change it
        forward = _Forward(values.copy(), table, shared, matrices, state)
        self._memo[0] = forward if state.nbytes <= _MEMO_BYTES else None
        return forward

    @cached_property
    def _memo(self) -> list:
        return [None]

    def _table(self, angles: np.ndarray) -> np.ndarray:
        """Every rotation's 2x2 matrix for every row, then the constant matrices:
        shape ``(rows, num_angles + num_constants, 2, 2)``."""
        num_angles = angles.shape[1]
        table = np.empty((len(angles), num_angles + len(self.constants), 4), dtype=self.dtype)
        # R(theta) = cos(theta/2) I + sin(theta/2) (-i P) for rx, ry, rz (entries 0..3 of
        # each row-major 2x2 matrix: the long axes stay innermost).
        half = 0.5 * angles
        rotations = table[:, :num_angles]
        np.multiply(np.sin(half)[..., None], self._sine_parts, out=rotations)
        cos = np.cos(half)
        rotations[..., 0] += cos
        rotations[..., 3] += cos
        table = table.reshape(len(angles), -1, 2, 2)
        phase_cols = self._columns_by_kind.get("p")
        if phase_cols:  # P(theta) = diag(1, e^{i theta})
            table[:, phase_cols] = 0.0
            table[:, phase_cols, 0, 0] = 1.0
            table[:, phase_cols, 1, 1] = np.exp(1j * angles[:, phase_cols])
        table[:, num_angles:] = self.constants
        return table

    @cached_property
    def _sine_parts(self) -> np.ndarray:
        parts = np.array([_SINE_PARTS[kind] for kind in self.angle_kinds]).reshape(-1, 4)
        return parts.real.copy() if self.real else parts

    @cached_property
    def _columns_by_kind(self) -> dict[str, list[int]]:
        by_kind: dict[str, list[int]] = {}
        for col, kind in enumerate(self.angle_kinds):
            by_kind.setdefault(kind, []).append(col)
        return by_kind

    @cached_property
    def _plan(self) -> "Plan":
        return make_plan(self.ops, len(self.angle_offsets))

    def _layer_matrices(self, table: np.ndarray, shared: np.ndarray) -> list:
        """Per op: ``None`` for a monomial op, else each chunk's matrix ``(rows, 2**w, 2**w)``,
        or ``(1, 2**w, 2**w)`` where every row has the same (``shared``: per table entry).
        The blocks of every layer are multiplied together, and the chunks of one width are
        Kronecker products together: a few large array operations instead of many small."""
        split = self._split(shared)
        members = self._plan.members
        one = np.empty((1, self._plan.num_blocks + 1, 2, 2), dtype=table.dtype)
        one[:, -1] = IDENTITY
        one[:, split.one] = block_products(table[:1], members[:, split.one])
        blocks = {True: one}
        if len(split.rows):
            blocks[False] = every = np.empty((len(table),) + one.shape[1:], dtype=table.dtype)
            every[:, split.one] = one[:, split.one]
            every[:, -1] = IDENTITY
            every[:, split.rows] = block_products(table, members[:, split.rows])
        out: list = [None if isinstance(op, Mono) else [None] * len(op.chunks) for op in self.ops]
        for width, index, slots, is_shared in split.krons:
            factors = blocks[is_shared][:, index]  # (rows, chunks, width, 2, 2), lowest first
            matrix = factors[:, :, 0]
            for t in range(1, width):
                size = 2 * matrix.shape[-1]
                matrix = np.einsum("rnab,rncd->rnacbd", factors[:, :, t], matrix).reshape(
                    len(factors), len(slots), size, size)
            for c, (i, j) in enumerate(slots):
                out[i][j] = matrix[:, c]
        return out

    def _split(self, shared: np.ndarray) -> "Split":
        """Which blocks and chunks are the same in every row, for this pattern of shared table
        entries (remembered: a QNN repeats its pattern on every call)."""
        key = shared.tobytes()
        hit = self._splits.get(key)
        if hit is None:
            if len(self._splits) >= 64:
                self._splits.clear()
            hit = self._splits[key] = make_split(self._plan, shared)
        return hit

    @cached_property
    def _splits(self) -> dict:
        return {}

    def _evolve(self, matrices: list, rows: int):
        """The states ``(rows, 1, 2**n)`` on the array backend, from ``|0...0>``."""
        arrays = array_backend()
        state = arrays.zeros((rows, 1, self.dim), self.dtype)
        state[:, 0, 0] = 1.0
        for op, chunk_matrices in zip(self.ops, matrices):
            if chunk_matrices is None:
                state = apply_mono(state, op)
            else:
                for (lo, width, _), matrix in zip(op.chunks, chunk_matrices):
                    state = apply_chunk(state, lo, width, arrays.asarray(matrix))
        return state

    def probabilities(self, values: np.ndarray) -> np.ndarray:
        """Exact outcome probabilities over the measured clbits, shape ``(rows, 2**num_clbits)``."""
        return self._marginal(self.basis_probabilities(values))

    def _marginal(self, probs: np.ndarray) -> np.ndarray:
        n = self.num_qubits
        rows = probs.shape[0]
        tensor = probs.reshape((rows,) + (2,) * n)  # axis 1 + k <-> qubit n - 1 - k
        measured = dict(self.measured)
        unmeasured = tuple(1 + n - 1 - q for q in range(n) if q not in measured)
        if unmeasured:
            tensor = tensor.sum(axis=unmeasured)
        kept = [q for q in reversed(range(n)) if q in measured]  # current axis order
        by_clbit = sorted(kept, key=lambda q: -measured[q])  # highest clbit first
        tensor = np.transpose(tensor, (0,) + tuple(1 + kept.index(q) for q in by_clbit))
        return tensor.reshape(rows, 1 << self.num_clbits)

    def outcome_index(self) -> np.ndarray:
        """For each basis state, the integer outcome its measurement yields."""
        basis = np.arange(self.dim)
        out = np.zeros(self.dim, dtype=np.int64)
        for qubit, clbit in self.measured:
            out |= ((basis >> qubit) & 1) << clbit
        return out

    # ---------------------------------------------------------------- adjoint
    def expectation_gradients(
        self, values: np.ndarray, observables: list["DiagonalOrPauli"]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Expectation values ``(rows, K)`` and their gradients ``(rows, K, num_parameters)``.

        A forward pass of the same values just before (``states``, ``basis_probabilities``)
        is reused: only the backward sweep runs."""
        values = self._check_values(values)
        forward = self._forward(values)
        self._memo[0] = None  # the gradient is the forward pass's last use
        k = len(observables)
        evs = np.empty((len(values), k))
        grads = np.zeros((len(values), k, self.num_parameters))
        derivatives = derivative_matrices(self._plan, forward.table, forward.shared)

        def sweep(sl: slice) -> None:
            arrays = array_backend()
            psi = arrays.asarray(forward.state[sl])
            lam = arrays.stack([obs.apply(psi) for obs in observables], axis=1)
            evs[sl] = arrays.expectations(psi, lam)
            grads[sl] = self._adjoint(psi, lam, rows_of(derivatives, sl),
                                      sliced(forward.matrices, sl), values[sl])

        run_rows(sweep, len(values), self.dim * (k + 1))
        return evs, grads

    def _adjoint(
        self, psi, lam, derivatives: np.ndarray, matrices: list, values: np.ndarray,
    ) -> np.ndarray:
        """Parameter gradients ``(rows, K, P)`` from one backward sweep of ``psi`` and the
        adjoint vectors ``lam`` (both on the array backend): the cross matrices of every
        trainable block are collected on the way, then multiplied with their gates'
        ``derivatives`` at once, on the host."""
        arrays = array_backend()
        plan = self._plan
        rows, k, _ = lam.shape
        if self.real:
            # phi and its derivatives are real, so only Re(lam) enters 2 Re <lam|d phi>.
            lam = lam.real
        lam = arrays.astype(lam, self.dtype)
        state = arrays.concatenate([psi[:, None, :], lam], axis=1)
        cross = arrays.zeros((rows, k, plan.num_blocks, 2, 2), self.dtype)
        first = self._first_trainable
        for i in range(len(self.ops) - 1, first - 1, -1):
            op = self.ops[i]
            if isinstance(op, Mono):
                state = apply_mono(state, op, adjoint=True)
                continue
            for (lo, width, _), wanted in zip(op.chunks, plan.crossed[i]):
                if wanted:
                    fill_cross(state, lo, width, wanted, cross)
            if i > first:  # layers before the first trainable one need no undoing
                for (lo, width, _), matrix in zip(op.chunks, matrices[i]):
                    state = apply_chunk(state, lo, width, arrays.asarray(
                        np.conj(np.swapaxes(matrix, -1, -2))))
        cross = arrays.to_numpy(cross)
        angle_grads = np.zeros((rows, k, len(self.angle_offsets)))
        if len(plan.columns):
            chosen = cross[:, :, plan.blocks]
            products = np.einsum("jxy,rkjxy->rkj", derivatives[0], chosen) \
                if len(derivatives) == 1 else np.einsum("rjxy,rkjxy->rkj", derivatives, chosen)
            angle_grads[:, :, plan.columns] = 2.0 * products.real
        return chain_rule(angle_grads, values, self.angle_coeffs, self.expressions)

    @cached_property
    def _first_trainable(self) -> int:
        positions = [i for i, op in enumerate(self.ops) if isinstance(op, Layer) and op.trainable]
        return positions[0] if positions else len(self.ops)

    def _check_values(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if values.ndim == 1:
            values = values.reshape(1, -1)
        if values.ndim != 2 or values.shape[1] != self.num_parameters:
            raise ValueError(
                f"expected parameter values of shape (rows, {self.num_parameters}), "
                f"got {values.shape}"
            )
        return values


@dataclass(frozen=True)
class _Forward:
    """One forward pass: its parameter rows, gate table, chunk matrices and final states."""

    values: np.ndarray
    table: np.ndarray
    shared: np.ndarray  # per table entry: the same in every row
    matrices: list
    state: np.ndarray  # (rows, 2**n), float64 for a real program

    def matches(self, values: np.ndarray) -> bool:
        return self.values.shape == values.shape and np.array_equal(self.values, values)


class DiagonalOrPauli:
    """An observable as a sum of (permutation, phase vector) terms, diagonal terms merged.

    ``apply(psi)`` returns ``O|psi>`` for a batch of states ``(rows, 2**n)``.
    """

    def __init__(self, terms: list[tuple[np.ndarray | None, np.ndarray]]):
        diagonal = [phase for perm, phase in terms if perm is None]
        self._diag = np.sum(diagonal, axis=0) if diagonal else None
        self._offdiag = [(perm, phase) for perm, phase in terms if perm is not None]

    @classmethod
    def projector(cls, mask: np.ndarray) -> "DiagonalOrPauli":
        return cls([(None, mask.astype(complex))])

    @classmethod
    def from_pauli_list(cls, pauli_list, num_qubits: int) -> "DiagonalOrPauli":
        """From ``[(label, coeff), ...]`` with Qiskit labels (rightmost character = qubit 0)."""
        basis = np.arange(1 << num_qubits)
        terms = []
        for label, coeff in pauli_list:
            label = label.upper()
            if len(label) != num_qubits or set(label) - set("IXYZ"):
                raise ValueError(f"invalid Pauli label {label!r} for {num_qubits} qubits")
            x_mask = z_mask = num_y = 0
            for q, char in enumerate(reversed(label)):
                if char in "XY":
                    x_mask |= 1 << q
                if char in "ZY":
                    z_mask |= 1 << q
                num_y += char == "Y"
            # P|s> = i^{#Y} (-1)^{popcount(s & z)} |s ^ x>, so (P psi)[t] = phase(t ^ x) psi[t ^ x].
            source = basis ^ x_mask
            signs = 1 - 2 * (popcount(source & z_mask) & 1)
            phase = complex(coeff) * (1j**num_y) * signs
            terms.append((None if x_mask == 0 else source, phase))
        return cls(terms)

    def apply(self, psi):
        """``O|psi>`` of states ``psi`` (NumPy on the host, or on the array backend)."""
        arrays = HOST if isinstance(psi, np.ndarray) else array_backend()
        out = psi * arrays.constant(self._diag) if self._diag is not None \
            else arrays.zeros_like(psi)
        for perm, phase in self._offdiag:
            out += arrays.constant(phase) * psi[:, arrays.constant(perm)]
        return out


# -------------------------------------------------------------------- compile
MAX_QUBITS = 24  # the widest circuit the exact simulator holds (2**24 amplitudes a sample)


DTYPES = ("complex128", "complex64")


def compile_circuit(circuit: QuantumCircuit, dtype: str = "complex128") -> Program:
    """Compile ``circuit`` (cached per circuit object and ``dtype``) for batched simulation.

    Parameter columns follow ``circuit.parameters``. ``dtype``: ``"complex128"`` (the default)
    or ``"complex64"``, single precision for wide circuits (a real circuit's states are
    float64 or float32). Raises :class:`UnsupportedCircuitError` naming the first gate,
    measurement pattern or parameter expression it cannot run.
    """
    return _PROGRAMS(circuit, check_dtype(dtype))


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`DTYPES`, else a one-line ``ValueError`` naming them."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}")
    return dtype


def _compile(circuit: QuantumCircuit, dtype: str = "complex128") -> Program:
    if dtype == "complex64":
        return _single(_PROGRAMS(circuit, "complex128"))
    table = AngleTable(circuit.parameters)  # columns follow the circuit as given
    circuit = _unrolled(circuit)
    n = circuit.num_qubits
    if n > MAX_QUBITS:
        raise UnsupportedCircuitError(
            f"the exact simulator holds 2**n amplitudes per sample; {n} qubits is too many "
            f"(max {MAX_QUBITS})")
    items, measured, num_clbits = _items(circuit, table)
    monos = [item for item in items if isinstance(item, Mono)]
    dense = [what for _, what, _ in (i for i in items if not isinstance(i, Mono))
             if not isinstance(what, int)]
    real = (all(kind == "ry" for kind in table.kinds)
            and all(not np.any(m.imag) for m in dense)
            and all(m.phase is None or not np.any(m.phase.imag) for m in monos))
    constants = [np.eye(2, dtype=complex)]
    ops: list = []
    layer: list = []
    for item in items + [None]:  # a run of single-qubit gates ends at a monomial op
        if isinstance(item, tuple):
            layer.append(item)
            continue
        if layer:
            ops.append(_make_layer(layer, len(table), constants, table.kinds, n, real))
            layer = []
        if item is not None:
            ops.append(_realify(item))
    constants_array = np.array(constants)
    return Program(
        num_qubits=n,
        num_parameters=len(table.param_index),
        ops=tuple(ops),
        angle_coeffs=table.coeffs,
        angle_offsets=table.offsets,
        angle_kinds=tuple(table.kinds),
        constants=constants_array.real.copy() if real else constants_array,
        measured=tuple(sorted(measured.items())),
        num_clbits=num_clbits,
        real=real,
        expressions=tuple(table.expressions),
    )


def _items(circuit: QuantumCircuit, table: AngleTable) -> tuple[list, dict[int, int], int]:
    """The circuit as a list of single-qubit gates ``(qubit, angle column | 2x2 matrix,
    trainable)`` and fused monomial ops (:class:`Mono`), its rotations' angles added to
    ``table``; the final measurements ``{qubit: clbit}``; the number of clbits written."""
    n = circuit.num_qubits
    qubit_index = {q: i for i, q in enumerate(circuit.qubits)}
    clbit_index = {c: i for i, c in enumerate(circuit.clbits)}
    items: list = []
    measured: dict[int, int] = {}
    written: set[int] = set()
    for inst in circuit.data:
        name = inst.operation.name
        qubits = [qubit_index[q] for q in inst.qubits]
        if name in _IGNORED:
            continue
        if name == "measure":
            clbit = clbit_index[inst.clbits[0]]
            if clbit in written:
                raise UnsupportedCircuitError(f"clbit {clbit} is measured twice")
            measured[qubits[0]] = clbit
            written.add(clbit)
            continue
        refuse_after_measurement(name, qubits, measured, "only terminal measurements are "
                                 "supported")
        if name in _PARAMETRIC:
            column, trainable = table.add(name, inst.operation.params[0])
            items.append((qubits[0], column, trainable))
        elif name in _DENSE_1Q:
            items.append((qubits[0], _DENSE_1Q[name], False))
        elif name in _MONOMIAL:
            mono = _monomial(name, qubits, n)
            if items and isinstance(items[-1], Mono):
                mono = _fuse_mono(items[-1], mono)
                items[-1] = mono
            else:
                items.append(mono)
        else:
            raise UnsupportedCircuitError(
                f"instruction {name!r} is not supported by the exact simulator, which runs "
                f"unitary gates (unrolled to {choices(SUPPORTED_GATES)}) and final measurements"
            )
    if written and written != set(range(circuit.num_clbits)):
        missing = sorted(set(range(circuit.num_clbits)) - written)
        raise UnsupportedCircuitError(f"clbits {missing} are never measured")
    return items, measured, len(written)


_PROGRAMS: CircuitCache[Program] = CircuitCache(_compile)


def _single(program: Program) -> Program:
    """``program`` in single precision: its fixed phases, constants and generators cast."""
    real = np.float32 if program.real else np.complex64

    def cast(op):
        if isinstance(op, Mono):
            return Mono(op.perm, None if op.phase is None else op.phase.astype(
                np.float32 if np.isrealobj(op.phase) else np.complex64))
        return dataclasses.replace(op, generators=op.generators.astype(real))

    return dataclasses.replace(program, ops=tuple(cast(op) for op in program.ops),
                               constants=program.constants.astype(real), single=True)


def _make_layer(gates: list, num_angles: int, constants: list, kinds: list, n: int,
                real: bool) -> Layer:
    """Group a run of single-qubit gates ``(qubit, column | matrix, trainable)`` into a layer."""
    blocks: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    zero = np.zeros((2, 2), dtype=complex)
    for qubit, what, trainable in gates:
        if isinstance(what, int):
            generator = GENERATORS[kinds[what]] if trainable else zero
            member = (what, what if trainable else -1, generator)
        else:
            index = next((i for i, c in enumerate(constants) if np.array_equal(c, what)), None)
            if index is None:
                index = len(constants)
                constants.append(what)
            member = (num_angles + index, -1, zero)
        blocks.setdefault(qubit, []).append(member)
    qubits = tuple(sorted(blocks))
    depth = max(len(b) for b in blocks.values())
    identity = (num_angles, -1, zero)  # constants[0] is the identity
    padded = [[identity] * (depth - len(blocks[q])) + blocks[q] for q in qubits]
    members = np.array([[b[j][0] for b in padded] for j in range(depth)], dtype=np.intp)
    angles = np.array([[b[j][1] for b in padded] for j in range(depth)], dtype=np.intp)
    generators = np.array([[b[j][2] for b in padded] for j in range(depth)])
    position = {q: i for i, q in enumerate(qubits)}
    chunks = []
    for lo in range(0, n, _CHUNK_QUBITS):
        width = min(_CHUNK_QUBITS, n - lo)
        bits = tuple(position.get(q, -1) for q in range(lo, lo + width))
        if any(b >= 0 for b in bits):
            chunks.append((lo, width, bits))
    return Layer(
        qubits=qubits,
        members=members,
        angles=angles,
        generators=generators.real.copy() if real else generators,
        chunks=tuple(chunks),
    )


def _realify(op: Mono) -> Mono:
    """Store real phases as float64 so real circuits are simulated in real arithmetic."""
    if op.phase is not None and not np.any(op.phase.imag):
        return Mono(op.perm, op.phase.real.copy())
    return op


# Gates Qiskit's transpiler unrolls other gates into: those this simulator runs directly.
_UNROLL_BASIS = tuple(sorted(set(_PARAMETRIC) | set(_DENSE_1Q) | _MONOMIAL))
_KEPT = set(_UNROLL_BASIS) | {"measure", "barrier", "delay"}


def _unrolled(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with every gate outside the simulator's set unrolled by Qiskit's transpiler
    (at optimization level 0: nothing merged, parameters kept); as it is when nothing is."""
    names = {inst.operation.name for inst in circuit.data}
    if names <= _KEPT:
        return circuit
    if any(inst.operation.name in _NOT_UNROLLED or inst.is_control_flow()
           for inst in circuit.data):
        return circuit  # refused below with the instruction's name
    try:
        return transpile(circuit, basis_gates=list(_UNROLL_BASIS), optimization_level=0)
    except Exception as exc:  # the transpiler raises several types for gates it cannot unroll
        raise UnsupportedCircuitError(
            f"the circuit's gates {sorted(names - _KEPT)} cannot be unrolled to the exact "
            f"simulator's gates ({type(exc).__name__}: {' '.join(str(exc).split())})") from None


_NOT_UNROLLED = ("reset", "initialize", "store")


def _monomial(name: str, qubits: list[int], n: int) -> Mono:
    basis = np.arange(1 << n)
    if name in _DIAG_1Q:
        bit = (basis >> qubits[0]) & 1
        return Mono(None, np.where(bit == 1, _DIAG_1Q[name], 1.0).astype(complex))
    if name == "x":
        return Mono(basis ^ (1 << qubits[0]), None)
    if name == "y":  # Y|0> = i|1>, Y|1> = -i|0>: new[s] = (i if bit(s) else -i) old[s ^ bit]
        bit = (basis >> qubits[0]) & 1
        return Mono(basis ^ (1 << qubits[0]), np.where(bit == 1, 1j, -1j))
    if name == "swap":
        a, b = qubits
        diff = ((basis >> a) ^ (basis >> b)) & 1
        return Mono(basis ^ (diff << a) ^ (diff << b), None)
    control, target = qubits
    on = (basis >> control) & 1
    if name == "cz":
        return Mono(None, np.where(on & (basis >> target) & 1, -1.0, 1.0).astype(complex))
    perm = basis ^ (on << target)
    if name == "cx":
        return Mono(perm, None)
    # cy: controlled Y, phase from the target bit of the new state
    tbit = (basis >> target) & 1
    return Mono(perm, np.where(on == 1, np.where(tbit == 1, 1j, -1j), 1.0))


def _fuse_mono(old: Mono, new: Mono) -> Mono:
    """``new`` after ``old`` as one op: (d2,p2)∘(d1,p1) = (d2 * d1[p2], p1[p2])."""
    perm = old.perm if new.perm is None else (new.perm if old.perm is None else old.perm[new.perm])
    old_phase = old.phase
    if old_phase is not None and new.perm is not None:
        old_phase = old_phase[new.perm]
    if old_phase is None:
        phase = new.phase
    elif new.phase is None:
        phase = old_phase
    else:
        phase = new.phase * old_phase
    return Mono(perm, phase)


