"""Where jobs go: IBM Quantum through Qiskit Runtime, or its local testing mode.

``connect("fake_manila")`` (any name from ``fake_backend_names()``, or any ``BackendV2`` object
such as an ``AerSimulator``) runs in the runtime's local testing mode, offline, through the same
submission code. Any other name is an IBM Quantum backend reached with the account saved by
``QiskitRuntimeService.save_account`` or given by the runtime's environment variables
(``QISKIT_IBM_TOKEN``, ``QISKIT_IBM_INSTANCE``, ``QISKIT_IBM_CHANNEL``). A missing or rejected
account raises :class:`~qmoe_qiskit.errors.AccountError` before anything is transpiled, and the
token never appears in a message.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from qiskit.providers import BackendV2
from qiskit.providers.exceptions import QiskitBackendNotFoundError
from qiskit_ibm_runtime import Batch, QiskitRuntimeService
from qiskit_ibm_runtime.accounts import AccountNotFoundError
from qiskit_ibm_runtime.exceptions import IBMError

from ..backends import KNOWN, fake_backend_names, get_backend
from ..errors import (
    AccountError,
    ConfigError,
    JobError,
    QMoEError,
    ServiceUnreachable,
    choices,
    closest,
)

__all__ = ["Connection", "connect", "runtime_service", "remote_job", "scrub", "one_line",
           "CHANNELS"]

logger = logging.getLogger(__name__)

CHANNELS = ("ibm_quantum_platform", "ibm_cloud")
NO_ACCOUNT = (
    "no IBM Quantum account found: save one with QiskitRuntimeService.save_account(token=..., "
    "instance=...) or set QISKIT_IBM_TOKEN and QISKIT_IBM_INSTANCE; to work offline use a fake "
    "backend such as fake_manila or fake_brisbane"
)

# Local-testing jobs live only in this process; keep them so a resumed run can fetch them.
_LOCAL_JOBS: dict[str, Any] = {}


@dataclass
class Connection:
    """A backend and how to reach it (``service`` is ``None`` in local testing mode)."""

    backend: BackendV2
    service: QiskitRuntimeService | None = None

    @property
    def local(self) -> bool:
        return self.service is None

    @property
    def name(self) -> str:
        return self.backend.name

    @cached_property
    def calibration(self) -> str:
        """When the backend was last calibrated (part of every cache key; read once)."""
        stamp = getattr(self.backend, "calibration_id", None)
        if stamp:
            return str(stamp)
        try:
            props = self.backend.properties()
        except Exception:  # simulators have no calibration
            return "none"
        date = getattr(props, "last_update_date", None)
        return date.isoformat() if date is not None else "none"

    def open_batch(self) -> Batch:
        """A batch-mode context for this backend (local mode accepts one too)."""
        return Batch(backend=self.backend)

    def remember(self, job) -> None:
        if self.local:
            _LOCAL_JOBS[job.job_id()] = job

    def find_tagged(self, tag: str):
        """The IBM Quantum job submitted with ``tag`` on this backend, or ``None`` if the service
        has none (it never arrived). Local-testing jobs are never found: they lived only in the
        process that ran them. A failed look-up raises: a job may exist, so nothing may be
        submitted again until the service can say."""
        if self.local:
            return None
        try:
            jobs = self.service.jobs(job_tags=[tag], backend_name=self.name, limit=1)
        except (IBMError, OSError) as exc:
            raise JobError(f"cannot look up the job submitted with tag {tag} on IBM Quantum "
                           f"({one_line(exc)}); run again when the service can be reached, "
                           f"so that the job is fetched rather than paid for twice") from None
        return jobs[0] if jobs else None

    def retrieve(self, job_id: str):
        """The job ``job_id`` if it can still be fetched, else ``None``.

        Local-testing jobs can be fetched only by the process that ran them.
        """
        if self.local:
            return _LOCAL_JOBS.get(job_id)
        try:
            return remote_job(self.service, job_id)
        except JobError as exc:
            logger.warning("%s", exc)
            return None


def connect(backend: str | BackendV2, *, channel: str | None = None,
            instance: str | None = None, account: str | None = None) -> Connection:
    """A :class:`Connection` to ``backend`` (a name or a ``BackendV2``)."""
    if isinstance(backend, BackendV2):
        return Connection(backend)
    if not isinstance(backend, str) or not backend:
        raise ConfigError(f"backend must be a backend name, got {backend!r}")
    if backend.startswith("fake_"):
        return Connection(get_backend(backend))  # raises with the list of fake names
    service = runtime_service(channel=channel, instance=instance, account=account)
    try:
        return Connection(service.backend(backend), service)
    except QiskitBackendNotFoundError:
        pass
    except Exception as exc:  # the runtime raises IBM, requests and plain errors here
        if _network_failure(exc):
            raise _unreachable(exc) from None
        raise JobError(f"cannot reach backend {backend!r}: {one_line(exc)}") from None
    try:
        names = sorted(b.name for b in service.backends())
    except Exception as exc:
        raise (_unreachable(exc) if _network_failure(exc) else
               JobError(f"cannot list this account's backends: {one_line(exc)}")) from None
    offline = closest(backend, fake_backend_names(), what="fake backends", fallback=KNOWN)
    raise ConfigError(f"unknown backend {backend!r}; this account can use: "
                      f"{closest(backend, names, what='backends', many=12)}; offline: {offline}")


def runtime_service(*, channel: str | None = None, instance: str | None = None,
                    account: str | None = None) -> QiskitRuntimeService:
    """The IBM Quantum service of the saved account (or the environment variables)."""
    if channel is not None and channel not in CHANNELS:
        raise ConfigError(f"unknown channel {channel!r}; valid channels: {choices(CHANNELS)}")
    kwargs = {"channel": channel, "instance": instance, "name": account}
    try:
        return QiskitRuntimeService(**{k: v for k, v in kwargs.items() if v is not None})
    except AccountNotFoundError:
        raise AccountError(NO_ACCOUNT) from None
    except Exception as exc:  # the runtime raises IBM, requests, JSON and plain errors here
        raise _account_failure(exc) from None


def _account_failure(exc: Exception) -> QMoEError:
    """What an exception from opening the service means, said plainly: no network (which the
    runtime reports as a bad token), an account the service refused, or one it cannot read."""
    if _network_failure(exc):
        return _unreachable(exc)
    if isinstance(exc, IBMError):  # the service answered, and said no
        return AccountError(f"IBM Quantum did not accept the account "
                            f"({type(exc).__name__}: {one_line(exc)})")
    source = ("the IBM Quantum account given by QISKIT_IBM_TOKEN / QISKIT_IBM_INSTANCE"
              if os.environ.get("QISKIT_IBM_TOKEN")
              else f"the saved IBM Quantum account in {_account_file()}")
    return AccountError(f"{source} cannot be read ({type(exc).__name__}: {one_line(exc)}); "
                        f"save it again with QiskitRuntimeService.save_account(token=..., "
                        f"instance=..., overwrite=True)")


def _network_failure(exc: BaseException) -> bool:
    """Whether a connection failure lies anywhere in ``exc``'s chain of causes."""
    import requests

    kinds = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, socket.gaierror,
             ConnectionError, TimeoutError)
    return any(isinstance(e, kinds) for e in _chain(exc))


def _unreachable(exc: BaseException) -> ServiceUnreachable:
    inner = list(_chain(exc))[-1]
    reason = getattr(inner, "strerror", None) or type(inner).__name__
    return ServiceUnreachable(f"cannot reach IBM Quantum ({scrub(str(reason))}); check the "
                              f"network connection or proxy, or work offline with a fake "
                              f"backend such as fake_manila")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _account_file() -> str:
    """Where the runtime reads saved accounts from."""
    from qiskit_ibm_runtime.accounts import management

    return getattr(management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE",
                   os.path.join(os.path.expanduser("~"), ".qiskit", "qiskit-ibm.json"))


def remote_job(service: QiskitRuntimeService, job_id: str):
    """The IBM Quantum job ``job_id``; :class:`~qmoe_qiskit.errors.JobError` (one line, token
    scrubbed) when the service answers that it cannot return it (expired, deleted, another
    account's), :class:`~qmoe_qiskit.errors.ServiceUnreachable` when it cannot be asked: an
    unreachable job is not a lost one."""
    try:
        return service.job(job_id)
    except (IBMError, OSError) as exc:
        if _network_failure(exc):
            raise _unreachable(exc) from None
        raise JobError(f"job {job_id} cannot be fetched from IBM Quantum: "
                       f"{one_line(exc)}") from None


def scrub(text: str) -> str:
    """``text`` with any IBM Quantum token this process knows of blanked out."""
    tokens = {os.environ.get("QISKIT_IBM_TOKEN")}
    try:
        from qiskit_ibm_runtime.accounts import AccountManager

        tokens.add(AccountManager.get().token)
    except Exception:  # no saved account, or one the runtime cannot read
        pass
    for token in tokens:
        if isinstance(token, str) and token:
            text = text.replace(token, "<token>")
    return text


def one_line(exc: BaseException) -> str:
    """An exception's message for a one-line error: token blanked out, whitespace collapsed."""
    return " ".join(scrub(str(exc)).split())
