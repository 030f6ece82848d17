"""Batched exact statevector simulation with adjoint gradients.

A circuit is compiled once into a :class:`Program`: a flat list of operations on a state of
shape ``(rows, K, 2**n)`` (``rows`` parameter bindings, ``K`` states carried per row), with every
rotation angle an affine function of the circuit's parameters. Runs of fixed permutation/diagonal
gates (CX, CZ, X, Z, S, T, SWAP, ...) are fused into one gather-and-scale step.

Gradients use the adjoint method: the final state and the vectors ``O|psi>`` for all requested
observables are swept backwards through the circuit together, so the cost is about
``(K + 1)`` state evolutions for ``K`` observables, independent of the number of parameters.
Amplitude order follows Qiskit: qubit 0 is the least significant bit of the basis index.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from qiskit.circuit import ParameterExpression, QuantumCircuit

from ..errors import UnsupportedCircuitError, choices

__all__ = ["Program", "compile_circuit", "SUPPORTED_GATES"]

# Gates whose angle is a trainable or input parameter: name -> generator kind.
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

# Amplitudes per chunk when a batch is split to bound memory (256 MiB of complex128).
_CHUNK_AMPLITUDES = 1 << 24


@dataclass(frozen=True)
class _Mono:
    """``new[s] = phase[s] * old[perm[s]]`` (either part may be ``None``)."""

    perm: np.ndarray | None
    phase: np.ndarray | None


@dataclass(frozen=True)
class _Dense:
    qubit: int
    matrix: np.ndarray


@dataclass(frozen=True)
class _Rot:
    qubit: int
    kind: str  # one of _PARAMETRIC
    angle: int  # column of the angle matrix
    trainable: bool  # the angle depends on a parameter


@dataclass(frozen=True)
class Program:
    """A compiled circuit: see the module docstring."""

    num_qubits: int
    num_parameters: int
    ops: tuple
    angle_coeffs: np.ndarray  # (num_angles, num_parameters)
    angle_offsets: np.ndarray  # (num_angles,)
    measured: tuple[tuple[int, int], ...]  # (qubit, clbit) pairs
    num_clbits: int
    real: bool  # every gate is real: states stay real and are held as float64

    @property
    def dtype(self):
        return float if self.real else complex

    @property
    def dim(self) -> int:
        return 1 << self.num_qubits

    # ---------------------------------------------------------------- forward
    def angles(self, values: np.ndarray) -> np.ndarray:
        return values @ self.angle_coeffs.T + self.angle_offsets

    def states(self, values: np.ndarray) -> np.ndarray:
        """Final statevectors, shape ``(rows, 2**n)``, for parameter rows ``values``."""
        values = self._check_values(values)
        out = np.empty((len(values), self.dim), dtype=complex)
        for sl in _chunks(len(values), self.dim):
            out[sl] = self._evolve(self.angles(values[sl]))[:, 0, :]
        return out

    def _matrices(self, angles: np.ndarray) -> np.ndarray:
        """Every rotation's 2x2 matrix for every row: shape ``(rows, num_angles, 2, 2)``."""
        half = 0.5 * angles
        c, s = np.cos(half), np.sin(half)
        mats = np.zeros(angles.shape + (2, 2), dtype=self.dtype)
        for kind, cols in self._columns_by_kind.items():
            cc, ss = c[:, cols], s[:, cols]
            if kind == "ry":
                mats[:, cols] = np.stack([np.stack([cc, -ss], -1), np.stack([ss, cc], -1)], -2)
            elif kind == "rx":
                mats[:, cols] = np.stack(
                    [np.stack([cc, -1j * ss], -1), np.stack([-1j * ss, cc], -1)], -2
                )
            elif kind == "rz":
                mats[:, cols, 0, 0] = cc - 1j * ss
                mats[:, cols, 1, 1] = cc + 1j * ss
            else:  # p
                mats[:, cols, 0, 0] = 1.0
                mats[:, cols, 1, 1] = np.exp(1j * angles[:, cols])
        return mats

    @cached_property
    def _columns_by_kind(self) -> dict[str, list[int]]:
        by_kind: dict[str, list[int]] = {}
        for op in self.ops:
            if isinstance(op, _Rot):
                by_kind.setdefault(op.kind, []).append(op.angle)
        return by_kind

    def _evolve(self, angles: np.ndarray) -> np.ndarray:
        mats = self._matrices(angles)
        state = np.zeros((len(angles), 1, self.dim), dtype=self.dtype)
        state[:, 0, 0] = 1.0
        for op in self.ops:
            state = _apply(state, op, mats)
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
            angles = self.angles(values[sl])
            psi = self._evolve(angles)[:, 0, :]
            lam = np.stack([obs.apply(psi) for obs in observables], axis=1)
            evs[sl] = np.einsum("rs,rks->rk", psi.conj(), lam).real
            grads[sl] = self._adjoint(psi, lam, angles)
        return evs, grads

    def _adjoint(self, psi: np.ndarray, lam: np.ndarray, angles: np.ndarray) -> np.ndarray:
        rows, k, _ = lam.shape
        angle_grads = np.zeros((rows, k, len(self.angle_offsets)))
        inverse = np.conj(np.swapaxes(self._matrices(angles), -1, -2))
        state = np.concatenate([psi[:, None, :], lam], axis=1)
        first = self._first_trainable
        for i in range(len(self.ops) - 1, first - 1, -1):
            op = self.ops[i]
            if isinstance(op, _Rot) and op.trainable:
                angle_grads[:, :, op.angle] = _rotation_gradient(state, op)
            if i > first:  # gates before the first trainable one need no undoing
                state = _apply(state, op, inverse, adjoint=True)
        return angle_grads @ self.angle_coeffs

    @cached_property
    def _first_trainable(self) -> int:
        positions = [i for i, op in enumerate(self.ops) if isinstance(op, _Rot) and op.trainable]
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
            signs = 1 - 2 * (_popcount(source & z_mask) & 1)
            phase = complex(coeff) * (1j**num_y) * signs
            terms.append((None if x_mask == 0 else source, phase))
        return cls(terms)

    def apply(self, psi: np.ndarray) -> np.ndarray:
        out = psi * self._diag if self._diag is not None else np.zeros_like(psi)
        for perm, phase in self._offdiag:
            out += phase * psi[:, perm]
        return out


# -------------------------------------------------------------------- compile
_CACHE: dict[int, tuple[weakref.ref, int, Program]] = {}


def compile_circuit(circuit: QuantumCircuit) -> Program:
    """Compile ``circuit`` (cached per circuit object) for batched simulation.

    Parameter columns follow ``circuit.parameters``. Raises :class:`UnsupportedCircuitError`
    naming the first gate, measurement pattern or parameter expression it cannot run.
    """
    key = id(circuit)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is circuit and hit[1] == len(circuit.data):
        return hit[2]
    program = _compile(circuit)
    _CACHE[key] = (weakref.ref(circuit), len(circuit.data), program)
    if len(_CACHE) > 256:
        for stale in [k for k, v in _CACHE.items() if v[0]() is None]:
            del _CACHE[stale]
    return program


def _compile(circuit: QuantumCircuit) -> Program:
    n = circuit.num_qubits
    if n > 24:
        raise UnsupportedCircuitError(
            f"the exact simulator holds 2**n amplitudes per sample; {n} qubits is too many (max 24)"
        )
    qubit_index = {q: i for i, q in enumerate(circuit.qubits)}
    clbit_index = {c: i for i, c in enumerate(circuit.clbits)}
    param_index = {p: i for i, p in enumerate(circuit.parameters)}
    ops: list = []
    coeffs: list[np.ndarray] = []
    offsets: list[float] = []
    measured: dict[int, int] = {}
    written: set[int] = set()

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
            row, offset = _affine(op.params[0], param_index, name)
            ops.append(_Rot(qubits[0], name, len(offsets), bool(np.any(row))))
            coeffs.append(row)
            offsets.append(offset)
        elif name in _DENSE_1Q:
            ops.append(_Dense(qubits[0], _DENSE_1Q[name]))
        elif name in _MONOMIAL:
            _append_mono(ops, _monomial(name, qubits, n))
        else:
            raise UnsupportedCircuitError(
                f"gate {name!r} is not supported by the exact simulator; supported gates: "
                f"{choices(SUPPORTED_GATES)} (transpile the circuit to these first)"
            )
    if written and written != set(range(circuit.num_clbits)):
        missing = sorted(set(range(circuit.num_clbits)) - written)
        raise UnsupportedCircuitError(f"clbits {missing} are never measured")
    ops = [_realify(op) for op in ops]
    real = all(
        (op.kind == "ry") if isinstance(op, _Rot)
        else np.isrealobj(op.matrix) if isinstance(op, _Dense)
        else op.phase is None or np.isrealobj(op.phase)
        for op in ops
    )
    return Program(
        num_qubits=n,
        num_parameters=len(param_index),
        ops=tuple(ops),
        angle_coeffs=np.array(coeffs, dtype=float).reshape(len(offsets), len(param_index)),
        angle_offsets=np.array(offsets, dtype=float),
        measured=tuple(sorted(measured.items())),
        num_clbits=len(written),
        real=real,
    )


def _realify(op):
    """Store real phases / matrices as float64 so real circuits are simulated in real arithmetic."""
    if isinstance(op, _Mono) and op.phase is not None and not np.any(op.phase.imag):
        return _Mono(op.perm, op.phase.real.copy())
    if isinstance(op, _Dense) and not np.any(op.matrix.imag):
        return _Dense(op.qubit, op.matrix.real.copy())
    return op


def _affine(angle, param_index: dict, gate: str) -> tuple[np.ndarray, float]:
    """Coefficients and offset of an angle that is affine in the circuit's parameters."""
    row = np.zeros(len(param_index))
    if not isinstance(angle, ParameterExpression):
        return row, float(angle)
    for param in angle.parameters:
        slope = angle.gradient(param)
        if isinstance(slope, ParameterExpression) and slope.parameters:
            raise UnsupportedCircuitError(
                f"the angle {angle} of gate {gate!r} is not affine in its parameters; "
                "the exact simulator supports angles of the form a*x + b*y + c"
            )
        row[param_index[param]] = float(np.real(complex(slope)))
    offset = angle.bind({p: 0.0 for p in angle.parameters}) if angle.parameters else angle
    return row, float(np.real(complex(offset)))


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


def _append_mono(ops: list, new: _Mono) -> None:
    """Fuse ``new`` into a preceding monomial op: (d2,p2)∘(d1,p1) = (d2 * d1[p2], p1[p2])."""
    if not ops or not isinstance(ops[-1], _Mono):
        ops.append(new)
        return
    old = ops.pop()
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
    ops.append(_Mono(perm, phase))


# -------------------------------------------------------------------- kernels
def _apply(state: np.ndarray, op, mats: np.ndarray, adjoint: bool = False) -> np.ndarray:
    """Apply ``op`` (its adjoint if ``adjoint``; then ``mats`` holds the inverse matrices)."""
    if isinstance(op, _Mono):
        if not adjoint:
            out = state if op.perm is None else state[:, :, op.perm]
            return out * op.phase if op.phase is not None else out
        out = state * op.phase.conj() if op.phase is not None else state
        if op.perm is not None:
            undone = np.empty_like(out)
            undone[:, :, op.perm] = out
            out = undone
        return out
    if isinstance(op, _Dense):
        matrix = op.matrix.conj().T if adjoint else op.matrix
        return _apply_1q(state, op.qubit, matrix)
    rows = state.shape[0]
    return _apply_1q(state, op.qubit, mats[:, op.angle].reshape(rows, 1, 1, 2, 2))


def _apply_1q(state: np.ndarray, qubit: int, matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (``(2, 2)`` or per row ``(rows, 1, 1, 2, 2)``) on ``qubit`` of every state."""
    rows, k, dim = state.shape
    view = state.reshape(rows, k, dim >> (qubit + 1), 2, 1 << qubit)
    if matrix.dtype != state.dtype and np.iscomplexobj(matrix):
        view = view.astype(complex)
    return np.matmul(matrix, view).reshape(rows, k, dim)


# dU/dtheta = A U for each rotation kind.
_GENERATORS = {
    "rx": np.array([[0, -0.5j], [-0.5j, 0]]),
    "ry": np.array([[0, -0.5], [0.5, 0]]),
    "rz": np.array([[-0.5j, 0], [0, 0.5j]]),
    "p": np.array([[0, 0], [0, 1j]]),
}


def _rotation_gradient(state: np.ndarray, op: _Rot) -> np.ndarray:
    """``2 Re <lam| A |phi>`` per row and observable; ``state[:, 0]`` is phi, the rest lam."""
    rows, k, dim = state.shape
    generator = _GENERATORS[op.kind]
    if np.isrealobj(state):
        generator = generator.real
    a_phi = _apply_1q(state[:, :1], op.qubit, generator)  # (rows, 1, dim)
    overlap = np.matmul(state[:, 1:].conj(), a_phi.reshape(rows, dim, 1))  # (rows, k - 1, 1)
    return 2.0 * overlap[..., 0].real


def _popcount(x: np.ndarray) -> np.ndarray:
    count = np.zeros_like(x)
    while np.any(x):
        count += x & 1
        x = x >> 1
    return count


def _chunks(rows: int, amplitudes_per_row: int):
    step = max(1, _CHUNK_AMPLITUDES // max(1, amplitudes_per_row))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))
