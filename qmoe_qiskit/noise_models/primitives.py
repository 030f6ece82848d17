"""Aer-backed V2 primitives that run a QNN's logical circuits under a noise model.

:class:`NoisySimulation` transpiles each logical circuit once (to the noise model's basis, or to
a device's ISA when a backend is given), then evaluates every parameter binding of a PUB in one
Aer density-matrix call: exact noisy outcome probabilities, with readout error applied from the
model's assignment matrices. With ``shots``, samples are drawn from those exact probabilities,
which for terminally measured circuits has the same distribution as Aer's shot simulation.

:class:`NoisySampler` / :class:`NoisyEstimator` wrap it as ``BaseSamplerV2`` /
``BaseEstimatorV2``, so ``router.set_primitive(...)`` moves a trained model under noise without
touching the QNN. The QNN keeps seeing the logical circuit (its output keys follow the logical
clbits), which avoids ``SamplerQNN``'s wrong post-processing of transpiled circuits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.providers import BackendV2
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel

from ..errors import ConfigError
from ..primitives import (
    CircuitCache,
    SyncEstimator,
    binding_rows,
    diagonal_eigenvalues,
    estimator_pub_result,
    expectations_from_counts,
)
from ..primitives.sampling import FinalMeasurements, ProbabilitySampler, generator
from ..resources import available_memory, check_memory
from ..transpile import Compiled, Compiler
from .density import ENGINE_HINT, DensityProgram, compile_density, light_cone
from .factories import readout_matrices

__all__ = ["NoisySimulation", "NoisySampler", "NoisyEstimator", "aer_simulator", "aer_primitives",
           "probe_circuit", "probe_probabilities", "ENGINES", "FAST_MEASURED_QUBITS"]

ENGINES = ("auto", "fast", "aer")
# ``engine="auto"``: benchmarks/noisy_engines.py (paper router, 3 layers, batch 32, one thread)
# finds the fast engine faster than Aer's density-matrix method at every light-cone width it
# measures, up to this one: its forward pass 5.6-32x faster (2-10 qubits), its training step
# 50-660x faster than Aer's batched parameter shift (2-7 qubits; Aer's is not timed wider).
# There is no crossover to follow, so ``auto`` runs the fast engine up to this width and,
# wider, wherever one binding's density matrices (with what its gradients keep) fit in the
# memory available; Aer otherwise, whose one density matrix per circuit needs less.
FAST_MEASURED_QUBITS = 10
CHUNK_BYTES = 256 << 20  # density matrices held at once while a batch is evaluated


def aer_simulator(
    noise_model: NoiseModel | None,
    *,
    backend: BackendV2 | None = None,
    method: str = "density_matrix",
    seed: int | None = None,
) -> AerSimulator:
    """An ``AerSimulator`` running ``noise_model``; with ``backend``, one that also enforces the
    device's ISA (built without re-deriving the device's full noise model)."""
    options = {"method": method, "noise_model": noise_model}
    if seed is not None:
        options["seed_simulator"] = seed
    if backend is not None:
        return AerSimulator.from_backend(backend, **options)
    return AerSimulator(**options)


class NoisySimulation:
    """Exact noisy probabilities of logical circuits, every binding of a batch at once.

    ``backend`` (a ``BackendV2``) makes circuits ISA circuits of that device, placed on
    ``initial_layout`` if given (else the transpiler's choice), with ``optimization_level``
    and ``seed_transpiler``; without it circuits are transpiled to ``noise_model.basis_gates``.
    ``engine``: ``"fast"`` is this toolkit's batched density matrix with reverse-mode
    gradients (:mod:`.density`); ``"aer"`` is one Aer density-matrix call per batch (no
    gradients of its own: parameter shift). Both give the same probabilities. ``"auto"`` (the
    default) chooses per circuit: the fast engine up to ``FAST_MEASURED_QUBITS`` qubits in the
    light cone of the qubits read (faster at every width measured), and wider wherever its
    memory fits; Aer otherwise. ``ran`` records which engines ran: ``{"forward": {...},
    "gradients": {...}}``.
    """

    def __init__(
        self,
        noise_model: NoiseModel | None,
        *,
        backend: BackendV2 | None = None,
        initial_layout: Sequence[int] | None = None,
        optimization_level: int = 1,
        seed_transpiler: int = 0,
        seed: int | None = None,
        engine: str = "auto",
    ):
        if engine not in ENGINES:
            raise ConfigError(f"unknown simulation engine {engine!r}; valid engines: "
                              f"{', '.join(ENGINES)}")
        self.engine = engine
        self.noise_model = noise_model if noise_model is not None else NoiseModel()
        self.compiler = Compiler(backend, basis_gates=self.noise_model.basis_gates,
                                 initial_layout=initial_layout,
                                 optimization_level=optimization_level,
                                 seed_transpiler=seed_transpiler)
        self._seed = seed
        self.simulator = aer_simulator(self.noise_model, seed=seed)
        self._probes = CircuitCache(self._probe)
        self._programs = CircuitCache(self._program)
        self._cones = CircuitCache(lambda circuit: {})
        self.ran: dict[str, set[str]] = {"forward": set(), "gradients": set()}

    @property
    def backend(self) -> BackendV2 | None:
        return self.compiler.backend

    def with_noise(self, noise_model: NoiseModel | None) -> "NoisySimulation":
        """The same transpilation (shared cache, same layouts) under another noise model."""
        other = NoisySimulation(noise_model, seed=self._seed, backend=self.backend,
                                engine=self.engine)
        other.compiler, other._probes, other._cones = self.compiler, self._probes, self._cones
        return other

    def compile(self, circuit: QuantumCircuit) -> Compiled:
        """The circuit transpiled for this simulation (cached per circuit object)."""
        return self.compiler(circuit)

    def used_qubits(self, circuit: QuantumCircuit) -> list[int]:
        """Physical qubits the transpiled circuit acts on."""
        return self.compile(circuit).used_qubits

    def engine_for(self, circuit: QuantumCircuit, *, gradients: bool = False,
                   physical: Sequence[int] | None = None) -> str:
        """``"fast"`` or ``"aer"``: the engine that runs ``circuit``'s forward pass (or, with
        ``gradients``, its gradients) on this simulation, reading the physical qubits
        ``physical`` (default: the measured ones, else every used one). ``"auto"`` goes by
        the width of their light cone (:meth:`cone`), which is what the fast engine holds, and
        beyond ``FAST_MEASURED_QUBITS`` by the memory the fast engine would need."""
        if self.engine != "auto":
            return self.engine
        read = self._read(circuit, physical)
        if len(self.cone(circuit, read)) <= FAST_MEASURED_QUBITS:
            return "fast"
        needed = self.program(circuit, read).bytes_per_row(1 << len(read), gradients)
        return "fast" if needed <= available_memory() else "aer"

    def _read(self, circuit: QuantumCircuit, physical: Sequence[int] | None) -> tuple:
        """``physical``, or by default the measured qubits (else every used one)."""
        if physical is None:
            compiled = self.compile(circuit)
            physical = [q for q in compiled.measured if q >= 0] or compiled.used_qubits
        return tuple(physical)

    def cone(self, circuit: QuantumCircuit, physical: Sequence[int] | None = None
             ) -> list[int]:
        """The physical qubits in the light cone of ``physical`` (default: the measured
        qubits, else every used one) in the transpiled circuit (:func:`.density.light_cone`)."""
        key = self._read(circuit, physical)
        cones = self._cones(circuit)
        if key not in cones:
            cones[key] = light_cone(self.compile(circuit).isa, key)
        return cones[key]

    def probabilities(self, circuit: QuantumCircuit, values: np.ndarray,
                      physical: Sequence[int]) -> np.ndarray:
        """Noisy outcome probabilities ``(rows, 2**len(physical))`` of the physical qubits
        ``physical`` (the first is the least significant bit), readout error included."""
        key = tuple(physical)
        engine = self.engine_for(circuit, physical=key)
        self.ran["forward"].add(engine)
        if engine == "fast":
            program = self.program(circuit, key)
            return _in_chunks(lambda rows: program.probabilities(rows, key), values,
                              program.bytes_per_row(0, False), program.block_rows())
        self.check_memory(circuit, engine)
        return probe_probabilities(self.simulator, self._probes(circuit, key), values,
                                   circuit.parameters,
                                   readout_matrices(self.noise_model, key))

    def check_memory(self, circuit: QuantumCircuit, engine: str | None = None) -> None:
        """A :class:`ConfigError` in one line, before anything is allocated, where one
        binding of ``circuit`` needs more memory than this machine has: the fast engine's
        density matrices, or the one Aer holds (16 bytes for each of 4**qubits entries, on
        the qubits the compiled circuit uses; Aer's own refusal is a traceback). ``engine``:
        the one that will run it (by default, the forward pass's)."""
        qubits, free = len(self.used_qubits(circuit)), available_memory()
        aer, narrower = 16 * 4 ** qubits, "use a narrower circuit (fewer --qubits or --features)"
        if (engine or self.engine_for(circuit)) == "fast":
            check_memory(self.program(circuit, self._read(circuit, None)).bytes_per_row(0, False),
                         "one binding's density matrices",
                         f"{narrower}, or {ENGINE_HINT}" if aer <= free
                         else narrower, free)  # Aer's one matrix may fit where these do not
            return
        check_memory(aer, f"Aer's density matrix of {qubits} qubits", narrower, free)

    def probabilities_and_gradients(self, circuit: QuantumCircuit, values: np.ndarray,
                                    physical: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`probabilities` and their reverse-mode gradients ``(rows, parameters,
        outcomes)`` (columns: ``circuit.parameters``); the fast engine only."""
        if self.engine == "aer":
            raise ConfigError("gradients of the Aer engine come from parameter shift "
                              "(BatchedShift*Gradient); the fast engine computes them itself")
        key = tuple(physical)
        program = self.program(circuit, key)
        outcomes = 1 << len(key)
        return _in_chunks(lambda rows: program.probabilities_and_gradients(rows, key), values,
                          program.bytes_per_row(outcomes, True), program.block_rows())

    def program(self, circuit: QuantumCircuit, physical: Sequence[int] | None = None
                ) -> DensityProgram:
        """The fast engine's compiled form of ``circuit`` under this noise (once per circuit),
        restricted to the light cone of the physical qubits ``physical`` where given."""
        program = self._programs(circuit)
        return program if physical is None else program.restricted(physical)

    def _program(self, circuit: QuantumCircuit) -> DensityProgram:
        return compile_density(self.compile(circuit).isa, self.noise_model, circuit.parameters)

    def _probe(self, circuit: QuantumCircuit, physical: tuple[int, ...]) -> QuantumCircuit:
        return probe_circuit(self.compile(circuit).isa, physical)


def probe_circuit(isa: QuantumCircuit, physical: Sequence[int]) -> QuantumCircuit:
    """``isa`` saving the probabilities of the physical qubits ``physical`` (the first is the
    least significant bit) instead of measuring."""
    probe = isa.remove_final_measurements(inplace=False)
    probe.save_probabilities(qubits=list(physical), label="probabilities")
    return probe


def probe_probabilities(simulator: AerSimulator, probe: QuantumCircuit, values: np.ndarray,
                        parameters: Sequence, matrices: list) -> np.ndarray:
    """Exact outcome probabilities ``(rows, 2**qubits)`` of a :func:`probe_circuit` at each row
    of ``values`` (columns in the order of ``parameters``) in one Aer call, pushed through the
    readout assignment ``matrices`` (one per probed qubit, ``None`` for ideal readout)."""
    values = np.asarray(values, dtype=float).reshape(-1, len(parameters))
    column = {p: i for i, p in enumerate(parameters)}
    if probe.num_parameters:
        binds = [{p: values[:, column[p]].tolist() for p in probe.parameters}]
        result = simulator.run(probe, parameter_binds=binds).result()
        probs = np.array([result.data(i)["probabilities"] for i in range(len(values))])
    else:
        result = simulator.run(probe).result()
        probs = np.tile(result.data(0)["probabilities"], (len(values), 1))
    return apply_readout(probs, matrices)


def apply_readout(probs: np.ndarray, matrices: list) -> np.ndarray:
    """Push true-outcome probabilities through each bit's assignment matrix ``M[true, seen]``."""
    rows, k = probs.shape[0], len(matrices)
    tensor = probs.reshape((rows,) + (2,) * k)  # axis 1 + j <-> bit k - 1 - j
    for bit, matrix in enumerate(matrices):
        if matrix is None:
            continue
        axis = 1 + k - 1 - bit
        tensor = np.moveaxis(np.tensordot(tensor, matrix, axes=([axis], [0])), -1, axis)
    return np.clip(tensor.reshape(rows, -1), 0.0, None)


class NoisySampler(ProbabilitySampler):
    """A ``BaseSamplerV2`` under noise, on the same contract as the exact sampler
    (:class:`~qmoe_qiskit.primitives.sampling.ProbabilitySampler`): ``default_shots=None``
    (the default here) gives exact noisy distributions as
    :class:`~qmoe_qiskit.primitives.ExactDistributions`; shots give one ``BitArray`` per
    classical register, drawn from them; ``seed`` repeats a run's samples.
    """

    def __init__(self, simulation: NoisySimulation, *, default_shots: int | None = None,
                 seed: int | None = None):
        _check_shots(default_shots)
        super().__init__(default_shots=default_shots, seed=seed)
        self.simulation = simulation

    def _probabilities(self, circuit: QuantumCircuit, layout: FinalMeasurements,
                       values: np.ndarray) -> np.ndarray:
        compiled = self.simulation.compile(circuit)
        physical = [compiled.layout[q] for q in layout.qubits]
        return self.simulation.probabilities(circuit, values, physical)


class NoisyEstimator(SyncEstimator):
    """A ``BaseEstimatorV2`` under noise for diagonal (I/Z) observables, measured as hardware
    measures them: in the computational basis, readout error included.

    ``default_shots=None`` gives exact noisy expectation values; an integer draws that many
    shots per binding (one shared measurement for all observables of a PUB) and reports
    standard errors.
    """

    def __init__(self, simulation: NoisySimulation, *, default_shots: int | None = None,
                 seed: int | None = None):
        _check_shots(default_shots)
        self.simulation = simulation
        self.default_shots = default_shots
        self.seed = seed  # a fresh generator per PUB: one seed repeats its results, as in Qiskit

    def _resolve_precision(self, precision: float | None) -> float:
        if precision is not None and precision > 0 and self.default_shots is None:
            raise ConfigError(
                "NoisyEstimator is exact unless default_shots is set; precision is not used "
                "(pass default_shots=N for sampled estimates)")
        return 0.0

    def _run_pubs(self, pubs: list[EstimatorPub]) -> list[PubResult]:
        return [self._run_pub(pub) for pub in pubs]

    def _run_pub(self, pub: EstimatorPub) -> PubResult:
        circuit = pub.circuit
        compiled = self.simulation.compile(circuit)
        support, eig = diagonal_eigenvalues(pub.observables.ravel().tolist())
        physical = [compiled.layout[q] for q in support]
        probs = self.simulation.probabilities(
            circuit, binding_rows(pub.parameter_values, circuit.parameters), physical)
        if self.default_shots is None:
            table = probs @ eig.T  # (bindings, observables)
            return estimator_pub_result(pub, table, np.zeros_like(table), shots=None)
        rng = generator(self.seed)
        counts = np.array([rng.multinomial(self.default_shots, p / p.sum())
                           for p in probs])
        return estimator_pub_result(pub, *expectations_from_counts(counts, eig),
                                    shots=self.default_shots)


def aer_primitives(
    noise_model: NoiseModel | None,
    *,
    shots: int | None = None,
    seed: int | None = None,
    **simulation_options,
) -> tuple[NoisySampler, NoisyEstimator]:
    """A sampler and an estimator sharing one :class:`NoisySimulation` of ``noise_model``."""
    simulation = NoisySimulation(noise_model, seed=seed, **simulation_options)
    return (NoisySampler(simulation, default_shots=shots, seed=seed),
            NoisyEstimator(simulation, default_shots=shots, seed=seed))


# ------------------------------------------------------------------ helpers
def _in_chunks(evaluate, values: np.ndarray, bytes_per_row: int, block_rows: int | None = None):
    """``evaluate`` on slices of ``values`` small enough to hold (and of at most ``block_rows``
    rows), results joined by row; a :class:`ConfigError` before anything is allocated when
    one row does not fit in memory."""
    check_memory(bytes_per_row, "one binding's density matrices (with what its gradients keep)",
                 f"use a narrower circuit, or {ENGINE_HINT}")
    values = np.asarray(values, dtype=float)
    step = max(1, CHUNK_BYTES // max(1, bytes_per_row))
    if block_rows is not None:
        step = min(step, block_rows)
    if len(values) <= step:
        return evaluate(values)
    parts = [evaluate(values[i:i + step]) for i in range(0, len(values), step)]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(column) for column in zip(*parts))
    return np.concatenate(parts)



def _check_shots(shots) -> None:
    if shots is not None and (not isinstance(shots, (int, np.integer)) or shots < 1):
        raise ConfigError(f"shots must be a positive integer or None (exact), got {shots!r}")
