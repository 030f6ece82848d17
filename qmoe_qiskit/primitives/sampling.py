"""The V2 sampler contract for samplers that know their outcome probabilities exactly.

:class:`ProbabilitySampler` is the shared base of the exact and the noisy Aer samplers. A
subclass computes one thing: the joint probabilities of the qubits a circuit measures at its
end, for every binding. This base does the rest as Qiskit's reference ``StatevectorSampler``
does it:

- ``default_shots`` (1024 unless given), ``shots`` per run and per PUB, positive or refused;
- results as one ``BitArray`` per classical register, sampled from the exact distribution
  (a clbit never measured reads 0; a register may be empty; several registers are fine);
- ``seed``: an integer seed draws the same samples on every run (a new generator per run),
  a ``Generator`` is used as it is;
- shape-``()`` PUBs; metadata ``{"shots", "circuit_metadata"}`` per PUB and
  ``{"version": 2}`` per result.

**Exact mode.** With ``default_shots=None`` (and no shots given), each register's field is an
:class:`~qmoe_qiskit.primitives.ExactDistributions`: ``get_probabilities(loc)`` gives the exact
distribution, and ``get_counts(loc)`` the same weights (summing to one, the limit of counts /
shots), which is what ``SamplerQNN`` normalises its counts into. That is the QNN's fast exact
path; samples are never drawn.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.primitives import BitArray, DataBin, PrimitiveResult, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub

from .base import (
    DoneJob,
    ExactDistributions,
    SyncSampler,
    binding_rows,
    check_finite,
)
from .cache import CircuitCache
from .pubs import coerce_sampler_pub

__all__ = ["DEFAULT_SHOTS", "FinalMeasurements", "ProbabilitySampler", "final_measurements",
           "generator", "marginal", "register_probabilities"]

DEFAULT_SHOTS = 1024


@dataclass(frozen=True)
class Register:
    name: str
    num_bits: int
    sources: tuple[int, ...]  # per clbit: index into ``qubits`` of the qubit it holds, or -1


@dataclass(frozen=True)
class FinalMeasurements:
    """A circuit's final measurements: the circuit without them, the qubits they read (the
    joint outcome's bit ``i`` is ``qubits[i]``) and how each register's bits map onto them."""

    unmeasured: QuantumCircuit
    qubits: tuple[int, ...]
    registers: tuple[Register, ...]


def _final_measurements(circuit: QuantumCircuit) -> FinalMeasurements:
    """As Qiskit's reference sampler reads them: walking back from the end, a measurement
    counts while neither its qubit nor its clbit has been used by a later instruction."""
    active_qubits, active_clbits = set(range(circuit.num_qubits)), set(range(circuit.num_clbits))
    held: dict[int, int] = {}  # clbit -> qubit
    final: set[int] = set()  # positions of the final measurements
    for position in range(len(circuit.data) - 1, -1, -1):
        inst = circuit.data[position]
        if inst.operation.name == "measure":
            clbit = circuit.find_bit(inst.clbits[0]).index
            qubit = circuit.find_bit(inst.qubits[0]).index
            if clbit in active_clbits and qubit in active_qubits:
                held[clbit] = qubit
                active_clbits.discard(clbit)
                final.add(position)
        elif inst.operation.name not in ("barrier", "delay"):
            active_qubits -= {circuit.find_bit(q).index for q in inst.qubits}
        if not active_clbits or not active_qubits:
            break
    qubits = tuple(sorted(set(held.values())))
    position = {q: i for i, q in enumerate(qubits)}
    registers = tuple(
        Register(creg.name, creg.size,
                 tuple(position[held[circuit.find_bit(bit).index]]
                       if circuit.find_bit(bit).index in held else -1 for bit in creg))
        for creg in circuit.cregs)
    unmeasured = circuit.copy_empty_like()  # in the original order: gate layers stay fused
    for position, inst in enumerate(circuit.data):
        if position not in final:
            unmeasured.append(inst)
    return FinalMeasurements(unmeasured, qubits, registers)


final_measurements = CircuitCache(_final_measurements)


def marginal(probs: np.ndarray, num_qubits: int, qubits: tuple[int, ...]) -> np.ndarray:
    """Joint probabilities ``(rows, 2**len(qubits))`` of ``qubits`` (outcome bit ``i`` is
    ``qubits[i]``) from full distributions ``(rows, 2**num_qubits)`` (qubit 0 least
    significant)."""
    rows = probs.shape[0]
    if tuple(qubits) == tuple(range(num_qubits)):
        return probs
    tensor = probs.reshape((rows,) + (2,) * num_qubits)  # axis 1 + k <-> qubit n - 1 - k
    others = tuple(1 + num_qubits - 1 - q for q in range(num_qubits) if q not in qubits)
    kept = [q for q in reversed(range(num_qubits)) if q in qubits]  # axis order after summing
    if others:
        tensor = tensor.sum(axis=others)
    order = [kept.index(q) for q in reversed(qubits)]  # highest outcome bit first
    return np.transpose(tensor, (0, *(1 + i for i in order))).reshape(rows, 1 << len(qubits))


class ProbabilitySampler(SyncSampler):
    """A ``BaseSamplerV2`` (see the module docstring); subclasses write :meth:`_probabilities`."""

    def __init__(self, *, default_shots: int | None = DEFAULT_SHOTS,
                 seed: np.random.Generator | int | None = None):
        if default_shots is not None:
            _check_shots(default_shots)
        self._default_shots = default_shots
        self._seed = seed

    @property
    def default_shots(self) -> int | None:
        """Shots when a run and its PUBs give none; ``None``: exact distributions."""
        return self._default_shots

    @property
    def seed(self) -> np.random.Generator | int | None:
        return self._seed

    def run(self, pubs: Iterable, *, shots: int | None = None) -> DoneJob:
        shots = self._default_shots if shots is None else shots
        coerced = [coerce_sampler_pub(pub, shots) for pub in pubs]
        for i, pub in enumerate(coerced):
            if pub.shots is not None:
                _check_shots(pub.shots)
            check_finite(pub.parameter_values, f"PUB {i}")
        if any(not pub.circuit.cregs for pub in coerced):
            warnings.warn("One of your circuits has no output classical registers and so the "
                          "result will be empty. Did you mean to add measurement instructions?",
                          UserWarning, stacklevel=2)
        rng = generator(self._seed)
        return DoneJob(PrimitiveResult([self._sample_pub(pub, rng) for pub in coerced],
                                       metadata={"version": 2}))

    def _sample_pub(self, pub: SamplerPub, rng: np.random.Generator) -> SamplerPubResult:
        circuit = pub.circuit
        layout = final_measurements(circuit)
        values = binding_rows(pub.parameter_values, circuit.parameters)
        return self._result(pub, layout, self._probabilities(circuit, layout, values), rng)

    def _result(self, pub: SamplerPub, layout: FinalMeasurements, probs: np.ndarray,
                rng: np.random.Generator | None) -> SamplerPubResult:
        """The PUB's result from the joint probabilities of its measured qubits: each
        register's exact distribution, or samples drawn with ``rng``."""
        circuit = pub.circuit
        shape = pub.shape
        if pub.shots is None:
            fields = {reg.name: ExactDistributions(
                register_probabilities(probs, reg).reshape(shape + (1 << reg.num_bits,)),
                reg.num_bits) for reg in layout.registers}
        else:
            outcomes = _draw(probs, pub.shots, rng)  # (rows, shots) joint outcome integers
            fields = {reg.name: _bit_array(outcomes, reg).reshape(shape + (pub.shots,))
                      for reg in layout.registers}
        return SamplerPubResult(DataBin(**fields, shape=shape),
                                metadata={"shots": pub.shots,
                                          "circuit_metadata": circuit.metadata})

    def _probabilities(self, circuit: QuantumCircuit, layout: FinalMeasurements,
                       values: np.ndarray) -> np.ndarray:
        """Joint probabilities ``(rows, 2**len(layout.qubits))`` of the measured qubits for
        each row of ``values`` (columns in the order of ``circuit.parameters``)."""
        raise NotImplementedError


def generator(seed: np.random.Generator | int | None) -> np.random.Generator:
    """The random generator of one run (or PUB), as Qiskit's reference primitives make it: a
    ``Generator`` is used as it is, anything else seeds a fresh one (one seed repeats)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_shots(shots) -> None:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be a positive integer, got {shots!r}")


def register_probabilities(probs: np.ndarray, register: Register) -> np.ndarray:
    """A register's distribution ``(rows, 2**num_bits)`` from the joint one (also any linear
    function of it, such as its gradient rows)."""
    size = 1 << register.num_bits
    values = _register_values(np.arange(probs.shape[1]), register)
    if register.num_bits == probs.shape[1].bit_length() - 1 and \
            np.array_equal(np.sort(values), np.arange(size)):
        out = np.empty((probs.shape[0], size))
        out[:, values] = probs  # a permutation: the common case, one register of every qubit
        return out
    return np.stack([np.bincount(values, weights=row, minlength=size) for row in probs])


def _register_values(outcomes: np.ndarray, register: Register) -> np.ndarray:
    """Each joint outcome's value in ``register`` (clbit ``k`` is bit ``k``)."""
    values = np.zeros_like(outcomes)
    for k, source in enumerate(register.sources):
        if source >= 0:
            values |= ((outcomes >> source) & 1) << k
    return values


def _draw(probs: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """``shots`` joint outcomes per row, drawn from each row's distribution."""
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    uniform = rng.random((len(probs), shots))
    return np.stack([np.searchsorted(c, u, side="right") for c, u in zip(cdf, uniform)]) \
        .clip(max=probs.shape[1] - 1)


def _bit_array(outcomes: np.ndarray, register: Register) -> BitArray:
    """The register's bits of each outcome, packed as Qiskit's ``BitArray`` packs them."""
    rows, shots = outcomes.shape
    bits = np.zeros((rows, shots, register.num_bits), dtype=np.uint8)
    for k, source in enumerate(register.sources):  # column num_bits - 1 - k holds clbit k
        if source >= 0:
            bits[:, :, register.num_bits - 1 - k] = (outcomes >> source) & 1
    pad = -register.num_bits % 8
    bits = np.pad(bits, ((0, 0), (0, 0), (pad, 0)))
    return BitArray(np.packbits(bits, axis=-1), register.num_bits)
