"""Where an experiment's cells run: ``serial`` (this process, the default) or ``ray`` (a local
Ray instance, or a cluster).

Every cell is a pure function of its fields and seeds itself, so the results do not depend on
where or in which order the cells run: a study on Ray writes the same ``results.json`` as the
serial run, timings aside.

On Ray each cell is one task declaring ``num_cpus`` (default 1), and torch, OpenMP (Aer) and
BLAS threads inside the task are set to match, so tasks never oversubscribe a node. Results come
back to this process as they finish (``ray.wait``), where the run's cell store keeps them, so a
failed cell loses none of the finished ones and a re-run only runs what is missing. A task whose
worker dies is retried by Ray (``max_retries``); an exception raised by a cell is not retried:
it is reported with the cell's settings. Cells marked ``runs_in_driver`` (those that submit to
a backend: the job ledger and the local-testing job registry live in this process) run here.

Code reaches a cluster's workers through Ray's ``runtime_env``: this package is shipped with
``py_modules`` (its dependencies must be installed on the cluster, at the versions this process
has: they are checked before any cell is sent).
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import CellError, ClusterError, ConfigError, choices, install_hint
from .base import Cell, Executor, serial

__all__ = ["EXECUTORS", "make_executor", "RayExecutor", "package_versions",
           "version_mismatch"]

EXECUTORS = ("serial", "ray")
CHECKED_PACKAGES = ("qmoe-qiskit", "qiskit", "qiskit-aer", "qiskit-machine-learning",
                    "qiskit-ibm-runtime", "torch", "numpy", "scipy", "scikit-learn")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def make_executor(name: str = "serial", *, address: str | None = None,
                  num_cpus: int = 1) -> Executor:
    """The executor ``name`` (one of :data:`EXECUTORS`); ``address`` (or ``RAY_ADDRESS``)
    joins a running Ray cluster instead of starting a local instance."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; valid executors: {choices(EXECUTORS)}")
    if name == "serial":
        if address:
            raise ConfigError("--ray-address needs --executor ray")
        return serial
    executor = RayExecutor(address=address, num_cpus=num_cpus)
    executor.connect()  # an unreachable cluster is reported before any work
    return executor


def package_versions() -> dict[str, str]:
    """Python's version and those of the packages a cell's result depends on."""
    versions = {"python": platform.python_version()}
    for name in CHECKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def version_mismatch(driver: dict[str, str], worker: dict[str, str]) -> str | None:
    """``None`` when the worker has the driver's versions; otherwise the differences."""
    differ = [f"{name} {worker.get(name, 'not installed')} (here {version})"
              for name, version in driver.items() if worker.get(name) != version]
    return ", ".join(differ) or None


def _worker_versions() -> dict[str, str]:
    """:func:`package_versions` as the worker's own installed code reports them."""
    from qmoe_qiskit.experiments import executors

    return executors.package_versions()


def _run_cell(cell: Cell, threads: int) -> Any:
    """A cell inside a Ray task, with torch's threads set to the task's CPUs."""
    import torch

    torch.set_num_threads(threads)
    return cell(progress=False)


class RayExecutor:
    """Runs cells as Ray tasks (see the module docstring)."""

    def __init__(self, *, address: str | None = None, num_cpus: int = 1, max_retries: int = 3):
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1:
            raise ConfigError(f"num_cpus per task must be an integer >= 1, got {num_cpus!r}")
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--executor ray needs Ray, which is not installed here: "
                              + install_hint("ray")) from None
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.max_retries = max_retries

    def runtime_env(self) -> dict[str, Any]:
        threads = str(self.num_cpus)
        env: dict[str, Any] = {"env_vars": {name: threads for name in THREAD_VARIABLES}}
        if self.address:  # a cluster's workers get this package's code from here
            env["py_modules"] = [str(Path(__file__).resolve().parents[1])]
        return env

    def connect(self) -> None:
        """Start a local Ray instance (no address) or join the cluster at ``address``, then
        check that its workers run this process's Python and package versions."""
        import ray

        if self.address and self.address not in ("auto", "local"):
            _check_reachable(self.address)
        if ray.is_initialized():
            return
        try:
            with _quiet_local_auth(local=not self.address):
                ray.init(address=self.address, runtime_env=self.runtime_env(),
                         include_dashboard=False, log_to_driver=False,
                         logging_level="WARNING")
        except (ConnectionError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Ray cluster at {self.address} "
                               f"({type(exc).__name__}: {_first_line(exc)}); check the "
                               f"address (ray status on the head node)") from None
        except ValueError as exc:
            if "ray[client]" not in str(exc):
                raise
            raise ClusterError(f"a ray:// address goes through Ray Client, which needs "
                               f"'ray[client]' (not installed here: {sys.executable} -m pip "
                               f"install 'ray[client]'); or give the head's GCS address, "
                               f"host:6379") from None
        except RuntimeError as exc:
            if "version" in str(exc).lower():
                raise ClusterError(f"the Ray cluster at {self.address} differs from this "
                                   f"process: {_first_line(exc)}") from None
            raise
        self._check_versions()

    def _check_versions(self) -> None:
        import ray

        probe = ray.remote(num_cpus=0)(_worker_versions)
        found = ray.get(probe.remote())
        differ = version_mismatch(package_versions(), found)
        if differ:
            where = self.address or "the local Ray instance"
            ray.shutdown()
            raise ClusterError(f"the Ray workers at {where} run other versions: {differ}; "
                               f"install this process's versions on the cluster")

    def __call__(self, cells: Sequence[Cell], *, progress: bool = True, desc: str = "",
                 on_done: Callable[[int, Any], None] | None = None) -> list:
        import ray
        from ray.exceptions import RayError, RayTaskError

        self.connect()
        task = ray.remote(num_cpus=self.num_cpus, max_retries=self.max_retries,
                          retry_exceptions=False)(_run_cell)
        results: list = [None] * len(cells)
        failures: list[str] = []
        with tqdm(total=len(cells), desc=desc, disable=not progress or not cells) as bar:
            here = {i for i, c in enumerate(cells) if getattr(c, "runs_in_driver", False)}
            pending = {task.remote(cell, self.num_cpus): i for i, cell in enumerate(cells)
                       if i not in here}
            for i in here:  # backend submissions stay in this process
                results[i] = cells[i](progress=False)
                _finished(i, results[i], on_done, bar)
            waiting = list(pending)
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                i = pending[done[0]]
                try:
                    results[i] = ray.get(done[0])
                except RayTaskError as exc:  # the cell raised: not retried
                    cause = exc.cause if exc.cause is not None else exc
                    failures.append(f"cell {cells[i].label!r} failed with "
                                    f"{type(cause).__name__}: {_first_line(cause)} (settings: "
                                    f"{_short(repr(cells[i]))})")
                    bar.update()
                    continue
                except RayError as exc:  # its worker died more often than Ray retries
                    failures.append(f"cell {cells[i].label!r} was lost after "
                                    f"{self.max_retries} retries ({type(exc).__name__}: "
                                    f"{_first_line(exc)})")
                    bar.update()
                    continue
                _finished(i, results[i], on_done, bar)
        if failures:
            kept = len(cells) - len(failures)
            raise CellError(f"{len(failures)} of {len(cells)} cells failed ({kept} finished and "
                            f"kept; run the same command again to run only the missing ones): "
                            + "; ".join(failures))
        return results


def _finished(i: int, result: Any, on_done, bar) -> None:
    if on_done is not None:
        on_done(i, result)
    bar.update()


@contextmanager
def _quiet_local_auth(local: bool):
    """Ray turns token authentication on for each new local instance and says so in a warning
    on every start; for a local instance, that notice is kept out of the output (the setting
    is Ray's default, unchanged)."""
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    before = log.level
    if local:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(before)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A quick check of ``host:port`` (``ray://host:port`` too) before Ray's own connection
    attempts, which retry for minutes: something must listen there, and it must answer as a
    Ray head does, as an HTTP/2 (gRPC) server. ``RAY_USE_TLS`` skips the second check."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"the Ray address {address!r} is not host:port (or ray://host:port, "
                           f"auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "0") in ("0", ""):
                speaks = _answers_http2(conn)
            else:
                speaks = True
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
                           f"check the address (ray status on the head node)") from None
    if not speaks:
        raise ClusterError(f"{address} answers, but not as a Ray cluster does (no gRPC reply "
                           f"within {timeout:.0f} s); check the host and port (the head's GCS "
                           f"port, 6379 by default, or ray://host:10001 for Ray Client)")


# An HTTP/2 client's connection preface and an empty SETTINGS frame (RFC 9113, 3.4 and 6.5);
# a gRPC server answers with a SETTINGS frame of its own: a 9-byte header of type 0x4.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _answers_http2(conn: socket.socket) -> bool:
    try:
        conn.sendall(_HTTP2_PREFACE)
        header = b""
        while len(header) < 9:
            chunk = conn.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except (socket.timeout, OSError):
        return False
    return header[3] == 0x4


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
