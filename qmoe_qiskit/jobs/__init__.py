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

from .cache import ResultCache, default_cache_dir, pub_key
from .ledger import Ledger, LedgerEntry
from .estimator import Resilience, RuntimeEstimator
from .layer import JobLayer, JobOptions, PubRecord
from .sampler import RuntimeSampler
from .service import Connection, connect

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
