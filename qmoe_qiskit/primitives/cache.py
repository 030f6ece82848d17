"""A value computed once per circuit object: compiled programs, ISA circuits, measured copies."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from qiskit.circuit import QuantumCircuit

__all__ = ["CircuitCache"]

T = TypeVar("T")


class CircuitCache(Generic[T]):
    """Values computed once per circuit object (and per extra key): compiled programs, ISA
    circuits, measured copies.

    Keyed by identity, not content: QNNs hand the same circuit object on every call, and
    hashing a circuit would cost more than most of the work it saves. A circuit changed in
    place (instructions added) is recomputed, and entries die with their circuit.
    """

    def __init__(self, make: Callable[..., T], *, maxsize: int = 256):
        self._make = make
        self._maxsize = maxsize
        self._entries: dict[tuple, tuple[weakref.ref, int, T]] = {}

    def __call__(self, circuit: QuantumCircuit, *key: Any) -> T:
        slot = (id(circuit), key)
        hit = self._entries.get(slot)
        if hit is not None and hit[0]() is circuit and hit[1] == len(circuit.data):
            return hit[2]
        return self.put(circuit, self._make(circuit, *key), *key)

    def put(self, circuit: QuantumCircuit, value: T, *key: Any) -> T:
        """Store ``value`` for ``circuit`` (and ``key``): what a later call returns."""
        slot = (id(circuit), key)
        self._entries[slot] = (weakref.ref(circuit), len(circuit.data), value)
        if len(self._entries) > self._maxsize:
            for stale in [s for s, entry in self._entries.items() if entry[0]() is None]:
                del self._entries[stale]
        return value
