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

Before anything runs, each qubit's one-qubit gates, channels and rotations between two
multi-qubit operations that touch it are fused into the next such operation (``_fuse``), so
that one pass over the density matrices applies a block of gates and their noise: per row a
product of ``(4**k, 4**k)`` superoperators on ``k <= 2`` qubits. Rows are evaluated in blocks
of about :data:`BLOCK_BYTES` of density matrices, so that wide states stay in cache.

Gradients are reverse mode (the adjoint method carried over to channels): the evolution is
linear in ρ, so the adjoint of a probability functional is swept backwards through the
adjoint channels, ``Λ ← B† Λ``. A fused operation ``B = F_m … F_1`` contributes, for each of
its rotations ``F_j = exp(θ G)`` (superoperator derivative ``D_j F_j``),
``∂p/∂θ = Re Σ (F_m … F_{j+1} D_j F_j … F_1) ⊙ C`` with ``C[a, b] = Σ conj(Λ[a, x]) ρ[b, x]``
the cross matrix of the functional after it and the state before it (kept from the forward
pass), over the operation's own indices ``a``, ``b``. One forward pass and one backward sweep
of the outcome functionals (all but one: the last gradient is minus the others' sum) serve
every parameter at once, so the cost does not grow with the number of parameters, inputs
included.
"""

from __future__ import annotations

from collections.abc import Sequence
import functools
from dataclasses import dataclass, field, replace

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

__all__ = ["DensityProgram", "compile_density", "noise_channels", "light_cone"]

_IGNORED = ("barrier",)
# Density matrices evaluated in one block of rows (bytes): 0.5-4 MiB measured alike on the
# 2-core machine of benchmarks/noisy_engines.py (1 MiB of L2 cache, 32 MiB of L3).
BLOCK_BYTES = 1 << 20
# Up to this width an operation reorders the density matrices by a kept gather index (4**n
# int32 each, GATHER_BYTES of them at most: 64 at 10 qubits); wider, by a strided copy.
GATHER_MAX_QUBITS = 10
GATHER_BYTES = 256 << 20
# From this width one-qubit operations are folded into the two-qubit operation after them (one
# pass over the state for both; per row 16x16 products instead of 4x4); narrower, the products
# cost more than the passes they save. Measured (paper router, every qubit read, batch 32, one
# thread; a training step folded / not): 3 qubits 5.9 / 5.1 ms, 4 qubits 8.0 / 8.0, 5 qubits
# 13.0 / 16.4, 8 qubits 495 / 1048.
FOLD_MIN_QUBITS = 5
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


@dataclass(frozen=True)
class _Factor:
    """A rotation inside a fused operation: its kind, angle column, the map from its one-qubit
    superoperator's 16 entries into the operation's space (``None`` on one qubit) and the
    derivative ``D`` (``dS/dθ = D S``) in that space."""

    kind: str
    column: int
    embedding: np.ndarray | None  # see _embedding
    derivative: np.ndarray

    def superops(self, angles: np.ndarray) -> np.ndarray:
        """``(rows, 4**k, 4**k)``: the rotation's superoperator at each row's angle."""
        u = _rotation(self.kind, angles[:, self.column])
        s = (u[:, :, None, :, None] * u.conj()[:, None, :, None, :]).reshape(-1, 4, 4)
        s = (_PAULI.conj().T @ s @ _PAULI).real.reshape(-1, 16)
        if self.embedding is None:
            return s.reshape(-1, 4, 4)
        return _embedded(s, self.embedding)


@dataclass(frozen=True)
class _Fused:
    """The gates, channels and rotations on one or two local qubits between two multi-qubit
    operations that touch them, as one superoperator per row: ``factors`` in time order, each
    a fixed ``(4**k, 4**k)`` matrix or a :class:`_Factor`."""

    qargs: tuple[int, ...]
    factors: tuple

    def superops(self, angles: np.ndarray, keep: bool):
        """The product ``(rows, 4**k, 4**k)``, and with ``keep`` each factor's matrices and
        the product up to each rotation (what the gradient needs)."""
        product, matrices, prefixes = None, [], []
        for factor in self.factors:
            matrix = factor.superops(angles) if isinstance(factor, _Factor) else factor
            product = matrix if product is None else matrix @ product
            if keep:
                matrices.append(matrix)
                prefixes.append(product)
        return product, (matrices, prefixes)

    def gradients(self, cross: np.ndarray, matrices: list, prefixes: list, out: np.ndarray):
        """Add ``Re Σ dB ⊙ C`` for each rotation to ``out[:, :, column]``: ``cross`` ``C``
        ``(rows, K, 4**k, 4**k)`` between the functionals after the operation and the state
        before it; ``dB = (factors after) D (product up to the rotation)``."""
        after = None
        for factor, matrix, prefix in zip(reversed(self.factors), reversed(matrices),
                                          reversed(prefixes)):
            if isinstance(factor, _Factor):
                derivative = factor.derivative @ prefix
                if after is not None:
                    derivative = after @ derivative
                out[:, :, factor.column] += np.einsum("rab,rkab->rk", derivative, cross).real
            after = matrix if after is None else after @ matrix


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
    return _pauli(sum(np.kron(k, k.conj()) for k in channel.data), error.num_qubits)


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
    _restricted: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def dim(self) -> int:
        return 1 << self.num_qubits

    def angles(self, values: np.ndarray) -> np.ndarray:
        return evaluate_angles(values, self.angle_coeffs, self.angle_offsets, self.expressions)

    @functools.cached_property
    def fused(self) -> tuple:
        """The operations as they run (:func:`_fuse`): one-qubit gates, channels and rotations
        join the two-qubit operation that follows them from ``FOLD_MIN_QUBITS`` qubits, and
        otherwise run as one operation per qubit between two multi-qubit ones."""
        return tuple(_fuse(self.ops, self.num_qubits,
                           fold=self.num_qubits >= FOLD_MIN_QUBITS))

    def restricted(self, physical: Sequence[int]) -> "DensityProgram":
        """This program on the light cone of the physical qubits ``physical`` only: going
        backwards from them, an operation is kept when it touches a qubit already in the cone,
        and adds its qubits to it. The operations left out are channels on qubits that never
        reach the ones read; every channel is trace preserving, so tracing those qubits out
        leaves the read qubits' probabilities, and their gradients, exactly as they were (the
        parameters of what is left out get zero gradients). Remembered per set of qubits."""
        key = tuple(physical)
        hit = self._restricted.get(key)
        if hit is None:
            cone = set(self._local(key))
            kept = []
            for op in reversed(self.ops):
                if cone.intersection(_qargs(op)):
                    kept.append(op)
                    cone.update(_qargs(op))
            order = sorted(cone)
            renumber = {q: i for i, q in enumerate(order)}
            ops = tuple(replace(op, qubit=renumber[op.qubit]) if isinstance(op, _Rotation)
                        else replace(op, qargs=tuple(renumber[q] for q in op.qargs))
                        for op in reversed(kept))
            hit = replace(self, num_qubits=len(order), ops=ops,
                          physical=tuple(self.physical[q] for q in order), _restricted={})
            if len(self._restricted) >= 64:
                self._restricted.clear()
            self._restricted[key] = hit
        return hit

    def block_rows(self) -> int:
        """Rows evaluated together: as many as keep one block's density matrices within
        :data:`BLOCK_BYTES` (fewer, larger NumPy calls on narrow circuits; states that stay in
        cache on wide ones)."""
        return max(1, BLOCK_BYTES // (8 * self.dim * self.dim))

    def bytes_per_row(self, outcomes: int, with_gradients: bool) -> int:
        """Memory one binding needs: its density matrix, the states kept for the backward
        sweep and the adjoint functionals."""
        states = 3 + (sum(isinstance(op, _Fused) for op in self.fused) if with_gradients
                      else 0) + (outcomes if with_gradients else 0)
        return 8 * self.dim * self.dim * states

    # ---------------------------------------------------------------- forward
    def probabilities(self, values: np.ndarray, physical: Sequence[int]) -> np.ndarray:
        """Outcome probabilities ``(rows, 2**len(physical))`` of the physical qubits
        ``physical`` (the first is the least significant bit), readout error included."""
        rho, _ = self._forward(self._values(values), keep=False)
        return self._observed(_marginal(_probabilities(rho), self._local(physical)), physical)

    def probabilities_and_gradients(self, values: np.ndarray, physical: Sequence[int]
                                    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities as :meth:`probabilities` and their gradients ``(rows, parameters,
        outcomes)`` with respect to every parameter (columns: the circuit's parameters)."""
        values = self._values(values)
        local = self._local(physical)
        n = self.num_qubits
        rho, kept = self._forward(values, keep=True)
        probs = _marginal(_probabilities(rho), local)
        # The outcome probabilities sum to one under a trace-preserving evolution, so the
        # last outcome's gradient is minus the others': K - 1 functionals are swept.
        lam = _State.from_matrices(_projectors(n, local, len(values))[:, :-1], n)
        angle_grads = np.zeros((len(values), lam.tensor.shape[1], len(self.angle_offsets)))
        for op, saved in zip(reversed(self.fused), reversed(kept)):
            if isinstance(op, _Fused):
                # Both in one layout: the cross matrix C[a, b] = Σ conj(Λ[a, x]) ρ[b, x]
                # with the state before the operation, then Λ <- B† Λ.
                before, rest, product, (matrices, prefixes) = saved
                flat, _ = lam.layout(op.qargs, rest)
                cross = np.matmul(np.swapaxes(flat, -1, -2), before)
                op.gradients(cross, matrices, prefixes, angle_grads)
                lam = _State.from_layout(_times(flat, np.swapaxes(product, -1, -2)), rest,
                                         op.qargs, n)
            else:
                lam = lam.applied(op.superop.T, op.qargs)
        grads = chain_rule(angle_grads, values, self.angle_coeffs, self.expressions)
        grads = np.concatenate([grads, -grads.sum(axis=1, keepdims=True)], axis=1)
        grads = np.swapaxes(grads, 1, 2)  # (rows, P, K)
        return self._observed(probs, physical), self._observed(grads, physical)

    def _forward(self, values: np.ndarray, *, keep: bool):
        """The final density matrices ``(rows, D, D)`` and, with ``keep``, per fused
        operation the state before it, its product and its factors (for the backward sweep)."""
        angles = self.angles(values)
        n = self.num_qubits
        # |0><0| on each qubit is (I + Z) / 2: Pauli coordinates 2**(-n/2) on every string
        # of I and Z, the diagonal of the matrix form.
        start = np.zeros((len(values), 1, self.dim, self.dim))
        start[:, 0, np.arange(self.dim), np.arange(self.dim)] = 2.0 ** (-n / 2)
        rho = _State.from_matrices(start, n)
        kept = []
        for op in self.fused:
            if isinstance(op, _Fused):
                product, factors = op.superops(angles, keep)
                flat, rest = rho.layout(op.qargs)
                saved = (flat, rest, product, factors)
                rho = _State.from_layout(_times(flat, product), rest, op.qargs, n)
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
                              _pauli(np.kron(matrix, matrix.conj()), len(qubits))))
        channel(name, qubits)
    readout = {q: m for q, m in zip(physical, readout_matrices(noise_model, physical))
               if m is not None}
    return DensityProgram(num_qubits=n, physical=physical, ops=tuple(_merge(ops)),
                          num_parameters=len(table.param_index), angle_coeffs=table.coeffs,
                          angle_offsets=table.offsets, expressions=tuple(table.expressions),
                          readout=readout)


def _qargs(op) -> tuple[int, ...]:
    """The local qubits a compiled operation acts on."""
    return (op.qubit,) if isinstance(op, _Rotation) else op.qargs


def light_cone(isa: QuantumCircuit, physical: Sequence[int]) -> list[int]:
    """The physical qubits whose operations can reach the qubits ``physical`` by the end of
    ``isa`` (what :meth:`DensityProgram.restricted` keeps), read off the circuit alone."""
    cone = set(physical)
    for inst in reversed(isa.data):
        if inst.operation.name in _IGNORED:
            continue
        qubits = {isa.find_bit(q).index for q in inst.qubits}
        if cone & qubits:
            cone |= qubits
    return sorted(cone)


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


# Columns: the normalised Paulis I, X, Y, Z / sqrt(2), row-major vectorised; Pauli p of a qubit
# sits where its (row bit, column bit) = divmod(p, 2) would.
_PAULI = np.array([[1, 0, 0, 1], [0, 1, -1j, 0], [0, 1, 1j, 0], [1, 0, 0, -1]]) / np.sqrt(2)


@functools.lru_cache(maxsize=None)
def _pauli_basis(k: int) -> np.ndarray:
    """``W``: the change to Pauli coordinates on ``k`` local qubits (``vec ρ = W c``), unitary."""
    out = np.eye(4 ** k, dtype=complex)
    for position in range(k):
        out = out @ (_embedded(_PAULI.reshape(16), _embedding(position, k)) if k > 1
                     else _PAULI)
    return out


def _pauli(superop: np.ndarray, k: int) -> np.ndarray:
    """A superoperator (row-major vectorisation) on ``k`` qubits in Pauli coordinates: ``W† S
    W``, real for a map that preserves Hermiticity (every gate, channel and generator here;
    the density matrices and functionals are then real, and each product costs a quarter of
    its complex form)."""
    basis = _pauli_basis(k)
    out = basis.conj().T @ superop @ basis
    if np.abs(out.imag).max(initial=0.0) > 1e-12:
        raise UnsupportedCircuitError("a gate or error of the noise model does not preserve "
                                      f"Hermiticity; {ENGINE_HINT}")
    return out.real


def _fuse(ops: list, n: int, fold: bool = True) -> list:
    """Fewer, larger operations: each qubit's one-qubit gates, channels and rotations between
    two multi-qubit operations that touch it join the next such operation (on at most two
    qubits), or the last one when none follows, or stand alone on a qubit that has none.
    Without ``fold`` they stand alone, one operation per qubit between two multi-qubit ones
    (per row a product of 4x4 matrices instead of 16x16: cheaper where the state is small).
    Operations on disjoint qubits commute, so this is exact; each fused operation is one pass
    over the density matrices instead of one per gate."""
    pending: dict[int, list] = {q: [] for q in range(n)}
    groups: list[tuple[tuple[int, ...], list]] = []
    last: dict[int, int] = {}  # qubit -> its last multi-qubit group

    def take(q: int, qargs: tuple[int, ...]) -> list:
        items, pending[q] = [(qargs.index(q), op) for op in pending[q]], []
        return items

    for op in ops:
        qargs = _qargs(op)
        if len(qargs) == 1:
            pending[qargs[0]].append(op)
            continue
        if len(qargs) > 2 or not fold:  # its qubits' pending operations stand alone before it
            groups.extend(((q,), take(q, (q,))) for q in qargs if pending[q])
            groups.append((qargs, [(None, op)]))
            for q in qargs:  # what follows on these qubits may not join an earlier group
                last.pop(q, None)
            continue
        items = [item for q in qargs for item in take(q, qargs)]
        groups.append((qargs, items + [(None, op)]))
        last.update({q: len(groups) - 1 for q in qargs})
    for q in range(n):
        if pending[q]:
            if fold and q in last:
                qargs, items = groups[last[q]]
                items.extend(take(q, qargs))
            else:
                groups.append(((q,), take(q, (q,))))
    return [_fused(qargs, items) for qargs, items in groups]


def _fused(qargs: tuple[int, ...], items: list):
    """One group of :func:`_fuse` as a :class:`_Fixed` (no rotation) or a :class:`_Fused`
    (consecutive fixed factors multiplied together)."""
    k = len(qargs)
    factors: list = []
    for position, op in items:
        if isinstance(op, _Rotation):
            embedding = None if k == 1 else _embedding(position, k)
            generator = GENERATORS[op.kind]
            derivative = _pauli(np.kron(generator, np.eye(2))
                                + np.kron(np.eye(2), generator.conj()), 1)
            if embedding is not None:
                derivative = _embedded(derivative.reshape(16), embedding)
            factors.append(_Factor(op.kind, op.column, embedding, derivative))
            continue
        matrix = op.superop
        if position is not None and k > 1:
            matrix = _embedded(matrix.reshape(16), _embedding(position, k))
        if factors and isinstance(factors[-1], np.ndarray):
            factors[-1] = matrix @ factors[-1]
        else:
            factors.append(matrix)
    if len(factors) == 1 and isinstance(factors[0], np.ndarray):
        return _Fixed(qargs, factors[0])
    return _Fused(qargs, tuple(factors))


@functools.lru_cache(maxsize=None)
def _embedding(position: int, k: int) -> np.ndarray:
    """``(4**k, 4**k)`` indices: where each entry of a one-qubit superoperator (row-major
    ``(r c), (r' c')``, 16 entries) on local qubit ``position`` of ``k`` goes in the same map on
    all ``k`` (row-major vectorisation, ``qargs[0]`` the least significant bit; identity on
    the others); 16 marks a zero."""
    d = 1 << k
    index = np.arange(d)
    bit = (index >> position) & 1  # the qubit's bit of a row or column index
    others = index & ~(1 << position)
    row, col, row2, col2 = np.meshgrid(index, index, index, index, indexing="ij")
    entry = (bit[row] * 2 + bit[col]) * 4 + bit[row2] * 2 + bit[col2]
    same = (others[row] == others[row2]) & (others[col] == others[col2])
    out = np.where(same, entry, 16).reshape(d * d, d * d)
    out.flags.writeable = False
    return out


def _embedded(entries: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """A one-qubit superoperator's 16 ``entries`` (``(16,)`` or per row ``(rows, 16)``) placed
    by ``embedding`` (:func:`_embedding`)."""
    padded = np.concatenate([entries, np.zeros(entries.shape[:-1] + (1,), entries.dtype)],
                            axis=-1)
    return padded[..., embedding]


# -------------------------------------------------------------------- kernels
class _State:
    """Density matrices (or adjoint functionals) of every row, ``(rows, K) + (2,) * 2n``, held
    in whatever axis order the last operation left them: ``axes[a]`` is the array axis of
    logical bit ``a`` (``q``: the row bit of qubit ``q``; ``n + q``: its column bit). An
    operation moves its bit axes last (:meth:`layout`: one copy), makes one (batched) matrix
    product, and leaves them there; nothing is moved back.
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

    def layout(self, qargs: tuple[int, ...], rest: list[int] | None = None
               ) -> tuple[np.ndarray, list[int]]:
        """The tensor as ``(rows, K, X, 4**k)``, the bits of ``qargs`` last (row bits, then
        column bits, ``qargs[0]`` least significant) and the other logical bits in the order
        ``rest`` (by default the order they are held in, the cheaper copy), and that order."""
        n, k = self.n, len(qargs)
        local = _local_bits(qargs, n)
        if rest is None:
            rest = sorted((a for a in range(2 * n) if a not in local), key=self.axes.__getitem__)
        order = tuple(self.axes[a] - 2 for a in rest + local)
        rows, count = self.tensor.shape[:2]
        if n <= GATHER_MAX_QUBITS:  # a gather by a kept index: faster than a strided copy
            flat = np.take(self.tensor.reshape(rows, count, -1), _gather(order), axis=2)
        else:
            flat = np.transpose(self.tensor, (0, 1) + tuple(2 + a for a in order))
        return flat.reshape(rows, count, -1, 4 ** k), rest

    @classmethod
    def from_layout(cls, flat: np.ndarray, rest: list[int], qargs: tuple[int, ...],
                    n: int) -> "_State":
        """The inverse of :meth:`layout`: no copy."""
        axes = [0] * (2 * n)
        for i, a in enumerate(rest + _local_bits(qargs, n)):
            axes[a] = 2 + i
        return cls(flat.reshape(flat.shape[:2] + (2,) * (2 * n)), axes, n)

    def applied(self, superop: np.ndarray, qargs: tuple[int, ...]) -> "_State":
        """A superoperator (row-major vectorisation; ``(4**k, 4**k)``, or per row
        ``(rows, 4**k, 4**k)``) on local ``qargs``."""
        flat, rest = self.layout(qargs)
        return _State.from_layout(_times(flat, superop), rest, qargs, self.n)


def _gather(order: tuple[int, ...]) -> np.ndarray:
    """Flat indices that read a ``(2,) * len(order)`` tensor with its axes in ``order`` (kept,
    up to ``GATHER_BYTES`` of them)."""
    out = _GATHERS.get(order)
    if out is None:
        size = 1 << len(order)
        index = np.arange(size, dtype=np.int32).reshape((2,) * len(order))
        out = np.ascontiguousarray(np.transpose(index, order)).reshape(size)
        out.flags.writeable = False
        if sum(a.nbytes for a in _GATHERS.values()) + out.nbytes > GATHER_BYTES:
            _GATHERS.clear()
        _GATHERS[order] = out
    return out


_GATHERS: dict[tuple[int, ...], np.ndarray] = {}


def _local_bits(qargs: tuple[int, ...], n: int) -> list[int]:
    """The logical bits of ``qargs`` in superoperator index order (most significant first)."""
    return [q for q in reversed(qargs)] + [n + q for q in reversed(qargs)]


def _times(flat: np.ndarray, superop: np.ndarray) -> np.ndarray:
    """``flat`` ``(rows, K, X, d)`` with the superoperator (``(d, d)`` or ``(rows, d, d)``)
    applied to its last axis."""
    if superop.ndim == 2:
        return flat @ superop.T
    return np.matmul(flat, np.swapaxes(superop, -1, -2)[:, None])


def _probabilities(rho: np.ndarray) -> np.ndarray:
    """Computational-basis probabilities ``(rows, D)`` of density matrices in Pauli
    coordinates (:func:`_pauli`): the I/Z strings sit on the diagonal, and ``p(x) = 2**(-n/2)
    Σ_z c_z (-1)**(x·z)``."""
    return _walsh(np.einsum("rii->ri", rho))


def _walsh(vectors: np.ndarray) -> np.ndarray:
    """The normalised Walsh-Hadamard transform ``2**(-n/2) Σ_z v_z (-1)**(x·z)`` of the last
    axis (``2**n`` long); its own inverse."""
    lead, size = vectors.shape[:-1], vectors.shape[-1]
    n = size.bit_length() - 1
    out = vectors.reshape(lead + (2,) * n)
    for axis in range(len(lead), len(lead) + n):
        a, b = np.take(out, 0, axis=axis), np.take(out, 1, axis=axis)
        out = np.stack([a + b, a - b], axis=axis)
    return out.reshape(lead + (size,)) * 2.0 ** (-n / 2)


def _marginal(diag: np.ndarray, local: list[int]) -> np.ndarray:
    """Probabilities ``(rows, 2**len(local))`` of local qubits (the first least significant)
    from the probabilities ``diag`` ``(rows, D)`` of all of them."""
    n = diag.shape[-1].bit_length() - 1
    tensor = diag.reshape((len(diag),) + (2,) * n)
    others = tuple(1 + n - 1 - q for q in range(n) if q not in local)
    if others:
        tensor = tensor.sum(axis=others)
    kept = [q for q in reversed(range(n)) if q in local]
    order = [kept.index(q) for q in reversed(local)]
    tensor = np.transpose(tensor, (0, *(1 + i for i in order)))
    return np.clip(tensor.reshape(len(diag), -1), 0.0, None)


def _projectors(n: int, local: list[int], rows: int) -> np.ndarray:
    """``(rows, 2**m, D, D)``: the diagonal projector of each outcome of the local qubits, in
    Pauli coordinates (:func:`_pauli`)."""
    basis = np.arange(1 << n)
    outcome = np.zeros(1 << n, dtype=np.int64)
    for bit, q in enumerate(local):
        outcome |= ((basis >> q) & 1) << bit
    indicators = np.zeros((1 << len(local), 1 << n))
    indicators[outcome, basis] = 1.0
    out = np.zeros((1 << len(local), 1 << n, 1 << n))
    out[:, basis, basis] = _walsh(indicators)  # Pauli coordinates: on the I/Z strings
    return np.broadcast_to(out, (rows,) + out.shape).copy()
