"""Hardware stand-ins: backends whose noise is known, for rehearsing a hardware study offline.

A stand-in is an ``AerSimulator`` with a fake device's target (so circuits compile and are
placed exactly as for the device) and a noise model of your choosing. Handed to
:func:`qmoe_qiskit.jobs.connect`, it runs in Qiskit Runtime's local testing mode through the
same job layer as real hardware (cache, ledger, batch mode). ``stand_in("fake_manila",
scale=2.5)`` is the device with every error rate multiplied by 2.5, from the same reading of
the calibration as :func:`~.factories.device` (asymmetric readout included), so a study on it
has a known truth to recover.
"""

from __future__ import annotations

import logging

import numpy as np
from qiskit.providers import BackendV2
from qiskit_aer import AerSimulator
from qiskit_aer.backends.backendconfiguration import AerBackendConfiguration
from qiskit_aer.noise import NoiseModel

from ..backends import get_backend
from ..errors import ConfigError
from .factories import device, scale_limits

__all__ = ["StandIn", "stand_in", "stand_in_name"]

logger = logging.getLogger(__name__)


class StandIn(AerSimulator):
    """An ``AerSimulator`` standing in for ``device``: its target, its calibration date, and
    the noise ``truth`` describes (``{"noise_scale": 2.5}``, or the name of a custom model)."""

    device: str
    truth: dict


def stand_in_name(device_name: str, scale: float) -> str:
    """The name a scaled stand-in runs under (part of every cache key)."""
    return f"{device_name}_noise_x{scale:g}"


def stand_in(backend: str | BackendV2, *, scale: float | None = None,
             noise_model: NoiseModel | None = None, name: str | None = None) -> StandIn:
    """A stand-in for ``backend`` (a fake backend name or object) whose noise is the device
    model with every rate times ``scale``, or ``noise_model`` (then give it a ``name``).

    Errors that ``scale`` would push past their largest physical value (a few bad qubits of a
    large device) are held at it, and named in a warning: circuits placed on those qubits do
    not see a pure scaling. The usual low-error placement avoids them.
    """
    device_backend = get_backend(backend) if isinstance(backend, str) else backend
    if (scale is None) == (noise_model is None):
        raise ConfigError("give a stand-in either scale= or noise_model=")
    if scale is not None:
        scale = float(scale)
        if not np.isfinite(scale) or scale < 0:
            raise ConfigError(f"noise scale must be a finite number >= 0, got {scale:g}")
        noise_model = device(device_backend, scale=scale, clip=True)
        clipped = _clipped(device_backend, scale)
        if clipped:
            logger.warning("noise scale %g holds the errors of %s qubits %s at their largest "
                           "physical value", scale, device_backend.name, clipped)
        name = name or stand_in_name(device_backend.name, scale)
        truth = {"noise_scale": scale}
    else:
        if not name:
            raise ConfigError("a stand-in with a custom noise_model needs a name= (it is part "
                              "of every cache key)")
        truth = {"noise_model": name}
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
    simulator.calibration_id = f"{_calibration_date(device_backend)} {truth}"
    return simulator


def _calibration_date(backend: BackendV2) -> str:
    try:
        date = backend.properties().last_update_date
    except Exception:  # a backend without properties
        return "none"
    return date.isoformat() if date is not None else "none"


def _clipped(backend: BackendV2, scale: float) -> list[int]:
    """Qubits with an error that ``scale`` pushes past its largest physical value."""
    limits = scale_limits(backend, range(backend.num_qubits))
    return sorted({q for qargs, limit in limits if limit < scale for q in qargs})
