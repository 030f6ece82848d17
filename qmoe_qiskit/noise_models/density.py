"""Exact noisy simulation with reverse-mode gradients: a batched density matrix.

A transpiled circuit (the noise model's basis, or a device's ISA) and an Aer ``NoiseModel``
compile once into a :class:`DensityProgram`: operations on the density matrices of every
binding at once, ``(rows, 2**n, 2**n)`` over the ``n`` qubits the circuit uses. Each gate is
its unitary (Qiskit's ``Operator`` of the instruction; ``rx``/``ry``/``rz``/``p`` with angles
that may depend on the parameters), and after it the channel Aer attaches to that gate: the
``QuantumError`` for that instruction on those qubits, else the all-qubit one (Aer's rule: a
specific error overrides the all-qubit error), read through ``NoiseModel.to_dict`` and
``QuantumError.from_dict`` and turned into a superoperator from its Kraus maps
(``qiskit.quantum_info.Kraus``). Errors on ``measure`` act before the measurement, as in Aer;
readout errors act on the outcome probabilities through their assignment matrices.

Gradients are reverse mode (the adjoint method carried over to channels): the evolution is
linear in ρ, so the adjoint of a probability functional is swept backwards through the
adjoint channels, ``Λ ← Σ K† Λ K``. A rotation ``U = exp(θ G)`` contributes
``∂p/∂θ = 2 Re ⟨Λ, G ρ'⟩`` with ρ' the state right after it, kept from the forward pass. One
forward pass and one backward sweep of the outcome functionals (all but one: the last
gradient is minus the others' sum) serve every parameter at once, so the cost does not grow
with the number of parameters, inputs included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import Kraus, Operator
from qiskit_aer.noise import NoiseModel, QuantumError

from ..errors import UnsupportedCircuitError
from ..primitives.angles import (
    GENERATORS,
    AngleTable,
    chain_rule,
    evaluate_angles,
    refuse_after_measurement,
)
from ..transpile import used_qubits
from .factories import readout_matrices

__all__ = ["DensityProgram", "compile_density", "noise_channels"]

_IGNORED = ("barrier",)
ENGINE_HINT = "use --engine aer (Aer's density-matrix simulator) for it"


def _rotation(kind: str, angles: np.ndarray) -> np.ndarray:
    """``(rows, 2, 2)`` matrices of a rotation kind at ``angles``."""
    rows = len(angles)
    out = np.zeros((rows, 2, 2), dtype=complex)
    if kind == "p":
        out[:, 0, 0] = 1.0
        out[:, 1, 1] = np.exp(1j * angles)
        return out
    c, s = np.cos(angles / 2), np.sin(angles / 2)
    if kind == "rx":
        out[:, 0, 0] = out[:, 1, 1] = c
        out[:, 0, 1] = out[:, 1, 0] = -1j * s
    elif kind == "ry":
        out[:, 0, 0] = out[:, 1, 1] = c
        out[:, 0, 1], out[:, 1, 0] = -s, s
    else:  # rz
        out[:, 0, 0], out[:, 1, 1] = np.exp(-0.5j * angles), np.exp(0.5j * angles)
    return out


@dataclass(frozen=True)
class _Fixed:
    """A fixed superoperator (row-major vectorisation, ``(4**k, 4**k)``) on local ``qargs``."""

    qargs: tuple[int, ...]
    superop: np.ndarray


@dataclass(frozen=True)
class _Rotation:
    """``exp(theta G)`` on one local qubit, ``theta`` the angle column ``column``."""

    qubit: int
    kind: str
    column: int


def noise_channels(noise_model: NoiseModel) -> tuple[dict, dict]:
    """Aer's quantum errors by instruction: ``(specific, all_qubit)`` with ``specific[name]
    [qubits]`` and ``all_qubit[name]`` each a ``QuantumError``, read from the model's public
    dictionary form."""
    specific: dict[str, dict[tuple[int, ...], QuantumError]] = {}
    everywhere: dict[str, QuantumError] = {}
    for entry in noise_model.to_dict()["errors"]:
        if entry["type"] != "qerror":
            continue
        error = QuantumError.from_dict(entry)
        for name in entry["operations"]:
            if "gate_qubits" in entry:
                for qubits in entry["gate_qubits"]:
                    specific.setdefault(name, {})[tuple(int(q) for q in qubits)] = error
            else:
                everywhere[name] = error
    return specific, everywhere


def _superop(error: QuantumError) -> np.ndarray:
    """Row-major superoperator ``Σ K ⊗ conj(K)`` of a CPTP error; refuses anything else."""
    channel = Kraus(error.to_quantumchannel())
    if not channel.is_cptp(atol=1e-10):
        raise UnsupportedCircuitError(
            f"the noise model holds a {error.num_qubits}-qubit error that is not CPTP; the "
            f"fast density-matrix path runs CPTP channels only; {ENGINE_HINT}")
    return sum(np.kron(k, k.conj()) for k in channel.data)


@dataclass(frozen=True)
class DensityProgram:
    """A compiled noisy circuit: see the module docstring."""

    num_qubits: int
    physical: tuple[int, ...]  # physical qubit of each local qubit
    ops: tuple
    num_parameters: int
    angle_coeffs: np.ndarray  # (angles, parameters)
    angle_offsets: np.ndarray
    expressions: tuple
    readout: dict  # physical qubit -> assignment matrix M[true, seen]

    @property
    def dim(self) -> int:
        return 1 << self.num_qubits

    def angles(self, values: np.ndarray) -> np.ndarray:
        return evaluate_angles(values, self.angle_coeffs, self.angle_offsets, self.expressions)

    def bytes_per_row(self, outcomes: int, with_gradients: bool) -> int:
        """Memory one binding needs: its density matrix, the states kept for the backward
        sweep and the adjoint functionals."""
        states = 3 + (sum(isinstance(op, _Rotation) for op in self.ops) if with_gradients
                      else 0) + (outcomes if with_gradients else 0)
        return 16 * self.dim * self.dim * states

    # ---------------------------------------------------------------- forward
    def probabilities(self, values: np.ndarray, physical: Sequence[int]) -> np.ndarray:
        """Outcome probabilities ``(rows, 2**len(physical))`` of the physical qubits
        ``physical`` (the first is the least significant bit), readout error included."""
        rho, _ = self._forward(self._values(values), keep=False)
        return self._observed(_diagonal_marginal(rho, self._local(physical)), physical)

    def probabilities_and_gradients(self, values: np.ndarray, physical: Sequence[int]
                                    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities as :meth:`probabilities` and their gradients ``(rows, parameters,
        outcomes)`` with respect to every parameter (columns: the circuit's parameters)."""
        values = self._values(values)
        local = self._local(physical)
        n = self.num_qubits
        rho, kept = self._forward(values, keep=True)
        probs = _diagonal_marginal(rho, local)
        # The outcome probabilities sum to one under a trace-preserving evolution, so the
        # last outcome's gradient is minus the others': K - 1 functionals are swept.
        lam = _State.from_matrices(_projectors(n, local, len(values))[:, :-1], n)
        angle_grads = np.zeros((len(values), lam.tensor.shape[1], len(self.angle_offsets)))
        for op, saved in zip(reversed(self.ops), reversed(kept)):
            if isinstance(op, _Rotation):
                state, matrix = saved  # the state right after the rotation, and its matrices
                generator = GENERATORS[op.kind]
                if op.kind in _DIAGONAL:  # G ρ: row i scaled by G[i, i]
                    generated = state.scaled(np.broadcast_to(
                        np.diag(generator)[None, :, None], (len(values), 2, 2)), op.qubit)
                else:
                    generated = state.applied(_left_superop(generator), (op.qubit,))
                angle_grads[:, :, op.column] += 2 * lam.inner(generated)
                lam = _rotate(lam, np.conj(np.swapaxes(matrix, -1, -2)), op)
            else:
                lam = lam.applied(op.superop.conj().T, op.qargs)
        grads = chain_rule(angle_grads, values, self.angle_coeffs, self.expressions)
        grads = np.concatenate([grads, -grads.sum(axis=1, keepdims=True)], axis=1)
        grads = np.swapaxes(grads, 1, 2)  # (rows, P, K)
        return self._observed(probs, physical), self._observed(grads, physical)

    def _forward(self, values: np.ndarray, *, keep: bool):
        """The final density matrices ``(rows, D, D)`` and, with ``keep``, per operation the
        state right after each rotation and its matrices (for the backward sweep)."""
        angles = self.angles(values)
        n = self.num_qubits
        start = np.zeros((len(values), 1, self.dim, self.dim), dtype=complex)
        start[:, 0, 0, 0] = 1.0
        rho = _State.from_matrices(start, n)
        kept = []
        for op in self.ops:
            if isinstance(op, _Rotation):
                matrix = _rotation(op.kind, angles[:, op.column])
                rho = _rotate(rho, matrix, op)
                saved = (rho, matrix)
            else:
                rho = rho.applied(op.superop, op.qargs)
                saved = None
            if keep:
                kept.append(saved)
        return rho.matrices()[:, 0], kept

    def _values(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if values.ndim == 1:
            values = values.reshape(1, -1)
        if values.ndim != 2 or values.shape[1] != self.num_parameters:
            raise ValueError(f"expected parameter values of shape (rows, "
                             f"{self.num_parameters}), got {values.shape}")
        return values

    def _local(self, physical: Sequence[int]) -> list[int]:
        index = {q: i for i, q in enumerate(self.physical)}
        missing = [q for q in physical if q not in index]
        if missing:
            raise UnsupportedCircuitError(f"physical qubits {missing} are not used by the "
                                          f"circuit; only used qubits can be read")
        return [index[q] for q in physical]

    def _observed(self, probs: np.ndarray, physical: Sequence[int]) -> np.ndarray:
        """True-outcome probabilities (or their gradients, last axis the outcome) pushed
        through each measured qubit's readout assignment matrix."""
        k = len(physical)
        lead = probs.shape[:-1]
        tensor = probs.reshape(lead + (2,) * k)  # axis len(lead) + j <-> bit k - 1 - j
        for bit, q in enumerate(physical):
            matrix = self.readout.get(q)
            if matrix is None:
                continue
            axis = len(lead) + k - 1 - bit
            tensor = np.moveaxis(np.tensordot(tensor, matrix, axes=([axis], [0])), -1, axis)
        return tensor.reshape(probs.shape)


# -------------------------------------------------------------------- compile
def compile_density(isa: QuantumCircuit, noise_model: NoiseModel,
                    parameters: Sequence | None = None) -> DensityProgram:
    """Compile a transpiled circuit under ``noise_model`` (see the module docstring).
    ``parameters`` orders the value columns (default: ``isa.parameters``). Raises
    :class:`UnsupportedCircuitError`, naming what it cannot run, for mid-circuit measurement,
    reset, instructions without a matrix and non-CPTP errors."""
    table = AngleTable(list(isa.parameters if parameters is None else parameters))
    physical = tuple(used_qubits(isa))
    local = {q: i for i, q in enumerate(physical)}
    n = len(physical)
    specific, everywhere = noise_channels(noise_model)
    ops: list = []
    measured: set[int] = set()

    def channel(name: str, qubits: tuple[int, ...]):
        error = specific.get(name, {}).get(qubits, everywhere.get(name))
        if error is not None:
            ops.append(_Fixed(tuple(local[q] for q in qubits), _superop(error)))

    for inst in isa.data:
        op = inst.operation
        name = op.name
        qubits = tuple(isa.find_bit(q).index for q in inst.qubits)
        if name in _IGNORED:
            continue
        if name == "measure":
            channel(name, qubits)  # Aer: errors on measure act before it
            measured.add(qubits[0])
            continue
        refuse_after_measurement(name, qubits, measured, "the fast density-matrix path runs "
                                 f"final measurements only; {ENGINE_HINT}")
        if name in GENERATORS and op.params and _has_parameters(op.params[0]):
            column, _ = table.add(name, op.params[0])
            ops.append(_Rotation(local[qubits[0]], name, column))
        elif name == "delay":
            pass  # no unitary; its error (if the model has one) follows
        else:
            try:
                matrix = Operator(op).data
            except Exception:  # reset, control flow, anything without a matrix
                raise UnsupportedCircuitError(
                    f"instruction {name!r} has no matrix; the fast density-matrix path runs "
                    f"gates and final measurements only; {ENGINE_HINT}") from None
            ops.append(_Fixed(tuple(local[q] for q in qubits),
                              np.kron(matrix, matrix.conj())))
        channel(name, qubits)
    readout = {q: m for q, m in zip(physical, readout_matrices(noise_model, physical))
               if m is not None}
    return DensityProgram(num_qubits=n, physical=physical, ops=tuple(_merge(ops)),
                          num_parameters=len(table.param_index), angle_coeffs=table.coeffs,
                          angle_offsets=table.offsets, expressions=tuple(table.expressions),
                          readout=readout)


def _has_parameters(angle) -> bool:
    return bool(getattr(angle, "parameters", None))


def _merge(ops: list) -> list:
    """Consecutive fixed operations on the same qubits multiply into one superoperator."""
    merged: list = []
    for op in ops:
        last = merged[-1] if merged else None
        if isinstance(op, _Fixed) and isinstance(last, _Fixed) and last.qargs == op.qargs:
            merged[-1] = _Fixed(op.qargs, op.superop @ last.superop)
        else:
            merged.append(op)
    return merged


# -------------------------------------------------------------------- kernels
class _State:
    """Density matrices (or adjoint functionals) of every row, ``(rows, K) + (2,) * 2n``, held
    in whatever axis order the last operation left them: ``axes[a]`` is the array axis of
    logical bit ``a`` (``q``: the row bit of qubit ``q``; ``n + q``: its column bit). An
    operation moves its bit axes last, makes one copy and one (batched) matrix product, and
    leaves them there; nothing is moved back. Diagonal rotations are one elementwise product.
    """

    __slots__ = ("tensor", "axes", "n")

    def __init__(self, tensor: np.ndarray, axes: list[int], n: int):
        self.tensor, self.axes, self.n = tensor, axes, n

    @classmethod
    def from_matrices(cls, matrices: np.ndarray, n: int) -> "_State":
        """From ``(rows, K, D, D)`` (row index, then column index; qubit 0 least significant)."""
        rows, k = matrices.shape[:2]
        axes = [2 + n - 1 - q for q in range(n)] + [2 + 2 * n - 1 - q for q in range(n)]
        return cls(matrices.reshape((rows, k) + (2,) * (2 * n)), axes, n)

    def matrices(self) -> np.ndarray:
        """Back to ``(rows, K, D, D)``."""
        n = self.n
        order = [0, 1] + [self.axes[n - 1 - j] for j in range(n)] + \
            [self.axes[2 * n - 1 - j] for j in range(n)]
        rows, k = self.tensor.shape[:2]
        return np.transpose(self.tensor, order).reshape(rows, k, 1 << n, 1 << n)

    def applied(self, superop: np.ndarray, qargs: tuple[int, ...]) -> "_State":
        """A superoperator (row-major vectorisation; ``(4**k, 4**k)``, or per row
        ``(rows, 4**k, 4**k)``) on local ``qargs``."""
        n, k = self.n, len(qargs)
        logical = [q for q in reversed(qargs)] + [n + q for q in reversed(qargs)]
        source = [self.axes[a] for a in logical]
        moved = np.moveaxis(self.tensor, source, list(range(-2 * k, 0)))
        rows = moved.shape[0]
        flat = moved.reshape(rows, -1, 4 ** k)  # the one copy
        if superop.ndim == 2:
            out = flat @ superop.T
        else:
            out = np.matmul(flat, np.swapaxes(superop, -1, -2))
        others = sorted(p for p in range(2, 2 + 2 * n) if p not in source)
        position = {p: 2 + i for i, p in enumerate(others)}
        axes = [position.get(p, 0) for p in self.axes]
        for i, a in enumerate(logical):
            axes[a] = 2 + 2 * n - 2 * k + i
        return _State(out.reshape(moved.shape), axes, n)

    def scaled(self, factors: np.ndarray, qubit: int) -> "_State":
        """``ρ[.., i, .., j, ..] * factors[row, i, j]`` on the row and column bit of ``qubit``."""
        row_axis, col_axis = self.axes[qubit], self.axes[self.n + qubit]
        if row_axis > col_axis:
            factors = np.swapaxes(factors, -1, -2)
        shape = [self.tensor.shape[0]] + [1] * (self.tensor.ndim - 1)
        shape[min(row_axis, col_axis)] = shape[max(row_axis, col_axis)] = 2
        return _State(self.tensor * factors.reshape(shape), self.axes, self.n)

    def inner(self, other: "_State") -> np.ndarray:
        """``Re Σ conj(self) ⊙ other`` per row and functional: ``(rows, K)`` (``other`` has
        ``K = 1``)."""
        order = [0, 1] + [other.axes[a] for a in sorted(range(2 * self.n),
                                                          key=lambda a: self.axes[a])]
        matched = np.transpose(other.tensor, order)
        rows, k = self.tensor.shape[:2]
        return np.einsum("rkx,rx->rk", self.tensor.reshape(rows, k, -1).conj(),
                         matched.reshape(rows, -1)).real


_DIAGONAL = ("rz", "p")


def _rotate(state: _State, matrices: np.ndarray, op: _Rotation) -> _State:
    """``U ρ U†`` with per-row ``U`` ``(rows, 2, 2)`` on the rotation's qubit."""
    if op.kind in _DIAGONAL:  # ρ[i, j] u_i conj(u_j)
        diagonal = matrices[:, [0, 1], [0, 1]]
        return state.scaled(diagonal[:, :, None] * diagonal[:, None, :].conj(), op.qubit)
    superops = np.einsum("rab,rcd->racbd", matrices, matrices.conj()).reshape(-1, 4, 4)
    return state.applied(superops, (op.qubit,))


def _left_superop(matrix: np.ndarray) -> np.ndarray:
    """The superoperator of ``ρ -> M ρ`` (row-major vectorisation: ``M ⊗ I``)."""
    return np.kron(matrix, np.eye(2))


def _diagonal_marginal(rho: np.ndarray, local: list[int]) -> np.ndarray:
    """Probabilities ``(rows, 2**len(local))`` of local qubits (the first least significant)."""
    diag = np.einsum("rii->ri", rho).real
    n = int(np.log2(rho.shape[-1]))
    tensor = diag.reshape((len(diag),) + (2,) * n)
    others = tuple(1 + n - 1 - q for q in range(n) if q not in local)
    if others:
        tensor = tensor.sum(axis=others)
    kept = [q for q in reversed(range(n)) if q in local]
    order = [kept.index(q) for q in reversed(local)]
    tensor = np.transpose(tensor, (0, *(1 + i for i in order)))
    return np.clip(tensor.reshape(len(diag), -1), 0.0, None)


def _projectors(n: int, local: list[int], rows: int) -> np.ndarray:
    """``(rows, 2**m, D, D)``: the diagonal projector of each outcome of the local qubits."""
    basis = np.arange(1 << n)
    outcome = np.zeros(1 << n, dtype=np.int64)
    for bit, q in enumerate(local):
        outcome |= ((basis >> q) & 1) << bit
    out = np.zeros((1 << len(local), 1 << n, 1 << n), dtype=complex)
    out[outcome, basis, basis] = 1.0
    return np.broadcast_to(out, (rows,) + out.shape).copy()
