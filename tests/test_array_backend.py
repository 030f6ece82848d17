"""The exact simulator's array backend: swapped in one place (``set_array_backend``), the same
results on torch's CPU as on NumPy (forward values and gradients of both QNN kinds, in double
and single precision, on circuits with every kind of operation), and one-line errors."""

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.neural_networks import EstimatorQNN, SamplerQNN

from qmoe_qiskit.circuits import paper_ansatz, sel_ansatz
from qmoe_qiskit.errors import ConfigError
from qmoe_qiskit.simulation import (
    ExactEstimator,
    ExactEstimatorGradient,
    ExactSampler,
    ExactSamplerGradient,
)
from qmoe_qiskit.simulation.arrays import (
    NumpyBackend,
    TorchBackend,
    array_backend,
    set_array_backend,
)

RNG = np.random.default_rng(17)


@pytest.fixture
def restore_backend():
    previous = array_backend()
    yield
    set_array_backend(previous)


def _mixed_circuit():
    """Every operation kind of the compiler: rotations of each kind, dense fixed gates and the
    fused permutation/phase gates, on 4 qubits (chunks at lo = 0 and above)."""
    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    qc = QuantumCircuit(5)
    qc.h(range(5))
    qc.rx(a, 0)
    qc.ry(b, 1)
    qc.rz(c, 2)
    qc.p(a + b, 3)
    qc.ry(a * c, 4)
    qc.cx(0, 1)
    qc.cz(1, 2)
    qc.s(2)
    qc.t(3)
    qc.swap(3, 4)
    qc.x(0)
    qc.sx(4)
    qc.rx(b, 3)
    qc.ry(c, 4)
    return qc


def _qnns(kind: str, dtype: str):
    if kind == "sampler":
        built = paper_ansatz(3, 2, num_outputs=3)
        return SamplerQNN(circuit=built.circuit, input_params=list(built.inputs),
                          weight_params=list(built.weights), interpret=built.interpret,
                          output_shape=3, input_gradients=True,
                          sampler=ExactSampler(default_shots=None, dtype=dtype),
                          gradient=ExactSamplerGradient(ExactSampler(default_shots=None,
                                                                     dtype=dtype)))
    if kind == "estimator":
        built = sel_ansatz(3, 2)
        circuit, inputs, weights = built.circuit, list(built.inputs), list(built.weights)
        observables = list(built.observables)
    else:
        circuit = _mixed_circuit()
        inputs, weights = list(circuit.parameters)[:1], list(circuit.parameters)[1:]
        observables = [SparsePauliOp.from_list([("XYZIZ", 0.7), ("ZIIII", 0.3)]),
                       SparsePauliOp("IIXXI")]
    estimator = ExactEstimator(dtype=dtype)
    return EstimatorQNN(circuit=circuit, observables=observables, input_params=inputs,
                        weight_params=weights, input_gradients=True, estimator=estimator,
                        gradient=ExactEstimatorGradient(estimator), default_precision=0.0)


def _run(kind: str, dtype: str):
    qnn = _qnns(kind, dtype)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, np.pi, (6, qnn.num_inputs))
    w = rng.uniform(0, 2 * np.pi, qnn.num_weights)
    forward = qnn.forward(x, w)
    inputs, weights = qnn.backward(x, w)
    return forward, inputs, weights


@pytest.mark.parametrize("kind", ["sampler", "estimator", "mixed"])
@pytest.mark.parametrize("dtype", ["complex128", "complex64"])
def test_torch_on_the_cpu_gives_numpys_results(kind, dtype, restore_backend, monkeypatch):
    reference = _run(kind, dtype)
    backend = TorchBackend("cpu")
    calls = []
    matmul = backend.matmul
    monkeypatch.setattr(backend, "matmul", lambda *a: calls.append(1) or matmul(*a))
    set_array_backend(backend)
    assert array_backend().name == "torch"
    got = _run(kind, dtype)
    assert calls  # the state operations really ran on torch
    tolerance = 1e-12 if dtype == "complex128" else 1e-5
    for ours, ref in zip(got, reference):
        np.testing.assert_allclose(ours, ref, rtol=0, atol=tolerance)
    assert np.abs(reference[2]).max() > 1e-2


def test_the_default_is_numpy_and_set_returns_the_one_replaced(restore_backend):
    assert isinstance(array_backend(), NumpyBackend)
    previous = set_array_backend("torch")
    assert isinstance(previous, NumpyBackend) and array_backend().name == "torch"
    assert isinstance(set_array_backend("numpy"), TorchBackend)
    assert array_backend().name == "numpy"


@pytest.mark.parametrize("name", ["cupy", "Torch", "", 3, "torch:nonsense"])
def test_an_unknown_backend_is_one_line_naming_the_choices(name, restore_backend):
    with pytest.raises(ConfigError) as raised:
        set_array_backend(name)
    message = str(raised.value)
    assert "\n" not in message and "numpy" in message and "torch" in message
    assert array_backend().name == "numpy"  # nothing changed


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_device_is_refused_in_one_line(restore_backend):
    with pytest.raises(ConfigError, match="no CUDA device"):
        set_array_backend("torch:cuda")
