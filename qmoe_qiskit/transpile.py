"""Transpilation: a logical circuit compiled once for a backend's ISA or a noise model's basis.

For a backend, the physical qubits are, in order of preference: the layout the user gives, else
the lowest-error placement Qiskit's ``VF2Layout`` finds on the backend's calibration (a
placement needing no SWAPs), else the preset pass manager's own error-aware choice (Sabre
routing followed by ``VF2PostLayout``). :class:`Compiler` is the one ISA cache: each circuit
object is compiled once, whichever execution package asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from qiskit import QuantumCircuit, transpile
from qiskit.providers import BackendV2
from qiskit.transpiler import PassManager, generate_preset_pass_manager
from qiskit.transpiler.passes import VF2Layout

from .errors import ConfigError
from .primitives import CircuitCache

__all__ = ["Compiled", "Compiler", "OPTIMIZATION_LEVELS", "check_optimization_level",
           "compile_for_backend", "compile_to_basis", "low_error_layout", "measured_qubits",
           "used_qubits"]

OPTIMIZATION_LEVELS = (0, 1, 2, 3)


@dataclass(frozen=True)
class Compiled:
    """A logical circuit compiled for one backend (or one basis)."""

    isa: QuantumCircuit
    layout: list[int]  # physical qubit of each logical qubit at the end of the circuit
    measured: list[int]  # physical qubit measured into each clbit (-1: never measured)
    # "user" (--layout), "vf2 (lowest calibrated error)", "preset", "none (no device)", or
    # "placed (the measured qubits)" for circuits that characterise given qubits
    layout_method: str

    @classmethod
    def from_isa(cls, isa: QuantumCircuit, num_qubits: int, layout_method: str) -> "Compiled":
        """Read the layout and the measured qubits off a transpiled circuit."""
        layout = (list(range(num_qubits)) if isa.layout is None
                  else list(isa.layout.final_index_layout()))
        return cls(isa=isa, layout=layout, measured=measured_qubits(isa),
                   layout_method=layout_method)

    @property
    def initial_layout(self) -> list[int]:
        """The physical qubit each logical qubit starts on."""
        if self.isa.layout is None:
            return list(range(len(self.layout)))
        return self.isa.layout.initial_index_layout(filter_ancillas=True)

    @property
    def used_qubits(self) -> list[int]:
        """Every physical qubit the compiled circuit acts on."""
        return used_qubits(self.isa)


def check_optimization_level(level: int) -> None:
    if level not in OPTIMIZATION_LEVELS:
        raise ConfigError(f"optimization_level must be 0, 1, 2 or 3, got {level!r}")


def low_error_layout(circuit: QuantumCircuit, backend: BackendV2, *,
                     seed: int = 0) -> list[int] | None:
    """Physical qubits (one per logical qubit) that need no SWAPs and have the lowest
    calibrated error Qiskit's ``VF2Layout`` finds; ``None`` when no such placement exists."""
    if backend.target is None or circuit.num_qubits == 0:
        return None
    pm = PassManager([VF2Layout(target=backend.target, seed=seed, call_limit=30_000,
                                max_trials=2_500)])
    pm.run(circuit)
    layout = pm.property_set["layout"]
    if layout is None:
        return None
    mapping = layout.get_virtual_bits()
    return [mapping[q] for q in circuit.qubits]


def compile_for_backend(circuit: QuantumCircuit, backend: BackendV2, *,
                        initial_layout: Sequence[int] | None = None,
                        optimization_level: int = 1, seed_transpiler: int = 0) -> Compiled:
    """The ISA circuit of ``circuit`` on ``backend``, placed as the module docstring says."""
    check_optimization_level(optimization_level)
    width = backend.num_qubits
    if circuit.num_qubits > width:
        raise ConfigError(f"the circuit has {circuit.num_qubits} qubits but {backend.name} has "
                          f"only {width}; choose a larger backend")
    if initial_layout is not None:
        initial_layout = _check_layout(initial_layout, circuit.num_qubits, backend)
        method = "user"
    else:
        initial_layout = low_error_layout(circuit, backend, seed=seed_transpiler)
        method = "preset" if initial_layout is None else "vf2 (lowest calibrated error)"
    pm = generate_preset_pass_manager(optimization_level=optimization_level, backend=backend,
                                      initial_layout=initial_layout,
                                      seed_transpiler=seed_transpiler)
    return Compiled.from_isa(pm.run(circuit), circuit.num_qubits, method)


def compile_to_basis(circuit: QuantumCircuit, basis_gates: Sequence[str], *,
                     optimization_level: int = 1, seed_transpiler: int = 0) -> Compiled:
    """``circuit`` rewritten in ``basis_gates`` on its own qubits (no device, no layout)."""
    check_optimization_level(optimization_level)
    isa = transpile(circuit, basis_gates=list(basis_gates), optimization_level=optimization_level,
                    seed_transpiler=seed_transpiler)
    return Compiled.from_isa(isa, circuit.num_qubits, "none (no device)")


PLACED = "placed (the measured qubits)"


class Compiler:
    """Compiles each circuit object once: to ``backend``'s ISA when one is given, else to
    ``basis_gates``. The options are those of :func:`compile_for_backend`."""

    def __init__(self, backend: BackendV2 | None = None, *,
                 basis_gates: Sequence[str] | None = None,
                 initial_layout: Sequence[int] | None = None, optimization_level: int = 1,
                 seed_transpiler: int = 0):
        check_optimization_level(optimization_level)
        if backend is None and basis_gates is None:
            raise ConfigError("give a backend or basis_gates to compile for")
        self.backend = backend
        self.basis_gates = None if basis_gates is None else tuple(basis_gates)
        self.initial_layout = None if initial_layout is None else tuple(initial_layout)
        self.optimization_level = optimization_level
        self.seed_transpiler = seed_transpiler
        self._cache = CircuitCache(self._compile)

    def __call__(self, circuit: QuantumCircuit) -> Compiled:
        return self._cache(circuit)

    def place(self, circuit: QuantumCircuit, qubits: Sequence[int]) -> Compiled:
        """Compile ``circuit`` on exactly the physical ``qubits`` (one per logical qubit),
        whatever this compiler's own layout: circuits that characterise given qubits, such as
        readout calibrations. Later calls for the same circuit object return this."""
        if self.backend is None:
            raise ConfigError("placing a circuit on physical qubits needs a backend")
        compiled = compile_for_backend(circuit, self.backend, initial_layout=qubits,
                                       optimization_level=self.optimization_level,
                                       seed_transpiler=self.seed_transpiler)
        return self._cache.put(circuit, replace(compiled, layout_method=PLACED))

    def _compile(self, circuit: QuantumCircuit) -> Compiled:
        if self.backend is not None:
            return compile_for_backend(circuit, self.backend, initial_layout=self.initial_layout,
                                       optimization_level=self.optimization_level,
                                       seed_transpiler=self.seed_transpiler)
        return compile_to_basis(circuit, self.basis_gates,
                                optimization_level=self.optimization_level,
                                seed_transpiler=self.seed_transpiler)


def used_qubits(circuit: QuantumCircuit) -> list[int]:
    """Every qubit (by index) an instruction of ``circuit`` acts on."""
    return sorted({circuit.find_bit(q).index for inst in circuit.data for q in inst.qubits})


def measured_qubits(circuit: QuantumCircuit) -> list[int]:
    """The qubit measured into each clbit of ``circuit`` (-1 where a clbit is never written)."""
    measured = [-1] * circuit.num_clbits
    for inst in circuit.data:
        if inst.operation.name == "measure":
            clbit = circuit.find_bit(inst.clbits[0]).index
            measured[clbit] = circuit.find_bit(inst.qubits[0]).index
    return measured


def _check_layout(layout: Sequence[int], num_qubits: int, backend: BackendV2) -> list[int]:
    layout = [int(q) for q in layout]
    if len(layout) != num_qubits:
        raise ConfigError(f"the layout names {len(layout)} physical qubits but the circuit has "
                          f"{num_qubits}; give one per logical qubit")
    if len(set(layout)) != len(layout):
        raise ConfigError(f"the layout {layout} uses a physical qubit twice")
    bad = [q for q in layout if not 0 <= q < backend.num_qubits]
    if bad:
        raise ConfigError(f"physical qubits {bad} are not on {backend.name} "
                          f"(valid: 0..{backend.num_qubits - 1})")
    return layout
