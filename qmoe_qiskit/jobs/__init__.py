"""The IBM Quantum job layer: ISA transpilation, Runtime submission, result cache, job ledger.

:func:`connect` reaches a backend (an IBM Quantum device with the saved account, or a fake
backend in the runtime's local testing mode); :class:`RuntimeSampler` / :class:`RuntimeEstimator`
are V2 primitives a QNN can run on, which transpile once per circuit, send every binding as
one PUB in batch mode, answer repeated PUBs from the :class:`ResultCache` and record each job in
the :class:`Ledger` before waiting on it, so an interrupted run resumes by fetching its jobs.
"""

from .cache import ResultCache, default_cache_dir, pub_key
from .estimator import RuntimeEstimator
from .ledger import Ledger, LedgerEntry
from .sampler import JobOptions, PubRecord, RuntimeSampler
from .service import Connection, connect
from .transpile import Compiled, compile_for_backend, low_error_layout

__all__ = [
    "connect",
    "Connection",
    "JobOptions",
    "RuntimeSampler",
    "RuntimeEstimator",
    "PubRecord",
    "ResultCache",
    "Ledger",
    "LedgerEntry",
    "pub_key",
    "default_cache_dir",
    "compile_for_backend",
    "low_error_layout",
    "Compiled",
]
