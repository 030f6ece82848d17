"""Training under the noise a backend showed: the model ``qmoe compare`` fitted to its counts.

``qmoe compare`` fits a depolarizing ε and a device scale k to what a backend measured. A
:class:`NoiseFrom` reads those fits back from the compare folder and makes the simulation a
model is trained under (the fast noisy engine, reverse-mode gradients): the device's ISA on
the same physical qubits (placed as the job layer places them), with the fitted noise. Train,
run on the same backend again, and compare: the loop from hardware data to a model made for
that hardware.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends import get_backend
from ..errors import ConfigError, DataError, choices
from ..jobs.mitigation import parse_mitigation
from ..noise_models import NoisySimulation, depolarizing, device
from ..noise_models.factories import MAX_SCALE
from .base import read_results

__all__ = ["NoiseFrom", "FittedNoise", "FITTED_MODELS", "READOUT_ONLY"]

FITTED_MODELS = ("best", "device_scaled_fit", "depolarizing_fit")
READOUT_ONLY = ("readout", "trex")  # techniques that remove readout errors and nothing else


@dataclass(frozen=True)
class FittedNoise:
    """One fitted noise model, as training needs it."""

    source: str  # the compare folder
    model: str  # "device_scaled_fit" or "depolarizing_fit"
    value: float  # the fitted scale k, or epsilon
    device: str  # whose calibration (and ISA) the fit refers to
    qubits: tuple[int, ...]  # physical qubits the run's circuits used
    basis_gates: tuple[str, ...]  # the run's ISA gates (where depolarizing noise goes)
    readout: bool = True  # False: the fit without its readout errors (the model will run
    # with a technique that removes them)
    mitigate: str | None = None  # that technique

    def simulation(self) -> NoisySimulation:
        backend = _backend(self.device)
        if self.model == "device_scaled_fit":
            noise = device(backend, qubits=self.qubits, scale=self.value, clip=True,
                           readout=self.readout)
        else:
            noise = depolarizing(self.value, basis_gates=self.basis_gates,
                                 **({} if self.readout else {"p1": self.value,
                                                             "p2": self.value, "readout": 0.0}))
        return NoisySimulation(noise, backend=backend)

    def simulation_for(self, model) -> NoisySimulation:
        """:meth:`simulation`, refused in one line where the device fit does not cover
        ``model``: a circuit placed on a physical qubit the compared run did not use would
        train with that qubit's gates and readout noiseless (the fit restricts the device's
        noise to the qubits it was fitted on). The depolarizing fit acts on every qubit."""
        simulation = self.simulation()
        if self.model != "device_scaled_fit":
            return simulation
        for layer in model.quantum_layers():
            placed = simulation.used_qubits(layer.qnn.circuit)
            uncovered = sorted(set(placed) - set(self.qubits))
            if uncovered:
                raise ConfigError(
                    f"--noise-from {self.source}: the device fit covers physical qubits "
                    f"{list(self.qubits)} of {self.device} (the compared run's), but this "
                    f"model's {layer.ansatz.num_qubits}-qubit circuit is placed on {placed}: "
                    f"the gates on {uncovered} would train noiseless; train a model as wide "
                    f"as the one compared, compare this model first, or use --noise-model "
                    f"depolarizing_fit (it acts on every qubit)")
        return simulation

    def to_dict(self) -> dict[str, Any]:
        return {"compare": self.source, "model": self.model, "value": self.value,
                "device": self.device, "qubits": list(self.qubits),
                "basis_gates": list(self.basis_gates), "readout": self.readout,
                "mitigate": self.mitigate}


@dataclass(frozen=True)
class NoiseFrom:
    """Train under the noise model fitted in the ``qmoe compare`` folder ``compare``:
    ``model`` names the fit, or ``"best"`` for the more likely of the two. ``mitigate``: the
    technique the model will run with, by name; ``readout`` and ``trex`` remove readout
    errors, so the model trains under the fit without them (what is left for it to meet)."""

    compare: str
    model: str = "best"
    mitigate: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "compare", str(self.compare))
        if self.model not in FITTED_MODELS:
            raise ConfigError(f"unknown fitted noise model {self.model!r}; valid: "
                              f"{choices(FITTED_MODELS)}")
        mitigation = parse_mitigation(self.mitigate)
        if mitigation is not None:
            if mitigation.name not in READOUT_ONLY:
                raise ConfigError(
                    f"training under the fitted noise models what {mitigation.name} leaves "
                    f"behind only where it removes readout errors alone; valid: "
                    f"{choices(READOUT_ONLY)} (or no --mitigate: the raw fit)")
            object.__setattr__(self, "mitigate", mitigation.name)

    def resolve(self) -> FittedNoise:
        """The fit, read and checked; one-line errors for a folder that is not a compare."""
        folder = Path(self.compare)
        _, results = read_results(folder, "compare")
        try:
            fit, models = results["fit"], results["models"]
            name = self.model
            if name == "best":
                name = max(("device_scaled_fit", "depolarizing_fit"),
                           key=lambda m: models[m]["log_likelihood"])
            key = "scale" if name == "device_scaled_fit" else "epsilon"
            qubits = results.get("used_qubits") or [row["qubit"] for row in results["readout"]]
            basis = results.get("basis_gates") or ["rz", "sx", "x", "cx", "ecr"]
            fitted = FittedNoise(str(folder), name, float(fit[key]), str(results["device"]),
                                 tuple(int(q) for q in qubits), tuple(basis),
                                 readout=self.mitigate is None, mitigate=self.mitigate)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"the compare results in {folder} lack the fit ({exc!r}); run "
                            f"qmoe compare again") from None
        top = MAX_SCALE if key == "scale" else 1.0
        if not 0 <= fitted.value <= top:  # NaN fails too
            raise DataError(f"the compare results in {folder} hold the fitted {key} "
                            f"{fitted.value:g}, outside [0, {top:g}]: the file is damaged; run "
                            f"qmoe compare again")
        if not fit.get(f"{key}_converged", True):
            raise ConfigError(f"the {key} fit in {folder} did not converge "
                              f"({fit.get(key + '_message')}); train under the other model "
                              f"(--noise-model) or compare with more shots")
        return fitted


def _backend(name: str):
    """The device whose ISA and calibration the fit refers to: a fake backend offline, an IBM
    backend (its current calibration) with the saved account."""
    if name.startswith("fake_"):
        return get_backend(name)
    from ..jobs import connect  # an account is needed only for real backends

    return connect(name).backend
