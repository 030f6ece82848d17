"""Thermal relaxation in the device model: while qubits wait, and set against the calibration.

**Idle time.** Aer attaches noise to gates, so a qubit that waits for others does not relax in a
plain noise model. :func:`scheduled` schedules an ISA circuit as late as possible (ALAP, the
backend's gate and measurement durations) and turns its waits into delays; :func:`idle_relaxed`
puts the thermal relaxation of each qubit's T1, T2 (divided by a scale, as :func:`~.device`
scales them) on those delays with Aer's ``RelaxationNoisePass``. Delays on qubits no gate
touches are dropped: such a qubit stays in |0>, which relaxation leaves alone, and keeping them
would make the simulated register wider for nothing.

**Consistency.** Aer's ``basic_device_gate_errors`` composes each gate's thermal relaxation
with a depolarizing channel chosen so that the pair has the calibrated gate error; where
relaxation alone already exceeds it, it adds no depolarizing error and keeps the relaxation, so
that gate is noisier in the model than its calibration says. :func:`relaxation_excess` lists
those gates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Delay
from qiskit.providers import BackendV2
from qiskit.quantum_info import average_gate_fidelity
from qiskit.transpiler import InstructionDurations, PassManager, Target
from qiskit.transpiler.passes import ALAPScheduleAnalysis, PadDelay
from qiskit_aer.noise import RelaxationNoisePass, thermal_relaxation_error

from ..errors import ConfigError
from ..transpile import used_qubits

__all__ = ["scheduled", "idle_relaxed", "relaxation_times", "relaxation_excess",
           "RelaxationExcess"]


def scheduled(isa: QuantumCircuit, target: Target) -> QuantumCircuit:
    """``isa`` scheduled ALAP with ``target``'s durations, each wait a ``delay`` (in ``dt``),
    on the qubits it uses only."""
    if target.dt is None:
        raise ConfigError("the backend reports no sample time (dt): its circuits cannot be "
                          "scheduled for idle-time relaxation; use --no-idle-noise")
    durations = _durations(isa, target)
    passes = [ALAPScheduleAnalysis(target=target), PadDelay(target=target)] \
        if durations is None else \
        [ALAPScheduleAnalysis(durations=durations), PadDelay(durations=durations)]
    try:
        timed = PassManager(passes).run(isa)
    except Exception as exc:  # a gate without a duration in the target
        raise ConfigError(f"circuit {isa.name!r} cannot be scheduled on this backend "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())}); use "
                          f"--no-idle-noise") from None
    busy = set(used_qubits(isa))
    out = timed.copy_empty_like()
    for inst in timed.data:
        if inst.operation.name == "delay" and \
                not {timed.find_bit(q).index for q in inst.qubits} <= busy:
            continue
        out.append(inst)
    return out


def _durations(isa: QuantumCircuit, target: Target) -> InstructionDurations | None:
    """The target's durations with 0 for the instructions that take no time on a device but
    that the target does not know: the noise channels the runtime's local executor injects
    (PEA's amplified noise, ``quantum_channel``). ``None`` where the circuit has none (the
    target schedules it as it is)."""
    instant = {(inst.operation.name, tuple(isa.find_bit(q).index for q in inst.qubits))
               for inst in isa.data if inst.operation.name in INSTANT
               and inst.operation.name not in target.operation_names}
    if not instant:
        return None
    return target.durations().update([(name, list(qubits), 0, "dt")
                                      for name, qubits in instant])


INSTANT = ("quantum_channel",)  # injected noise: no duration on the device


def relaxation_times(backend: BackendV2) -> tuple[list[float], list[float]]:
    """Each qubit's ``(T1s, T2s)`` in seconds from the backend's target (T2 held at 2 T1, the
    largest physical value, as Aer's device model holds it; ``inf`` where unknown)."""
    props = backend.target.qubit_properties or [None] * backend.target.num_qubits
    t1s, t2s = [], []
    for p in props:
        t1 = getattr(p, "t1", None) or np.inf
        t2 = getattr(p, "t2", None) or np.inf
        t1s.append(float(t1))
        t2s.append(float(min(t2, 2 * t1)))
    return t1s, t2s


def idle_relaxed(timed: QuantumCircuit, backend: BackendV2, *, scale: float = 1.0
                 ) -> QuantumCircuit:
    """A :func:`scheduled` circuit with thermal relaxation on its delays (T1 and T2 of each
    qubit divided by ``scale``; ``scale=0`` leaves it as it is)."""
    if scale == 0 or not any(inst.operation.name == "delay" for inst in timed.data):
        return timed
    t1s, t2s = relaxation_times(backend)
    relax = RelaxationNoisePass([t / scale for t in t1s], [t / scale for t in t2s],
                                dt=backend.target.dt, op_types=Delay)
    return relax(timed)


@dataclass(frozen=True)
class RelaxationExcess:
    """A gate whose thermal relaxation during its duration exceeds its calibrated error."""

    gate: str
    qubits: tuple[int, ...]
    calibrated_error: float
    relaxation_error: float  # 1 − average gate fidelity of the relaxation channel alone

    @property
    def excess(self) -> float:
        """How much noisier the model's gate is than its calibration (relative)."""
        return self.relaxation_error / self.calibrated_error - 1

    def to_dict(self) -> dict:
        return {"gate": self.gate, "qubits": list(self.qubits),
                "calibrated_error": self.calibrated_error,
                "relaxation_error": self.relaxation_error, "excess": self.excess}


def relaxation_excess(backend: BackendV2, qubits: Sequence[int], *,
                      gates: Sequence[str] | None = None) -> list[RelaxationExcess]:
    """Every calibrated gate on ``qubits`` (of the names ``gates``, default all) whose
    relaxation during it alone exceeds its calibrated error, worst first."""
    used = {int(q) for q in qubits}
    t1s, t2s = relaxation_times(backend)
    target = backend.target
    rows = []
    for name in target.operation_names:
        if name in ("measure", "delay", "reset") or (gates is not None and name not in gates):
            continue
        for qargs, prop in (target[name] or {}).items():
            if qargs is None or prop is None or not prop.error or not prop.duration or \
                    not set(qargs) <= used:
                continue
            if not all(np.isfinite(t1s[q]) for q in qargs):
                continue  # no relaxation time: the model has no relaxation on it either
            error = None
            for q in qargs:
                one = thermal_relaxation_error(t1s[q], t2s[q], prop.duration)
                error = one if error is None else one.expand(error)
            relax = 1 - float(average_gate_fidelity(error))
            if relax > prop.error:
                rows.append(RelaxationExcess(name, tuple(int(q) for q in qargs),
                                             float(prop.error), relax))
    return sorted(rows, key=lambda r: -r.excess)
