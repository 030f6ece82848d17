"""Batched exact statevector simulation with adjoint gradients.

A circuit is compiled once into a :class:`Program`: a flat list of operations on a state of
shape ``(rows, K, 2**n)`` (``rows`` parameter bindings, ``K`` states carried per row), with every
rotation angle an affine function of the circuit's parameters. Two kinds of operation:

* runs of fixed permutation/diagonal gates (CX, CZ, X, Z, S, T, SWAP, ...), fused into one
  gather-and-scale step (:class:`_Mono`);
* layers of consecutive single-qubit gates (:class:`_Layer`). Gates on different qubits commute,
  so each qubit's gates multiply into one 2x2 matrix per row, and the matrices of up to
  ``_CHUNK_QUBITS`` neighbouring qubits are applied together as one batched matrix product.

Gradients use the adjoint method: the final state and the vectors ``O|psi>`` for all requested
observables are swept backwards through the circuit together, so the cost is about
``(K + 1)`` state evolutions for ``K`` observables, independent of the number of parameters.
Every gradient of a layer comes from the same pair of swept states: the 2x2 "cross matrices"
``E[a, b] = sum conj(lam[.., a, ..]) phi[.., b, ..]`` of each qubit, after which each gate's
derivative is a product of 2x2 matrices.
Amplitude order follows Qiskit: qubit 0 is the least significant bit of the basis index.

Any other gate with a definition (library circuits, feature maps, ``unitary``) is first unrolled
to these gates by Qiskit's own transpiler, once per circuit object. Angles that are not affine
in the parameters (the ZZ feature map's ``2(π - x0)(π - x1)``) are evaluated per binding, and
their gradients follow the chain rule through ``ParameterExpression.gradient``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from qiskit import transpile
from qiskit.circuit import QuantumCircuit

from ..errors import UnsupportedCircuitError, choices
from ..primitives import CircuitCache, popcount
from ..primitives.angles import (
    affine_row,
    angle_expression,
    chain_rule,
    evaluate_angles,
    is_affine,
)

__all__ = ["Program", "compile_circuit", "SUPPORTED_GATES"]

# Gates whose angle is a trainable or input parameter.
_PARAMETRIC = ("rx", "ry", "rz", "p")
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

# dU/dtheta = A U for each rotation kind.
_GENERATORS = {
    "rx": np.array([[0, -0.5j], [-0.5j, 0]]),
    "ry": np.array([[0, -0.5], [0.5, 0]], dtype=complex),
    "rz": np.array([[-0.5j, 0], [0, 0.5j]]),
    "p": np.array([[0, 0], [0, 1j]]),
}

_IDENTITY = np.eye(2)
# R(theta) = cos(theta/2) I + sin(theta/2) * part; P is built separately.
_SINE_PARTS = {
    "rx": np.array([[0, -1j], [-1j, 0]]),
    "ry": np.array([[0, -1], [1, 0]], dtype=complex),
    "rz": np.array([[-1j, 0], [0, 1j]]),
    "p": np.zeros((2, 2), dtype=complex),
}

# Amplitudes per chunk when a batch is split to bound memory (256 MiB of complex128).
_CHUNK_AMPLITUDES = 1 << 24
# Neighbouring qubits whose single-qubit gates are applied as one matrix: 2**4 x 2**4 matrices
# keep the batched products in BLAS and cost fewer passes over the state than one per qubit.
_CHUNK_QUBITS = 4


@dataclass(frozen=True)
class _Mono:
    """``new[s] = phase[s] * old[perm[s]]`` (either part may be ``None``)."""

    perm: np.ndarray | None
    phase: np.ndarray | None


@dataclass(frozen=True)
class _Layer:
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

    @property
    def dtype(self):
        return float if self.real else complex

    @property
    def dim(self) -> int:
        return 1 << self.num_qubits

    # ---------------------------------------------------------------- forward
    def angles(self, values: np.ndarray) -> np.ndarray:
        return evaluate_angles(values, self.angle_coeffs, self.angle_offsets, self.expressions)

    def states(self, values: np.ndarray) -> np.ndarray:
        """Final statevectors, shape ``(rows, 2**n)``, for parameter rows ``values``."""
        values = self._check_values(values)
        out = np.empty((len(values), self.dim), dtype=complex)
        for sl in _chunks(len(values), self.dim):
            matrices = self._layer_matrices(self._table(self.angles(values[sl])))
            out[sl] = self._evolve(matrices, sl.stop - sl.start)[:, 0, :]
        return out

    def _table(self, angles: np.ndarray) -> np.ndarray:
        """Every rotation's 2x2 matrix for every row, then the constant matrices:
        shape ``(rows, num_angles + num_constants, 2, 2)``."""
        num_angles = angles.shape[1]
        table = np.empty((len(angles), num_angles + len(self.constants), 2, 2), dtype=self.dtype)
        # R(theta) = cos(theta/2) I + sin(theta/2) (-i P) for rx, ry, rz.
        half = 0.5 * angles
        rotations = table[:, :num_angles]
        np.multiply(np.cos(half)[..., None, None], _IDENTITY, out=rotations)
        rotations += np.sin(half)[..., None, None] * self._sine_parts
        phase_cols = self._columns_by_kind.get("p")
        if phase_cols:  # P(theta) = diag(1, e^{i theta})
            table[:, phase_cols] = 0.0
            table[:, phase_cols, 0, 0] = 1.0
            table[:, phase_cols, 1, 1] = np.exp(1j * angles[:, phase_cols])
        table[:, num_angles:] = self.constants
        return table

    @cached_property
    def _sine_parts(self) -> np.ndarray:
        parts = np.array([_SINE_PARTS[kind] for kind in self.angle_kinds]).reshape(-1, 2, 2)
        return parts.real.copy() if self.real else parts

    @cached_property
    def _columns_by_kind(self) -> dict[str, list[int]]:
        by_kind: dict[str, list[int]] = {}
        for col, kind in enumerate(self.angle_kinds):
            by_kind.setdefault(kind, []).append(col)
        return by_kind

    def _layer_matrices(self, table: np.ndarray) -> list:
        """Per op: ``None`` for a monomial op, else each chunk's matrix ``(rows, 2**w, 2**w)``."""
        out = []
        for op in self.ops:
            if isinstance(op, _Mono):
                out.append(None)
            else:
                blocks = _block_matrices(op, table)
                out.append([_kron(blocks, bits) for _, _, bits in op.chunks])
        return out

    def _evolve(self, matrices: list, rows: int) -> np.ndarray:
        state = np.zeros((rows, 1, self.dim), dtype=self.dtype)
        state[:, 0, 0] = 1.0
        for op, chunk_matrices in zip(self.ops, matrices):
            if chunk_matrices is None:
                state = _apply_mono(state, op)
            else:
                for (lo, width, _), matrix in zip(op.chunks, chunk_matrices):
                    state = _apply_chunk(state, lo, width, matrix)
        return state

    def probabilities(self, values: np.ndarray) -> np.ndarray:
        """Exact outcome probabilities over the measured clbits, shape ``(rows, 2**num_clbits)``."""
        values = self._check_values(values)
        probs = np.abs(self.states(values)) ** 2
        return self._marginal(probs)

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
        """Expectation values ``(rows, K)`` and their gradients ``(rows, K, num_parameters)``."""
        values = self._check_values(values)
        k = len(observables)
        evs = np.empty((len(values), k))
        grads = np.zeros((len(values), k, self.num_parameters))
        for sl in _chunks(len(values), self.dim * (k + 1)):
            table = self._table(self.angles(values[sl]))
            matrices = self._layer_matrices(table)
            psi = self._evolve(matrices, sl.stop - sl.start)[:, 0, :]
            lam = np.stack([obs.apply(psi) for obs in observables], axis=1)
            evs[sl] = np.einsum("rs,rks->rk", psi.conj(), lam).real
            grads[sl] = self._adjoint(psi, lam, table, matrices, values[sl])
        return evs, grads

    def _adjoint(
        self, psi: np.ndarray, lam: np.ndarray, table: np.ndarray, matrices: list,
        values: np.ndarray,
    ) -> np.ndarray:
        rows, k, _ = lam.shape
        angle_grads = np.zeros((rows, k, len(self.angle_offsets)))
        if self.real:
            # phi and its derivatives are real, so only Re(lam) enters 2 Re <lam|d phi>.
            lam = lam.real
        state = np.concatenate([psi[:, None, :], lam], axis=1)
        first = self._first_trainable
        for i in range(len(self.ops) - 1, first - 1, -1):
            op = self.ops[i]
            if isinstance(op, _Mono):
                state = _apply_mono(state, op, adjoint=True)
                continue
            if op.trainable:
                _layer_gradients(op, state, table, angle_grads)
            if i > first:  # layers before the first trainable one need no undoing
                for (lo, width, _), matrix in zip(op.chunks, matrices[i]):
                    state = _apply_chunk(state, lo, width, np.conj(np.swapaxes(matrix, -1, -2)))
        return chain_rule(angle_grads, values, self.angle_coeffs, self.expressions)

    @cached_property
    def _first_trainable(self) -> int:
        positions = [i for i, op in enumerate(self.ops) if isinstance(op, _Layer) and op.trainable]
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

    def apply(self, psi: np.ndarray) -> np.ndarray:
        out = psi * self._diag if self._diag is not None else np.zeros_like(psi)
        for perm, phase in self._offdiag:
            out += phase * psi[:, perm]
        return out


# -------------------------------------------------------------------- compile
MAX_QUBITS = 24  # the widest circuit the exact simulator holds (2**24 amplitudes a sample)


def compile_circuit(circuit: QuantumCircuit) -> Program:
    """Compile ``circuit`` (cached per circuit object) for batched simulation.

    Parameter columns follow ``circuit.parameters``. Raises :class:`UnsupportedCircuitError`
    naming the first gate, measurement pattern or parameter expression it cannot run.
    """
    return _PROGRAMS(circuit)


def _compile(circuit: QuantumCircuit) -> Program:
    parameters = list(circuit.parameters)  # columns follow the circuit as given
    circuit = _unrolled(circuit)
    n = circuit.num_qubits
    if n > MAX_QUBITS:
        raise UnsupportedCircuitError(
            f"the exact simulator holds 2**n amplitudes per sample; {n} qubits is too many "
            f"(max {MAX_QUBITS})")
    qubit_index = {q: i for i, q in enumerate(circuit.qubits)}
    clbit_index = {c: i for i, c in enumerate(circuit.clbits)}
    param_index = {p: i for i, p in enumerate(parameters)}
    # Single-qubit gates are collected as (qubit, ("angle", column) | ("constant", matrix));
    # a monomial gate closes the current layer.
    items: list = []
    coeffs: list[np.ndarray] = []
    offsets: list[float] = []
    kinds: list[str] = []
    measured: dict[int, int] = {}
    written: set[int] = set()
    expressions: list = []

    for inst in circuit.data:
        op = inst.operation
        name = op.name
        qubits = [qubit_index[q] for q in inst.qubits]
        if name in _IGNORED:
            continue
        if name == "measure":
            qubit, clbit = qubits[0], clbit_index[inst.clbits[0]]
            if clbit in written:
                raise UnsupportedCircuitError(f"clbit {clbit} is measured twice")
            measured[qubit] = clbit
            written.add(clbit)
            continue
        if any(q in measured for q in qubits):
            raise UnsupportedCircuitError(
                f"gate {name!r} acts on qubit {qubits} after it was measured; "
                "only terminal measurements are supported"
            )
        if name in _PARAMETRIC:
            angle = op.params[0]
            if is_affine(angle):
                row, offset = affine_row(angle, param_index)
                trainable = bool(np.any(row))
            else:
                row, offset, trainable = np.zeros(len(param_index)), 0.0, True
                expressions.append(angle_expression(len(offsets), angle, param_index))
            items.append((qubits[0], len(offsets), trainable))
            coeffs.append(row)
            offsets.append(offset)
            kinds.append(name)
        elif name in _DENSE_1Q:
            items.append((qubits[0], _DENSE_1Q[name], False))
        elif name in _MONOMIAL:
            if items and isinstance(items[-1], _Mono):
                items[-1] = _fuse_mono(items[-1], _monomial(name, qubits, n))
            else:
                items.append(_monomial(name, qubits, n))
        else:
            raise UnsupportedCircuitError(
                f"instruction {name!r} is not supported by the exact simulator, which runs "
                f"unitary gates (unrolled to {choices(SUPPORTED_GATES)}) and final measurements"
            )
    if written and written != set(range(circuit.num_clbits)):
        missing = sorted(set(range(circuit.num_clbits)) - written)
        raise UnsupportedCircuitError(f"clbits {missing} are never measured")

    monos = [_realify(item) for item in items if isinstance(item, _Mono)]
    dense = [item[1] for item in items if not isinstance(item, _Mono) and item[1] is not None
             and not isinstance(item[1], int)]
    real = (
        all(kind == "ry" for kind in kinds)
        and all(not np.any(m.imag) for m in dense)
        and all(m.phase is None or np.isrealobj(m.phase) for m in monos)
    )
    constants = [np.eye(2, dtype=complex)]
    ops: list = []
    layer: list = []
    for item in items + [None]:
        if item is None or isinstance(item, _Mono):
            if layer:
                ops.append(_make_layer(layer, len(offsets), constants, kinds, n, real))
                layer = []
            if item is not None:
                ops.append(_realify(item))
        else:
            layer.append(item)
    constants_array = np.array(constants)
    return Program(
        num_qubits=n,
        num_parameters=len(param_index),
        ops=tuple(ops),
        angle_coeffs=np.array(coeffs, dtype=float).reshape(len(offsets), len(param_index)),
        angle_offsets=np.array(offsets, dtype=float),
        angle_kinds=tuple(kinds),
        constants=constants_array.real.copy() if real else constants_array,
        measured=tuple(sorted(measured.items())),
        num_clbits=len(written),
        real=real,
        expressions=tuple(expressions),
    )


_PROGRAMS: CircuitCache[Program] = CircuitCache(_compile)


def _make_layer(gates: list, num_angles: int, constants: list, kinds: list, n: int,
                real: bool) -> _Layer:
    """Group a run of single-qubit gates ``(qubit, column | matrix, trainable)`` into a layer."""
    blocks: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    zero = np.zeros((2, 2), dtype=complex)
    for qubit, what, trainable in gates:
        if isinstance(what, int):
            member = (what, what if trainable else -1, _GENERATORS[kinds[what]] if trainable else zero)
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
    return _Layer(
        qubits=qubits,
        members=members,
        angles=angles,
        generators=generators.real.copy() if real else generators,
        chunks=tuple(chunks),
    )


def _realify(op: _Mono) -> _Mono:
    """Store real phases as float64 so real circuits are simulated in real arithmetic."""
    if op.phase is not None and not np.any(op.phase.imag):
        return _Mono(op.perm, op.phase.real.copy())
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


def _monomial(name: str, qubits: list[int], n: int) -> _Mono:
    basis = np.arange(1 << n)
    if name in _DIAG_1Q:
        bit = (basis >> qubits[0]) & 1
        return _Mono(None, np.where(bit == 1, _DIAG_1Q[name], 1.0).astype(complex))
    if name == "x":
        return _Mono(basis ^ (1 << qubits[0]), None)
    if name == "y":  # Y|0> = i|1>, Y|1> = -i|0>: new[s] = (i if bit(s) else -i) old[s ^ bit]
        bit = (basis >> qubits[0]) & 1
        return _Mono(basis ^ (1 << qubits[0]), np.where(bit == 1, 1j, -1j))
    if name == "swap":
        a, b = qubits
        diff = ((basis >> a) ^ (basis >> b)) & 1
        return _Mono(basis ^ (diff << a) ^ (diff << b), None)
    control, target = qubits
    on = (basis >> control) & 1
    if name == "cz":
        return _Mono(None, np.where(on & (basis >> target) & 1, -1.0, 1.0).astype(complex))
    perm = basis ^ (on << target)
    if name == "cx":
        return _Mono(perm, None)
    # cy: controlled Y, phase from the target bit of the new state
    tbit = (basis >> target) & 1
    return _Mono(perm, np.where(on == 1, np.where(tbit == 1, 1j, -1j), 1.0))


def _fuse_mono(old: _Mono, new: _Mono) -> _Mono:
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
    return _Mono(perm, phase)


# -------------------------------------------------------------------- kernels
def _apply_mono(state: np.ndarray, op: _Mono, adjoint: bool = False) -> np.ndarray:
    if not adjoint:
        out = state if op.perm is None else state[:, :, op.perm]
        return out * op.phase if op.phase is not None else out
    out = state * op.phase.conj() if op.phase is not None else state
    if op.perm is not None:
        undone = np.empty_like(out)
        undone[:, :, op.perm] = out
        out = undone
    return out


def _block_matrices(layer: _Layer, table: np.ndarray) -> np.ndarray:
    """Each block's product of gate matrices, per row: ``(rows, blocks, 2, 2)``."""
    product = table[:, layer.members[0]]
    for members in layer.members[1:]:
        product = np.matmul(table[:, members], product)
    return product


def _kron(blocks: np.ndarray, bits: tuple[int, ...]) -> np.ndarray:
    """The chunk's matrix per row: Kronecker product of its qubits' blocks, lowest qubit last."""
    rows = blocks.shape[0]
    out = None
    for b in bits:
        u = blocks[:, b] if b >= 0 else np.broadcast_to(np.eye(2, dtype=blocks.dtype), (rows, 2, 2))
        if out is None:
            out = u
        else:
            size = 2 * out.shape[-1]
            out = np.einsum("rab,rcd->racbd", u, out).reshape(rows, size, size)
    return out


def _apply_chunk(state: np.ndarray, lo: int, width: int, matrix: np.ndarray) -> np.ndarray:
    """Apply per-row ``matrix`` ``(rows, 2**width, 2**width)`` to qubits ``lo .. lo+width-1``."""
    rows, k, dim = state.shape
    size = 1 << width
    if lo == 0:  # contiguous: one (k * dim / size, size) x (size, size) product per row
        out = np.matmul(state.reshape(rows, k * dim // size, size), np.swapaxes(matrix, -1, -2))
    else:
        view = state.reshape(rows, k * (dim >> (lo + width)), size, 1 << lo)
        out = np.matmul(matrix[:, None], view)
    return out.reshape(rows, k, dim)


def _layer_gradients(layer: _Layer, state: np.ndarray, table: np.ndarray,
                     angle_grads: np.ndarray) -> None:
    """Fill ``angle_grads`` for the layer's trainable rotations from the states after it.

    ``state[:, 0]`` is phi, ``state[:, 1:]`` the adjoint vectors lam. A block on qubit q is
    ``U = G_(m-1) ... G_0``; with ``S_j = G_(m-1) ... G_(j+1)``, ``dU/dtheta_j = B_j U`` where
    ``B_j = S_j A_j S_j^dagger``, so the derivative is ``2 Re <lam| B_j |phi>``
    ``= 2 Re sum_ab B_j[a, b] E[a, b]`` with ``E`` the qubit's cross matrix.
    """
    rows, k1, _ = state.shape
    cross = np.empty((rows, k1 - 1, len(layer.qubits), 2, 2), dtype=state.dtype)
    for lo, width, bits in layer.chunks:
        chunk = _cross(state, lo, width)
        chunk = chunk.reshape(chunk.shape[:2] + (2,) * (2 * width))
        for i, b in enumerate(bits):
            if b >= 0:
                cross[:, :, b] = np.einsum(_partial_trace_spec(width, i), chunk)
    depth = len(layer.members)
    suffix = np.empty((rows, depth) + layer.generators.shape[1:], dtype=table.dtype)
    suffix[:, depth - 1] = _IDENTITY
    for j in range(depth - 1, 0, -1):
        np.matmul(suffix[:, j], table[:, layer.members[j]], out=suffix[:, j - 1])
    b = np.matmul(np.matmul(suffix, layer.generators), np.conj(np.swapaxes(suffix, -1, -2)))
    grads = 2.0 * np.einsum("rjbxy,rkbxy->rkjb", b, cross).real
    mask = layer.angles >= 0
    angle_grads[:, :, layer.angles[mask]] = grads[:, :, mask]


def _cross(state: np.ndarray, lo: int, width: int) -> np.ndarray:
    """``E[r, k, a, b] = sum conj(lam_k[.., a, ..]) phi[.., b, ..]`` over the other qubits."""
    rows, k1, dim = state.shape
    size = 1 << width
    lam = state[:, 1:].conj() if np.iscomplexobj(state) else state[:, 1:]
    if lo == 0:
        lam_view = lam.reshape(rows, k1 - 1, dim // size, size)
        phi_view = state[:, :1].reshape(rows, 1, dim // size, size)
        return np.matmul(np.swapaxes(lam_view, -1, -2), phi_view)
    high = dim >> (lo + width)
    lam_view = lam.reshape(rows, k1 - 1, high, size, 1 << lo)
    phi_view = state[:, :1].reshape(rows, 1, high, size, 1 << lo)
    return np.matmul(lam_view, np.swapaxes(phi_view, -1, -2)).sum(axis=2)


@lru_cache(maxsize=None)
def _partial_trace_spec(width: int, bit: int) -> str:
    """einsum spec keeping qubit ``bit`` of a ``2**width`` square matrix, tracing the others."""
    letters = "abcdefghijklmnop"[:width]
    row, col = list(letters), list(letters)
    row[width - 1 - bit], col[width - 1 - bit] = "y", "z"  # axis order: highest bit first
    shape = "".join(row) + "".join(col)
    return f"...{shape}->...yz"


def _chunks(rows: int, amplitudes_per_row: int):
    step = max(1, _CHUNK_AMPLITUDES // max(1, amplitudes_per_row))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))

