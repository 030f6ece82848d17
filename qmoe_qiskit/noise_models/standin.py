"""Hardware stand-ins: backends whose noise is known, for rehearsing a hardware study offline.

A stand-in is an ``AerSimulator`` with a fake device's target (so circuits compile and are
placed exactly as for the device) and a noise model of your choosing. Handed to
:func:`qmoe_qiskit.jobs.connect`, it runs in Qiskit Runtime's local testing mode through the
same job layer as real hardware (cache, ledger, batch mode). ``stand_in("fake_manila",
scale=2.5)`` is the device with every error rate multiplied by 2.5, from the same reading of
the calibration as :func:`~.factories.device` (asymmetric readout included), so a study on it
has a known truth to recover. Like a device, it relaxes while qubits wait: each circuit is
scheduled (ALAP, the device's durations) and relaxes on its waits (:mod:`.relaxation`).

The truth can be off the calibration in the ways real devices are:

- ``readout_scale``: readout errors times another factor than the gates;
- ``drift``: every job draws its own hidden scale from N(scale, (drift · scale)²) (readout
  moving with it), as a device drifts between jobs. The draws are seeded and recorded in
  ``truth["job_scales"]``, never shown to the jobs' results. The runtime's local testing mode
  runs each job on its own deep copy of the backend; a drifting stand-in draws that copy's
  noise.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
from qiskit.providers import BackendV2
from qiskit_aer import AerSimulator
from qiskit_aer.backends.backendconfiguration import AerBackendConfiguration
from qiskit_aer.noise import NoiseModel

from ..backends import get_backend
from ..errors import ConfigError
from .factories import MAX_SCALE, TOO_NOISY, device, scale_limits
from ..transpile import used_qubits
from .relaxation import idle_relaxed, scheduled

__all__ = ["StandIn", "stand_in", "stand_in_name"]

logger = logging.getLogger(__name__)

MAX_DRIFT = 1.0  # the largest job-to-job drift: a std as large as the scale itself
MAX_DRIFT_WHY = ("a drift is the std of each job's scale relative to the scale, and past 1 "
                 "more than one job in six would draw a negative scale, run as noiseless")


WIDE = 24  # qubits a circuit may touch before the stand-in simulates it as a matrix product
# state (a state vector of 25 qubits takes 512 MiB)


class StandIn(AerSimulator):
    """An ``AerSimulator`` standing in for ``device``: its target, its calibration date, and
    the noise ``truth`` describes (``{"noise_scale": 2.5, ...}``, or the name of a custom
    model)."""

    device: str
    truth: dict
    _device_backend: BackendV2 | None = None
    _idle_scale: float | None = None  # relax while idle, T1 and T2 divided by this
    _drift: "_Drift | None" = None

    def run(self, circuits, parameter_binds=None, **run_options):
        """Aer's ``run``, on the circuits as the device schedules them (relaxing while
        idle) where the stand-in has idle noise."""
        single = not isinstance(circuits, (list, tuple))
        circuits = [circuits] if single else list(circuits)
        if self._idle_scale is not None:
            circuits = [idle_relaxed(scheduled(c, self.target), self._device_backend,
                                     scale=self._idle_scale) for c in circuits]
        if "method" not in run_options and \
                max((len(used_qubits(c)) for c in circuits), default=0) > WIDE:
            # the runtime Estimator twirls and measures every qubit of a wide device: a state
            # vector of them cannot be held, but they stay all but unentangled
            run_options["method"] = "matrix_product_state"
        return super().run(circuits[0] if single else circuits,
                           parameter_binds=parameter_binds, **run_options)

    def __deepcopy__(self, memo):
        twin = type(self).__new__(type(self))
        memo[id(self)] = twin
        for key, value in self.__dict__.items():
            shared = key in ("_drift", "_device_backend", "truth")
            setattr(twin, key, value if shared else copy.deepcopy(value, memo))
        if self._drift is not None:  # a job's copy: its own hidden noise
            twin._idle_scale = self._drift.draw(twin, self.truth)
        return twin


class _Drift:
    """The job-to-job draws of a drifting stand-in (shared by the stand-in and its copies)."""

    def __init__(self, backend: BackendV2, scale: float, readout_scale: float, drift: float,
                 seed: int, idle: bool):
        self.backend, self.scale, self.readout_scale = backend, scale, readout_scale
        self.drift, self.idle = drift, idle
        self.rng = np.random.default_rng(seed)

    def draw(self, twin: StandIn, truth: dict) -> float | None:
        """Give ``twin`` a freshly drawn noise model; returns its idle scale."""
        scale = max(0.0, float(self.rng.normal(self.scale, self.drift * self.scale)))
        factor = scale / self.scale if self.scale else 0.0
        twin.set_options(noise_model=device(self.backend, scale=scale, clip=True,
                                            readout_scale=self.readout_scale * factor))
        truth.setdefault("job_scales", []).append(scale)
        return scale if self.idle else None


def stand_in_name(device_name: str, scale: float, *, readout_scale: float | None = None,
                  drift: float = 0.0) -> str:
    """The name a scaled stand-in runs under (part of every cache key)."""
    name = f"{device_name}_noise_x{scale:g}"
    if readout_scale is not None and readout_scale != scale:
        name += f"_readout_x{readout_scale:g}"
    if drift:
        name += f"_drift{drift:g}"
    return name


def stand_in(backend: str | BackendV2, *, scale: float | None = None,
             readout_scale: float | None = None, drift: float = 0.0, seed: int = 0,
             idle_noise: bool | None = None, noise_model: NoiseModel | None = None,
             name: str | None = None) -> StandIn:
    """A stand-in for ``backend`` (a fake backend name or object) whose noise is the device
    model with every gate rate times ``scale`` and readout times ``readout_scale`` (default
    ``scale``), each job's scale drawn from N(scale, (drift · scale)²) with ``drift`` (seeded
    by ``seed``); or ``noise_model`` (then give it a ``name``). ``idle_noise``: qubits relax
    while they wait, T1 and T2 of the device divided by the job's scale (unscaled with a
    custom model); by default on for a scaled device, off for a custom model (whose noise is
    then exactly the model's).

    Errors that ``scale`` would push past their largest physical value (a few bad qubits of a
    large device) are held at it, and named in a warning: circuits placed on those qubits do
    not see a pure scaling. The usual low-error placement avoids them.
    """
    device_backend = get_backend(backend) if isinstance(backend, str) else backend
    if (scale is None) == (noise_model is None):
        raise ConfigError("give a stand-in either scale= or noise_model=")
    if noise_model is not None and (readout_scale is not None or drift):
        raise ConfigError("readout_scale= and drift= describe a scaled device; a stand-in "
                          "with a custom noise_model takes neither")
    if scale is not None:
        scale = _check_scale("noise scale", scale)
        readout = scale if readout_scale is None else _check_scale("readout scale",
                                                                   readout_scale)
        drift = _check_scale("noise drift", drift, MAX_DRIFT)
        noise_model = device(device_backend, scale=scale, clip=True, readout_scale=readout)
        clipped = _clipped(device_backend, scale * (1 + 3 * drift), readout * (1 + 3 * drift))
        if clipped:
            logger.warning("noise scale %g (readout %g%s) holds the errors of %s qubits %s at "
                           "their largest physical value", scale, readout,
                           f", drift {drift:g}" if drift else "", device_backend.name, clipped)
        name = name or stand_in_name(device_backend.name, scale, readout_scale=readout_scale,
                                     drift=drift)
        truth = {"noise_scale": scale, "readout_scale": readout}
        if drift:
            truth.update(noise_drift=drift, drift_seed=int(seed))
        idle_scale = scale
    else:
        if not name:
            raise ConfigError("a stand-in with a custom noise_model needs a name= (it is part "
                              "of every cache key)")
        truth = {"noise_model": name}
        idle_scale = 1.0
    idle_noise = scale is not None if idle_noise is None else bool(idle_noise)
    truth["idle_noise"] = idle_noise
    target = device_backend.target
    configuration = AerBackendConfiguration(
        backend_name=name, backend_version=str(getattr(device_backend, "backend_version", "0")),
        n_qubits=device_backend.num_qubits, basis_gates=list(device_backend.operation_names),
        gates=[], max_shots=int(1e6),
        coupling_map=list(device_backend.coupling_map.get_edges()),
        max_experiments=device_backend.max_circuits,
        description=f"stand-in for {device_backend.name}: {truth}")
    simulator = StandIn(configuration=configuration, target=target, noise_model=noise_model)
    simulator.device = device_backend.name
    simulator.truth = truth
    simulator._device_backend = device_backend
    simulator._idle_scale = idle_scale if idle_noise else None
    if drift:
        simulator._drift = _Drift(device_backend, scale, readout, drift, seed, idle_noise)
    simulator.calibration_id = f"{_calibration_date(device_backend)} {truth}"
    return simulator


def _check_scale(what: str, value, top: float = MAX_SCALE) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not np.isfinite(value) or value < 0:
        raise ConfigError(f"{what} must be a finite number >= 0, got {value!r}")
    if value > top:
        raise ConfigError(f"{what} must be at most {top:g}, got {value:g}: "
                          + (TOO_NOISY if top == MAX_SCALE else MAX_DRIFT_WHY))
    return float(value)


def _calibration_date(backend: BackendV2) -> str:
    try:
        date = backend.properties().last_update_date
    except Exception:  # a backend without properties
        return "none"
    return date.isoformat() if date is not None else "none"


def _clipped(backend: BackendV2, scale: float, readout: float) -> list[int]:
    """Qubits with an error that ``scale`` (gates) or ``readout`` pushes past its largest
    physical value (drifting stand-ins: up to three standard deviations up)."""
    qubits = range(backend.num_qubits)
    limits = [(qargs, limit, scale) for qargs, limit in
              scale_limits(backend, qubits, readout=False)]
    limits += [(qargs, limit, readout) for qargs, limit in
               scale_limits(backend, qubits, gates=False)]
    return sorted({q for qargs, limit, factor in limits if limit < factor for q in qargs})
