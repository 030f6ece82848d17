"""Executors: the same study serially and on a local Ray instance; failures; bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_reproduce import without_timings  # (tests/ is on sys.path)

from qmoe_qiskit.cli import main
from qmoe_qiskit.errors import CellError, ClusterError, ConfigError
from qmoe_qiskit.experiments import reproduce as rp
from qmoe_qiskit.experiments.base import run_experiment, serial
from qmoe_qiskit.experiments.executors import (
    RayExecutor,
    make_executor,
    package_versions,
    version_mismatch,
)
from qmoe_qiskit.training import TrainConfig

TINY = dict(claims=(3,), seeds=(0, 1), train=TrainConfig(epochs=2, patience=None), layers=(1,),
            qubits=(2,), widths=(2,), quick=True)


# --------------------------------------------------------------------------- without Ray
def test_serial_is_the_default_and_bad_choices_are_one_line():
    assert make_executor() is serial
    with pytest.raises(ConfigError, match="unknown executor 'dask'; valid executors: 'serial', "
                                          "'ray'"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--ray-address needs --executor ray"):
        make_executor("serial", address="10.0.0.1:6379")


def test_ray_missing_names_the_extra(without_module):
    without_module("ray")
    with pytest.raises(ConfigError, match=r"needs Ray, which is not installed here: .* -m pip "
                                          r"install -e .*\[ray\].*scripts/setup.sh --test"):
        RayExecutor()


def test_version_differences_are_named():
    here = package_versions()
    assert here["python"] and here["qmoe-qiskit"] != "not installed"
    assert version_mismatch(here, dict(here)) is None
    other = dict(here, python="3.10.12", torch="2.4.0")
    text = version_mismatch(here, other)
    assert f"python 3.10.12 (here {here['python']})" in text
    assert f"torch 2.4.0 (here {here['torch']})" in text and "numpy" not in text


# --------------------------------------------------------------------------- on a local Ray
ray = pytest.importorskip("ray", reason="Ray is an optional extra (CI installs it)")


@pytest.fixture(scope="module")
def local_ray():
    # the toy cells below live in this test module, which Ray's workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = RayExecutor(num_cpus=1)
    executor.connect()
    yield executor
    ray.shutdown()


def test_a_study_on_ray_equals_the_serial_run(local_ray, tmp_path):
    config = rp.ReproduceConfig(**TINY)
    _, here = run_experiment(config, tmp_path / "serial", progress=False)
    _, there = run_experiment(config, tmp_path / "ray", progress=False, executor=local_ray)
    first = json.loads((here / "results.json").read_text())
    second = json.loads((there / "results.json").read_text())
    assert without_timings(first) == without_timings(second)
    assert (here / "report.md").read_text().split("Wall time")[0] == \
        (there / "report.md").read_text().split("Wall time")[0]


@dataclass(frozen=True)
class Toy:
    """A cell that squares its value, fails for ``fail``, and kills its own worker once when
    ``die`` names a marker file that does not exist yet."""

    value: int
    fail: bool = False
    die: str | None = None

    @property
    def label(self) -> str:
        return f"toy {self.value}"

    def __call__(self, *, progress: bool = False) -> int:
        if self.fail:
            raise ValueError(f"bad value {self.value}")
        if self.die and not Path(self.die).exists():
            Path(self.die).touch()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process is lost mid-task
        return self.value ** 2


@dataclass(frozen=True)
class ToyStudy:
    command = "toy"
    cells: tuple[Toy, ...]

    def to_dict(self):
        return {"cells": [dataclasses.asdict(c) for c in self.cells]}

    def plan(self):
        return list(self.cells)

    def aggregate(self, cells, results, seconds):
        from qmoe_qiskit.experiments.base import Outcome

        return Outcome(results={"squares": results, "wall_seconds": seconds}, report="r",
                       summary="s")


def test_a_failed_cell_is_reported_and_the_finished_ones_are_kept(local_ray, tmp_path):
    study = ToyStudy(tuple(Toy(v, fail=(v == 3)) for v in range(6)))
    with pytest.raises(CellError) as info:
        run_experiment(study, tmp_path / "run", progress=False, executor=local_ray)
    message = str(info.value)
    assert "1 of 6 cells failed (5 finished and kept" in message
    assert "cell 'toy 3' failed with ValueError: bad value 3" in message
    assert "Toy(value=3, fail=True" in message and "\n" not in message
    assert len(list((tmp_path / ".run.cells").glob("*.pkl"))) == 5
    fixed = ToyStudy(tuple(Toy(v) for v in range(6)))
    calls = []

    def counting(cells, **kwargs):
        calls.extend(c.label for c in cells)
        return local_ray(cells, **kwargs)

    outcome, _ = run_experiment(fixed, tmp_path / "run", progress=False, executor=counting)
    assert outcome.results["squares"] == [v * v for v in range(6)]
    assert calls == ["toy 3"]  # the five kept cells of the failed run were not run again


def test_a_lost_worker_is_retried_by_ray(local_ray, tmp_path):
    marker = tmp_path / "died-once"
    study = ToyStudy((Toy(2), Toy(5, die=str(marker)), Toy(7)))
    outcome, _ = run_experiment(study, tmp_path / "run", progress=False, executor=local_ray)
    assert marker.exists()  # the task was killed once ...
    assert outcome.results["squares"] == [4, 25, 49]  # ... and Ray ran it again


@dataclass(frozen=True)
class Here:
    label: str = "driver"
    runs_in_driver = True

    def __call__(self, *, progress: bool = False) -> int:
        return os.getpid()


def test_backend_cells_stay_in_this_process(local_ray):
    assert local_ray([Here()], progress=False) == [os.getpid()]


def test_an_unreachable_cluster_is_one_line(tmp_path, capsys):
    with pytest.raises(ClusterError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:9"):
        RayExecutor(address="127.0.0.1:9").connect()
    with pytest.raises(ClusterError, match="is not host:port"):
        RayExecutor(address="nowhere").connect()
    code = main(["reproduce", "--quick", "--executor", "ray", "--ray-address", "127.0.0.1:9",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "cannot reach the Ray cluster" in err
    assert not (tmp_path / "r").exists()


@pytest.fixture
def not_ray():
    """A TCP server that answers as a web server does, not as a Ray head."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_a_local_instance_starts_without_the_token_notice():
    import subprocess

    code = ("from qmoe_qiskit.experiments.executors import RayExecutor; import ray;"
            "RayExecutor().connect(); ray.shutdown()")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Token authentication" not in run.stdout + run.stderr


def test_an_address_that_answers_but_is_not_ray_is_one_line_within_seconds(not_ray):
    import time

    tic = time.perf_counter()
    with pytest.raises(ClusterError, match=rf"{not_ray} answers, but not as a Ray cluster"):
        RayExecutor(address=not_ray).connect()  # Ray's own attempts hang for minutes
    assert time.perf_counter() - tic < 15


def test_a_ray_client_address_without_ray_client_is_one_line(not_ray, monkeypatch):
    import qmoe_qiskit.experiments.executors as executors

    monkeypatch.setattr(executors, "_answers_http2", lambda conn: True)  # let Ray try
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    import importlib.util

    if importlib.util.find_spec("grpc") is not None:
        pytest.skip("ray[client] is installed here")
    with pytest.raises(ClusterError, match=r"needs 'ray\[client\]' \(not installed here: .* "
                                           r"-m pip install 'ray\[client\]'\)"):
        RayExecutor(address=f"ray://{not_ray}").connect()


def test_the_local_heads_address_passes_the_check(local_ray):
    from qmoe_qiskit.experiments.executors import _check_reachable

    _check_reachable(ray.get_runtime_context().gcs_address)  # a real Ray head answers gRPC


def test_workers_with_other_versions_are_refused(local_ray, monkeypatch):
    # this process claims another torch; the worker reports the installed one (runs last: on a
    # mismatch the executor shuts Ray down, as a CLI run would stop)
    from qmoe_qiskit.experiments import executors

    real = executors.package_versions
    monkeypatch.setattr(executors, "package_versions", lambda: dict(real(), torch="0.0.1"))
    with pytest.raises(ClusterError, match=r"the Ray workers at the local Ray instance run other "
                                           r"versions: torch \S+ \(here 0\.0\.1\)"):
        local_ray._check_versions()
    assert not ray.is_initialized()


@pytest.mark.parametrize("command", [["ablation"], ["sweep", "--model", "m"],
                                     ["compare", "--model", "m", "--backend", "fake_manila"],
                                     ["reproduce"]])
def test_every_study_command_takes_the_executor_flags(command):
    from qmoe_qiskit.cli import build_parser

    args = build_parser().parse_args([*command, "--executor", "ray", "--ray-address", "h:1"])
    assert (args.executor, args.ray_address) == ("ray", "h:1")
    assert build_parser().parse_args(command).executor == "serial"
