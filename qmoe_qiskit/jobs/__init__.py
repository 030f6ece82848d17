"""The IBM Quantum job layer: Runtime submission, result cache, job ledger.

:func:`connect` reaches a backend (an IBM Quantum device with the saved account, or a fake
backend in the runtime's local testing mode); :class:`RuntimeSampler` is a V2 sampler a QNN can
run on, which transpiles once per circuit, sends every binding as one PUB in batch mode, answers
repeated PUBs from the :class:`ResultCache` and records each job in the :class:`Ledger` before
waiting on it, so an interrupted run resumes by fetching its jobs. Estimator-read circuits run
through :class:`~qmoe_qiskit.primitives.SamplerEstimator` on top of it, or, where the runtime
is to mitigate gate noise (TREX, ZNE), through :class:`RuntimeEstimator` beside it; both share
one :class:`JobLayer`.
"""

import importlib

# Each name is loaded from its module when first asked for: ``qmoe jobs list`` reads the
# ledger without importing the runtime.
_WHERE = {
    "ResultCache": "cache", "default_cache_dir": "ledger", "pub_key": "cache",
    "Ledger": "ledger", "LedgerEntry": "ledger",
    "Resilience": "estimator", "RuntimeEstimator": "estimator",
    "JobLayer": "layer", "JobOptions": "layer", "PubRecord": "layer",
    "RuntimeSampler": "sampler",
    "Connection": "service", "connect": "service",
}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "connect",
    "Connection",
    "JobLayer",
    "JobOptions",
    "RuntimeSampler",
    "RuntimeEstimator",
    "Resilience",
    "PubRecord",
    "ResultCache",
    "Ledger",
    "LedgerEntry",
    "pub_key",
    "default_cache_dir",
]
