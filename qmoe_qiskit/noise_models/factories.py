"""Factories for qiskit-aer noise models.

Every factory returns a :class:`qiskit_aer.noise.NoiseModel`. Aer attaches noise by gate name
and runs a gate missing from the model noiselessly, so circuits must be transpiled to the
model's ``basis_gates`` (the primitives in :mod:`.primitives` do this) and
:func:`gates_without_noise` lists any gate that would escape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.providers import BackendV2
from qiskit.transpiler import InstructionProperties, Target
from qiskit_aer.noise import (
    NoiseModel,
    ReadoutError,
    depolarizing_error,
    thermal_relaxation_error,
)
from qiskit_aer.noise.device import basic_device_gate_errors
from qiskit_aer.noise.device.parameters import readout_error_values

from ..backends import get_backend
from ..errors import ConfigError, choices

__all__ = [
    "DEFAULT_BASIS",
    "depolarizing",
    "thermal_relaxation",
    "device",
    "MAX_SCALE",
    "device_readout",
    "largest_scale",
    "scale_limits",
    "calibrated_readout",
    "CalibratedReadout",
    "readout_matrices",
    "gates_without_noise",
]

# Basis of the generic (non-device) models: IBM's 1-qubit basis with CX as the entangler.
DEFAULT_BASIS = ("rz", "sx", "x", "cx")
_TWO_QUBIT = {"cx", "cz", "ecr", "swap", "iswap", "rzz", "cy"}
# Default gate durations (seconds) for thermal relaxation, typical of IBM Eagle devices.
DEFAULT_GATE_TIMES = {"rz": 0.0, "sx": 60e-9, "x": 60e-9, "cx": 660e-9, "cz": 660e-9,
                      "ecr": 660e-9, "measure": 1.3e-6}
_NOT_GATES = {"measure", "reset", "delay", "barrier", "for_loop", "if_else", "switch_case",
              "while_loop"}


def _check_probability(name: str, value: float, upper: float = 1.0) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0 or value > upper:
        raise ConfigError(f"{name} must be a probability in [0, {upper:g}], got {value:g}")
    return value


def _check_basis(basis_gates: Sequence[str]) -> tuple[str, ...]:
    basis = tuple(basis_gates)
    if not basis:
        raise ConfigError("basis_gates must name at least one gate")
    unknown = [g for g in basis if g in _NOT_GATES]
    if unknown:
        raise ConfigError(f"basis_gates may not contain {choices(unknown)}: they are not gates")
    return basis


def depolarizing(
    epsilon: float | None = None,
    *,
    p1: float | None = None,
    p2: float | None = None,
    readout: float | None = None,
    basis_gates: Sequence[str] = DEFAULT_BASIS,
) -> NoiseModel:
    """Depolarizing noise on every basis gate plus symmetric readout error.

    ``p1`` is the depolarizing probability after each single-qubit gate, ``p2`` after each
    two-qubit gate (``depolarizing_error(p, n)``: with probability ``p`` the qubits are replaced
    by the maximally mixed state) and ``readout`` the probability that a measured bit flips.
    Convention for a single level: ``depolarizing(epsilon)`` sets ``p1 = p2 = readout =
    epsilon``; explicit ``p1``/``p2``/``readout`` override it. Every basis gate, including
    ``rz``, carries noise, so the model matches "a depolarizing channel after every gate".
    """
    p1 = epsilon if p1 is None else p1
    p2 = epsilon if p2 is None else p2
    readout = epsilon if readout is None else readout
    if p1 is None or p2 is None or readout is None:
        raise ConfigError("give epsilon, or all of p1, p2 and readout")
    p1 = _check_probability("p1 (1-qubit depolarizing probability)", p1)
    p2 = _check_probability("p2 (2-qubit depolarizing probability)", p2)
    readout = _check_probability("readout (bit-flip probability)", readout)
    basis = _check_basis(basis_gates)
    model = NoiseModel(basis_gates=list(basis))
    for gate in basis:
        if gate in _TWO_QUBIT:
            if p2 > 0:
                model.add_all_qubit_quantum_error(depolarizing_error(p2, 2), gate)
        elif p1 > 0:
            model.add_all_qubit_quantum_error(depolarizing_error(p1, 1), gate)
    if readout > 0:
        model.add_all_qubit_readout_error(ReadoutError([[1 - readout, readout],
                                                        [readout, 1 - readout]]))
    return model


def thermal_relaxation(
    t1: float,
    t2: float,
    *,
    gate_times: dict[str, float] | None = None,
    readout: float = 0.0,
    basis_gates: Sequence[str] = DEFAULT_BASIS,
) -> NoiseModel:
    """T1/T2 relaxation during every basis gate (durations in seconds), plus readout error.

    A two-qubit gate relaxes both qubits independently. ``gate_times`` overrides entries of
    :data:`DEFAULT_GATE_TIMES`. Requires ``0 < t1``, ``0 < t2 <= 2 * t1`` (otherwise the channel
    is not physical).
    """
    t1, t2 = float(t1), float(t2)
    if not (np.isfinite(t1) and t1 > 0 and np.isfinite(t2) and t2 > 0):
        raise ConfigError(f"t1 and t2 must be positive times in seconds, got t1={t1:g}, t2={t2:g}")
    if t2 > 2 * t1:
        raise ConfigError(
            f"t2={t2:g} s exceeds 2*t1={2 * t1:g} s: no physical channel has T2 > 2 T1"
        )
    times = dict(DEFAULT_GATE_TIMES)
    times.update(gate_times or {})
    basis = _check_basis(basis_gates)
    missing = [g for g in basis if g not in times]
    if missing:
        raise ConfigError(f"no gate time for {choices(missing)}; pass gate_times={{name: seconds}}")
    for gate, seconds in times.items():
        if not np.isfinite(seconds) or seconds < 0:
            raise ConfigError(f"gate time of {gate!r} must be >= 0 seconds, got {seconds:g}")
    readout = _check_probability("readout (bit-flip probability)", readout)
    model = NoiseModel(basis_gates=list(basis))
    for gate in basis:
        if times[gate] == 0:
            continue
        one = thermal_relaxation_error(t1, t2, times[gate])
        error = one.expand(one) if gate in _TWO_QUBIT else one
        model.add_all_qubit_quantum_error(error, gate)
    if readout > 0:
        model.add_all_qubit_readout_error(ReadoutError([[1 - readout, readout],
                                                        [readout, 1 - readout]]))
    return model


# ------------------------------------------------------------------ devices
MAX_SCALE = 1000.0  # the largest scale of a device's calibrated error rates
# measured on fake_manila, fake_brisbane, fake_torino, fake_kyiv, fake_fez, fake_marrakesh:
# each two-qubit gate reaches its largest physical error by 772 times its calibration
TOO_NOISY = ("by then the offline devices' errors are held at their largest physical "
             "values (every two-qubit gate's by 772 times), and the scale no longer scales "
             "anything")

def device(
    backend: str | BackendV2,
    *,
    qubits: Sequence[int] | None = None,
    scale: float = 1.0,
    clip: bool = False,
    readout: bool = True,
    readout_scale: float | None = None,
) -> NoiseModel:
    """A device-calibrated model: each gate's depolarizing error and thermal relaxation during
    it (as ``NoiseModel.from_backend`` builds them from the target), and each qubit's readout
    error as the calibration gives it: asymmetric, P(1|0) and P(0|1), where the backend's
    properties hold ``prob_meas1_prep0`` / ``prob_meas0_prep1`` (see
    :func:`calibrated_readout`; Aer's target-based builder keeps one symmetric number).

    ``backend`` is a fake backend name or a live/fake ``BackendV2``. ``qubits`` restricts the
    model to those physical qubits (the ones a transpiled circuit uses; building a full
    127-qubit model takes seconds). ``scale`` multiplies every error rate: gate errors,
    readout errors and relaxation rates (T1 and T2 divided by ``scale``); ``scale=0`` is
    noiseless. ``readout_scale`` multiplies the readout errors instead, where they are off by
    another factor than the gates (default: ``scale``). A scaled error above its largest
    physical value is refused, or with ``clip`` held at that value. ``readout=False`` leaves
    readout errors out (the gate part alone, what readout-mitigated counts are compared
    with). Qubit indices stay physical. Relaxation while a qubit idles is not part of a noise
    model (Aer attaches noise to gates): :mod:`.relaxation` schedules circuits and puts it on
    their waits. Not modelled: relaxation during measurement, crosstalk, leakage.
    """
    if isinstance(backend, str):
        backend = get_backend(backend)
    scale = float(scale)
    readout_scale = scale if readout_scale is None else float(readout_scale)
    for what, value in (("scale", scale), ("readout_scale", readout_scale)):
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"{what} must be a finite number >= 0, got {value:g}")
        if value > MAX_SCALE:
            raise ConfigError(f"{what} must be at most {MAX_SCALE:g}, got {value:g}: "
                              f"{TOO_NOISY}")
    target = backend.target
    n = target.num_qubits
    used = sorted(set(range(n) if qubits is None else (int(q) for q in qubits)))
    bad = [q for q in used if not 0 <= q < n]
    if bad:
        raise ConfigError(f"qubits {bad} are not on {backend.name} (qubits 0..{n - 1})")
    restricted = _scaled_target(target, set(used), scale, backend.name, clip)
    basis = [name for name in target.operation_names if name not in _NOT_GATES]
    model = NoiseModel(basis_gates=basis)
    if scale > 0:
        for name, gate_qubits, error in basic_device_gate_errors(target=restricted):
            model.add_quantum_error(error, name, list(gate_qubits), warnings=False)
    if readout and readout_scale > 0:
        _add_readout(model, backend, used, readout_scale, clip)
    return model


def largest_scale(backend: str | BackendV2, qubits: Sequence[int], *,
                  gates: bool = True, readout: bool = True) -> float:
    """The largest ``scale`` :func:`device` accepts on ``qubits``: the first at which an error
    reaches its largest physical value (``inf`` for a noiseless calibration). ``gates`` /
    ``readout`` say which errors the scale multiplies (both by default)."""
    return min((limit for _, limit in scale_limits(backend, qubits, gates=gates,
                                                   readout=readout)), default=float("inf"))


def scale_limits(backend: str | BackendV2, qubits: Sequence[int], *, gates: bool = True,
                 readout: bool = True) -> list[tuple[tuple[int, ...], float]]:
    """Each calibrated error on ``qubits`` (gates, and with ``readout`` measurement and
    readout), as ``(qubits it acts on, the scale that takes it to its largest physical
    value)``."""
    if isinstance(backend, str):
        backend = get_backend(backend)
    used = {int(q) for q in qubits}
    limits = []
    for op_name in backend.target.operation_names:
        if (op_name == "measure" and not readout) or (op_name != "measure" and not gates):
            continue
        for qargs, prop in (backend.target[op_name] or {}).items():
            if qargs is None or prop is None or not prop.error or not set(qargs) <= used:
                continue
            limits.append((tuple(qargs), _largest_error(op_name, len(qargs)) / prop.error))
    if readout:
        for q, pair in calibrated_readout(backend, sorted(used)).errors.items():
            if max(pair) > 0:
                limits.append(((q,), 1.0 / max(pair)))
    return limits


def _largest_error(op_name: str, num_qubits: int) -> float:
    """The largest physical error of an instruction: 1 for a measurement, else the
    depolarizing bound 2**n / (2**n + 1) of an average gate infidelity."""
    return 1.0 if op_name == "measure" else 2 ** num_qubits / (2 ** num_qubits + 1)


def device_readout(backend: str | BackendV2, *, qubits: Sequence[int],
                   scale: float = 1.0, clip: bool = False) -> NoiseModel:
    """Only the device's readout errors (as :func:`device` reads them) on ``qubits``: gates
    are ideal. Set beside the full device model, it separates gate noise from readout noise.
    ``scale`` and ``clip`` as in :func:`device`."""
    if isinstance(backend, str):
        backend = get_backend(backend)
    basis = [name for name in backend.target.operation_names if name not in _NOT_GATES]
    model = NoiseModel(basis_gates=basis)
    _add_readout(model, backend, sorted({int(q) for q in qubits}), float(scale), clip)
    return model


def _add_readout(model: NoiseModel, backend: BackendV2, used: Sequence[int], scale: float,
                 clip: bool) -> None:
    readout = calibrated_readout(backend, used)
    for q, (p10, p01) in readout.errors.items():
        p10, p01 = p10 * scale, p01 * scale
        if clip:
            p10, p01 = min(p10, 1.0), min(p01, 1.0)
        if max(p10, p01) > 1:
            raise ConfigError(
                f"scale {scale:g} makes the readout error of qubit {q} of {backend.name} "
                f"{max(p10, p01):.3g}, above 1; use a scale <= {1 / max(p10, p01) * scale:.3g}")
        if p10 or p01:
            model.add_readout_error(ReadoutError([[1 - p10, p10], [p01, 1 - p01]]), [q],
                                    warnings=False)


@dataclass(frozen=True)
class CalibratedReadout:
    """Each qubit's calibrated readout error ``(P(1|0), P(0|1))`` and where it was read."""

    errors: dict[int, tuple[float, float]]
    source: str  # "properties (asymmetric)", "target (symmetric)" or "none"


def calibrated_readout(backend: BackendV2, qubits: Sequence[int]) -> CalibratedReadout:
    """The readout errors of ``qubits``: the calibration's own P(1|0) and P(0|1) from the
    backend's properties where it has them, else the target's single ``measure`` error for
    both (qubits without either have none)."""
    values = _property_readout(backend)
    if values is not None and all(values[q] is not None for q in qubits):
        return CalibratedReadout({int(q): (float(values[q][0]), float(values[q][1]))
                                  for q in qubits}, "properties (asymmetric)")
    errors = {}
    measure = backend.target["measure"] if "measure" in backend.target else {}
    for q in qubits:
        props = measure.get((int(q),)) if measure else None
        if props is not None and props.error is not None:
            errors[int(q)] = (float(props.error), float(props.error))
    return CalibratedReadout(errors, "target (symmetric)" if errors else "none")


def _property_readout(backend: BackendV2) -> list | None:
    """Per-qubit ``[P(1|0), P(0|1)]`` from ``backend.properties()``, or ``None`` when the
    backend has no properties (simulators, targets built by hand)."""
    properties = getattr(backend, "properties", None)
    if not callable(properties):
        return None
    try:
        props = properties()
    except Exception:  # a backend whose properties cannot be read has none to offer
        return None
    if props is None or not hasattr(props, "qubits"):
        return None
    values = readout_error_values(props)
    return values if len(values) == backend.target.num_qubits else None


def _scaled_target(target: Target, used: set[int], scale: float, name: str,
                   clip: bool = False) -> Target:
    """A copy of ``target`` holding only instructions on ``used`` qubits, gate error rates
    and relaxation rates scaled (the measurement's error is readout, scaled apart)."""
    props = list(target.qubit_properties or [None] * target.num_qubits)
    scaled_props = []
    for q, p in enumerate(props):
        if p is not None and q in used and scale > 0:
            p = type(p)(t1=None if p.t1 is None else p.t1 / scale,
                        t2=None if p.t2 is None else p.t2 / scale,
                        frequency=p.frequency)
        scaled_props.append(p)
    out = Target(num_qubits=target.num_qubits, qubit_properties=scaled_props)
    for op_name in target.operation_names:
        entries = target[op_name]
        if entries is None or op_name in ("for_loop", "if_else", "switch_case", "while_loop"):
            continue
        kept = {}
        for qargs, prop in entries.items():
            if qargs is None or not set(qargs) <= used or prop is None:
                continue
            error = prop.error
            if error is not None and scale != 1 and op_name != "measure":  # readout: apart
                error = error * scale
                upper = _largest_error(op_name, len(qargs))
                if clip:
                    error = min(error, upper)
                if error > upper:
                    raise ConfigError(
                        f"scale {scale:g} makes the {op_name} error on qubits {list(qargs)} of "
                        f"{name} {error:.3g}, above the largest physical value {upper:.3g}; "
                        f"use a scale <= {upper / prop.error:.3g}"
                    )
            kept[qargs] = InstructionProperties(duration=prop.duration, error=error)
        if kept:
            out.add_instruction(target.operation_from_name(op_name), kept, name=op_name)
    return out


# ------------------------------------------------------------------ inspection
def readout_matrices(noise_model: NoiseModel, qubits: Sequence[int]) -> list[np.ndarray | None]:
    """Each qubit's readout assignment matrix ``M[true, observed]`` (``None`` if ideal)."""
    default = None
    local: dict[int, np.ndarray] = {}
    for entry in noise_model.to_dict()["errors"]:
        if entry["type"] != "roerror":
            continue
        matrix = np.asarray(entry["probabilities"], dtype=float)
        if matrix.shape != (2, 2):
            raise ConfigError("only single-qubit readout errors are supported")
        if "gate_qubits" in entry:
            for gate_qubits in entry["gate_qubits"]:
                local[int(gate_qubits[0])] = matrix
        else:
            default = matrix
    return [local.get(int(q), default) for q in qubits]


def gates_without_noise(circuit: QuantumCircuit, noise_model: NoiseModel) -> list[tuple]:
    """``(name, qubits)`` of each gate in ``circuit`` that the model leaves noiseless."""
    all_qubit = set()
    local: set[tuple[str, tuple[int, ...]]] = set()
    for entry in noise_model.to_dict()["errors"]:
        if entry["type"] == "roerror":
            continue
        for op in entry["operations"]:
            if "gate_qubits" in entry:
                local.update((op, tuple(int(q) for q in qs)) for qs in entry["gate_qubits"])
            else:
                all_qubit.add(op)
    missing = []
    for inst in circuit.data:
        name = inst.operation.name
        if name in _NOT_GATES:
            continue
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if name not in all_qubit and (name, qargs) not in local:
            missing.append((name, qargs))
    return missing

