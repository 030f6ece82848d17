"""One-parameter families of gate noise on circuits that ran, tabulated for fitting.

A fit of a noise model to a run's counts evaluates the model's exact outcome distributions at
many parameter values, and a study that fits the same circuits many times (each repeat of a
run, each jackknife sample, each replicate of a coverage check) would evaluate them again and
again. A :class:`GateTable` evaluates a family exactly, once per point, on a fixed lattice
(0 and ``1.02**j`` for every integer ``j`` from about ``1e-6`` up to the family's largest
value), only at the points a fit asks for, and interpolates between them with the cubic
through the four nearest points: the distributions are smooth in the parameter, and with a 2%
spacing the interpolant is exact to about 1e-10 in probability (checked in the tests against
the exact evaluation). Tables hold the gate part only; readout is an assignment matrix on the
outcomes (:func:`~.primitives.apply_readout`), applied by whoever holds the table, so one
table serves every readout hypothesis.

Families: :func:`device_gates` (the device model's gate errors and relaxation, every rate
times ``k``, optionally with idle-time relaxation on the circuits as the device schedules
them) and :func:`depolarizing_gates` (depolarizing ``ε`` on every gate the circuits use).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from qiskit.providers import BackendV2
from qiskit_aer.noise import NoiseModel

from .evaluate import IsaEvaluator
from .factories import depolarizing, device, largest_scale

__all__ = ["GateFamily", "GateTable", "device_gates", "depolarizing_gates", "LATTICE_RATIO",
           "MAX_SCALE", "MAX_EPSILON"]

LATTICE_RATIO = 1.02
LATTICE_FLOOR = 1e-6
MAX_SCALE = 50.0  # the largest device scale a fit searches
MAX_EPSILON = 0.25  # the largest depolarizing probability a fit searches


@dataclass(frozen=True)
class GateFamily:
    """Gate noise with one parameter: ``noise_model(θ)`` (no readout errors), and whether the
    circuits also relax while idle, with T1 and T2 divided by θ (``idle``)."""

    name: str
    noise_model: Callable[[float], NoiseModel]
    upper: float  # the largest value the family accepts
    idle: bool = False

    def evaluate(self, evaluator: IsaEvaluator, value: float) -> list[np.ndarray]:
        """Exact gate-only distributions of the evaluator's circuits at ``value``."""
        return evaluator(self.noise_model(value), idle_scale=value if self.idle else None)


def device_gates(backend: BackendV2, qubits: Sequence[int], *, idle: bool = False) -> GateFamily:
    """The device model's gate part on ``qubits`` with every rate times ``k``: depolarizing
    gate errors and relaxation during gates (and while idle, with ``idle``)."""
    used = tuple(int(q) for q in qubits)
    top = min(largest_scale(backend, used, readout=False), MAX_SCALE)
    return GateFamily("device",
                      lambda k: device(backend, qubits=used, scale=k, readout=False), top, idle)


def depolarizing_gates(basis_gates: Sequence[str]) -> GateFamily:
    """Depolarizing ``ε`` after every gate of ``basis_gates`` (one- and two-qubit alike)."""
    basis = tuple(basis_gates)
    return GateFamily("depolarizing",
                      lambda eps: depolarizing(p1=eps, p2=eps, readout=0.0, basis_gates=basis),
                      MAX_EPSILON)


class GateTable:
    """``table(θ)``: a family's gate-only distributions (one ``(rows, outcomes)`` array per
    circuit) at any ``θ`` in ``[0, top]``, from exact evaluations on the lattice (see the
    module docstring). ``evaluations`` counts the exact ones."""

    def __init__(self, evaluate: Callable[[float], list[np.ndarray]], *, upper: float,
                 ratio: float = LATTICE_RATIO, floor: float = LATTICE_FLOOR):
        self._evaluate = evaluate
        self._log_ratio = math.log(ratio)
        self._first = math.ceil(math.log(floor) / self._log_ratio)  # exponent of node 1
        last = math.floor(math.log(upper) / self._log_ratio + 1e-9)
        if last < self._first + 3:
            raise ValueError(f"the family's range [0, {upper:g}] is too small to tabulate")
        self.size = last - self._first + 2  # nodes 0 .. size - 1
        self._nodes: dict[int, list[np.ndarray]] = {}
        self.evaluations = 0

    @classmethod
    def of(cls, family: GateFamily, evaluator: IsaEvaluator) -> "GateTable":
        return cls(lambda value: family.evaluate(evaluator, value), upper=family.upper)

    @property
    def top(self) -> float:
        """The largest tabulated value."""
        return self.value(self.size - 1)

    def value(self, i: int) -> float:
        return 0.0 if i == 0 else math.exp((self._first + i - 1) * self._log_ratio)

    def snap(self, theta: float) -> float:
        """The lattice value nearest ``theta`` (within the table's range)."""
        if theta <= 0:
            return 0.0
        i = round(math.log(theta) / self._log_ratio) - self._first + 1
        return self.value(min(max(i, 1), self.size - 1))

    def exact(self, theta: float) -> list[np.ndarray]:
        self.evaluations += 1
        return [np.asarray(p, dtype=float) for p in self._evaluate(float(theta))]

    def node(self, i: int) -> list[np.ndarray]:
        if i not in self._nodes:
            self._nodes[i] = self.exact(self.value(i))
        return self._nodes[i]

    def __call__(self, theta: float) -> list[np.ndarray]:
        theta = float(theta)
        if not 0 <= theta <= self.top * (1 + 1e-12):
            raise ValueError(f"{theta:g} is outside the tabulated range [0, {self.top:g}]")
        i = self._segment(theta)
        lo, hi = self.value(i), self.value(i + 1)
        if theta == lo:
            return self.node(i)
        if i == 0:  # [0, first lattice point]: tiny, linear
            t = theta / hi
            return [(1 - t) * a + t * b for a, b in zip(self.node(0), self.node(1))]
        start = min(max(i - 1, 1), self.size - 4)
        nodes = list(range(start, start + 4))
        xs = [self.value(j) for j in nodes]
        weights = [math.prod((theta - xs[m]) / (xs[j] - xs[m]) for m in range(4) if m != j)
                   for j in range(4)]
        tables = [self.node(j) for j in nodes]
        return [sum(w * t[c] for w, t in zip(weights, tables)) for c in range(len(tables[0]))]

    def _segment(self, theta: float) -> int:
        """``i`` with ``value(i) <= theta < value(i + 1)`` (the last segment for the top)."""
        if theta < self.value(1):
            return 0
        i = math.floor(math.log(theta) / self._log_ratio + 1e-12) - self._first + 1
        i = min(max(i, 1), self.size - 2)
        while i > 1 and self.value(i) > theta:
            i -= 1
        while i < self.size - 2 and self.value(i + 1) <= theta:
            i += 1
        return i
