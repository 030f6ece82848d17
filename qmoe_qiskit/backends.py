"""Backend lookup: qiskit-ibm-runtime's offline fake backends by name.

The floor under ``noise_models`` (device-calibrated noise) and ``jobs`` (local testing mode):
both find a backend here, so neither needs the other.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

from qiskit.providers import BackendV2

from .errors import ConfigError, closest

__all__ = ["fake_backend_names", "get_backend", "KNOWN"]


KNOWN = ("fake_manila", "fake_brisbane", "fake_torino")  # offered when no name is close


@lru_cache(maxsize=1)
def fake_backend_names() -> tuple[str, ...]:
    """Names of qiskit-ibm-runtime's offline fake backends (``fake_brisbane``, ...)."""
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    with warnings.catch_warnings():  # some fake backends warn that their values are not typical
        warnings.simplefilter("ignore")
        return tuple(sorted(b.name for b in FakeProviderForBackendV2().backends()))


@lru_cache(maxsize=8)
def get_backend(name: str) -> BackendV2:
    """An offline fake backend by name (``fake_brisbane``, ``fake_torino``, ``fake_manila``, ...)."""
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    key = name.strip().lower()
    if not key.startswith("fake_"):
        key = "fake_" + key
    if key not in fake_backend_names():
        offered = closest(key, fake_backend_names(), what="offline fake backends",
                          fallback=KNOWN)
        raise ConfigError(f"unknown backend {name!r}; {offered}")
    return FakeProviderForBackendV2().backend(key)
