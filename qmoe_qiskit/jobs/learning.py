"""Layer noise learning for PEA and PEC: the runtime's ``NoiseLearnerV3`` through the job layer.

Probabilistic error amplification and cancellation need the Pauli-Lindblad noise of each
distinct entangling layer of the circuits they run. The runtime Estimator finds those layers
(``find_unique_layers``, boxed and twirled as its own run will box them); the noise learner
measures them in a job of its own. That job is a job like any other here: recorded in the
ledger (with a tag) before it is waited on, resumed by id or tag after a crash, its learned maps
kept in the result cache under a key of the ISA circuit, the backend and calibration, the
learner's options and the repeat, and priced by the dry run (every learning circuit's
instances x shots x (duration + repetition delay), from the learner's own program, built
locally). The learned maps are stored as sparse lists (``PauliLindbladMap.to_sparse_list``) and
rebuilt exactly.

The noise learner needs ``qiskit-noise-learning`` (the ``mitigation`` extra:
``bash scripts/setup.sh --test``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from ..errors import ConfigError, install_hint
from .cache import pub_key
from .layer import DEFAULT_REP_DELAY

__all__ = ["LEARNER", "learner_options", "learning_key", "learned_payload", "learned_maps",
           "learning_program", "require_learner"]

LEARNER = "noise learner"  # the ledger's and records' name for these jobs


def require_learner():
    """``NoiseLearnerV3``, or a one-line error naming the package that runs it."""
    try:
        import qiskit_noise_learning  # noqa: F401  (the learner's preparation needs it)
    except ImportError:
        raise ConfigError("pea and pec learn each layer's noise first, which needs "
                          "qiskit-noise-learning, which is not installed: "
                          + install_hint("mitigation")) from None
    from qiskit_ibm_runtime.executor_noise_learner import NoiseLearnerV3

    return NoiseLearnerV3


def learner_options(tag: str | None = None, extras: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The noise learner's options: the runtime's defaults, the job tag, and the layer's extras
    (the local simulator's seed)."""
    options: dict[str, Any] = dict(extras or {})
    if tag is not None:
        options["environment"] = {"job_tags": [tag]}
    return options


def learning_key(isa: QuantumCircuit, *, backend: str, calibration: str,
                 options: dict[str, Any], repeat: int = 0) -> str:
    """The cache key of the noise learned for ``isa``'s layers: the circuit, the backend and
    its calibration, the Estimator's boxing options and the learner's (no parameter values:
    twirled layers do not depend on them)."""
    return pub_key(isa, np.zeros((0, 0)), shots=0, backend=backend, calibration=calibration,
                   options={"learning": LEARNER, **options}, repeat=repeat)


def learned_payload(results) -> dict[str, Any]:
    """A noise learner's results as JSON-able sparse lists, one per layer, in order."""
    maps = results.to_pauli_lindblad_maps()
    return {"maps": [[[paulis, [int(q) for q in qubits], float(rate)]
                      for paulis, qubits, rate in m.to_sparse_list()] for m in maps],
            "num_qubits": [int(m.num_qubits) for m in maps],
            "gamma": [float(m.gamma()) for m in maps]}


def learned_maps(payload: dict[str, Any]) -> list:
    """The ``PauliLindbladMap`` objects :func:`learned_payload` wrote."""
    from qiskit.quantum_info import PauliLindbladMap

    return [PauliLindbladMap.from_sparse_list([(p, q, r) for p, q, r in terms], num_qubits=n)
            for terms, n in zip(payload["maps"], payload["num_qubits"])]


def learning_program(layers: Sequence, backend, extras: dict[str, Any] | None = None
                     ) -> tuple[int, int, float | None]:
    """What learning ``layers`` runs: ``(circuit instances, shots each, estimated seconds)``
    from the learner's own program (built locally, nothing submitted); seconds ``None`` where
    the backend reports no gate durations."""
    require_learner()
    from qiskit_ibm_runtime.executor_noise_learner.prepare import prepare
    from qiskit_ibm_runtime.options_models.noise_learner_v3 import NoiseLearnerV3Options

    program, _ = prepare(instructions=list(layers),
                         options=NoiseLearnerV3Options(**learner_options(None, extras)),
                         backend=backend)
    rep_delay = getattr(backend, "default_rep_delay", None) or DEFAULT_REP_DELAY
    instances = sum(int(item.size()) for item in program.items)
    try:
        seconds = float(sum(item.size() * program.shots * (
            item.circuit.estimate_duration(backend.target, unit="s") + rep_delay)
            for item in program.items))
    except Exception:  # targets without gate durations
        seconds = None
    return instances, int(program.shots), seconds
