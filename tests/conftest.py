"""Trained models shared by the test modules that run them (trained once per session), and a
way to make an optional package look uninstalled."""

import builtins

import pytest

from qmoe_qiskit.cli import main


def _train(tmp_path_factory, *argv: str):
    out = tmp_path_factory.mktemp("model") / "run"
    assert main(["train", "--router", "quantum", "--ansatz", "sel", *argv, "--no-progress",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def sel_model(tmp_path_factory):
    """A small sel router (estimator-read, 2 qubits) with linear experts on 300 Two Moons
    samples (60 held out)."""
    return _train(tmp_path_factory, "--epochs", "8", "--samples", "300")


@pytest.fixture(scope="session")
def q_experts(tmp_path_factory):
    """A sel router (estimator) with two quantum experts (sampler) on 200 Two Moons samples:
    three circuits per forward pass."""
    return _train(tmp_path_factory, "--expert", "quantum", "--layers", "2", "--epochs", "3",
                  "--samples", "200")


@pytest.fixture
def without_module(monkeypatch):
    """``without_module("ray")``: inside the test, importing ``ray`` (or ``ray.x``) fails as if
    the package were not installed."""
    real = builtins.__import__

    def block(package: str) -> None:
        def guarded(name, *args, **kwargs):
            if name == package or name.startswith(package + "."):
                raise ImportError(f"No module named {package!r}")
            return real(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", guarded)

    return block
