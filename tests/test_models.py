"""Routers, experts, the mixture, torch gradients, primitive swapping, save / load."""

import re

import numpy as np
import pytest
import torch
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import Statevector
from qiskit_machine_learning.primitives import QMLSampler

from qmoe_qiskit.errors import ConfigError, DataError, ModelFileError
from qmoe_qiskit.models import (
    LinearExpert,
    LinearRouter,
    MixtureOfExperts,
    ModelSpec,
    QuantumExpert,
    QuantumRouter,
    build_model,
    load_model,
    save_model,
)
from qmoe_qiskit.models import moe as moe_module


def _x(rows=6, features=2, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).uniform(0, np.pi, (rows, features)),
                           dtype=torch.float32)


def test_published_architecture_has_24_router_parameters():
    torch.manual_seed(0)
    model = build_model(ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="sel"))
    assert model.parameter_counts() == {"router": 24, "experts": 12, "total": 36}


def test_sel_router_equals_statevector_computation_and_is_deterministic():
    torch.manual_seed(1)
    router = QuantumRouter(2, 2, ansatz="sel")
    x = _x()
    out = router(x)
    assert torch.equal(out, router(x))  # precision 0: no estimator noise
    weights = router.layer.connector.weight.detach().numpy().astype(float)
    ansatz = router.layer.ansatz
    for xi, row in zip(x.numpy().astype(float), out.detach().numpy()):
        bound = ansatz.circuit.assign_parameters(dict(zip(list(ansatz.inputs) + list(ansatz.weights),
                                                          list(xi) + list(weights))))
        state = Statevector(bound)
        z = torch.tensor([state.expectation_value(o).real for o in ansatz.observables],
                         dtype=torch.float32)
        expected = torch.softmax(router.adapter(z), dim=-1).detach().numpy()
        np.testing.assert_allclose(row, expected, atol=1e-5)


def test_paper_router_outputs_probability_rows():
    torch.manual_seed(2)
    out = QuantumRouter(2, 4, ansatz="paper")(_x())
    assert out.shape == (6, 4)
    np.testing.assert_allclose(out.sum(dim=1).detach().numpy(), 1.0, atol=1e-6)


@pytest.mark.parametrize("ansatz", ["paper", "sel"])
def test_router_weight_gradient_matches_finite_differences(ansatz):
    torch.manual_seed(3)
    router = QuantumRouter(2, 2, ansatz=ansatz)
    x = _x()
    target = torch.tensor([0.3, -1.2])

    def loss_of(weights: np.ndarray) -> float:
        with torch.no_grad():
            router.layer.connector.weight.copy_(torch.as_tensor(weights))
            return float((router(x) @ target).sum())

    w0 = router.layer.connector.weight.detach().numpy().copy()
    router.zero_grad()
    (router(x) @ target).sum().backward()
    grad = router.layer.connector.weight.grad.numpy().copy()
    h = 1e-2  # float32 outputs through TorchConnector: a wide step, tolerance to match
    fd = np.array([(loss_of(w0 + h * e) - loss_of(w0 - h * e)) / (2 * h) for e in np.eye(len(w0))])
    np.testing.assert_allclose(grad, fd, atol=2e-3)
    assert np.abs(grad).max() > 1e-2


def test_input_gradients_reach_a_preceding_torch_layer_only_when_enabled():
    torch.manual_seed(4)
    for enabled in (False, True):
        pre = torch.nn.Linear(2, 2)
        router = QuantumRouter(2, 2, ansatz="sel", input_gradients=enabled)
        router(pre(_x())).sum().backward()
        if enabled:
            assert pre.weight.grad is not None and pre.weight.grad.abs().max() > 0
        else:
            # TorchConnector's documented pitfall: no gradient flows to layers before the QNN.
            assert pre.weight.grad is None or pre.weight.grad.abs().max() == 0


def test_set_primitive_keeps_weights_and_outputs():
    torch.manual_seed(5)
    model = build_model(ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="paper",
                                  expert="quantum"))
    x = _x()
    before = model(x).detach()
    model.set_primitives(sampler=QMLSampler())  # qiskit-machine-learning's exact reference
    assert all(isinstance(m.layer.qnn.sampler, QMLSampler)
               for m in [model.router, *model.experts])
    np.testing.assert_allclose(model(x).detach(), before, atol=1e-5)
    mixed = build_model(ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="sel",
                                  expert="quantum"))
    before = mixed(x).detach()
    mixed.set_primitives(sampler=QMLSampler(), estimator=StatevectorEstimator())
    assert isinstance(mixed.router.layer.qnn.estimator, StatevectorEstimator)
    assert isinstance(mixed.experts[0].layer.qnn.sampler, QMLSampler)
    np.testing.assert_allclose(mixed(x).detach(), before, atol=1e-5)
    sel = QuantumRouter(2, 2, ansatz="sel")
    before = sel(x).detach()
    sel.set_primitive(StatevectorEstimator())
    np.testing.assert_allclose(sel(x).detach(), before, atol=1e-5)


def test_using_runs_on_other_primitives_and_restores_them_even_on_error():
    torch.manual_seed(8)
    model = build_model(ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="sel",
                                  expert="quantum"))
    reference = StatevectorEstimator()
    model.router.set_primitive(reference)  # a non-default primitive, to be restored
    x = _x()
    before = model(x).detach()
    with model.using(sampler=QMLSampler()) as inside:
        assert inside is model
        assert isinstance(model.experts[0].layer.qnn.sampler, QMLSampler)
        assert model.router.layer.primitive is None  # the exact default, for the estimator
        np.testing.assert_allclose(model(x).detach(), before, atol=1e-5)
    assert model.router.layer.qnn.estimator is reference
    assert model.experts[0].layer.primitive is None
    try:
        with model.using(sampler=QMLSampler(), estimator=StatevectorEstimator()):
            with torch.no_grad():
                model.router.layer.connector.weight.add_(0.1)  # trained inside: kept
            raise RuntimeError("a failure inside the block")
    except RuntimeError:
        pass
    assert model.router.layer.qnn.estimator is reference
    assert not isinstance(model.experts[0].layer.qnn.sampler, QMLSampler)
    assert not torch.allclose(model(x).detach(), before)


def test_using_restores_the_very_qnns_so_backends_see_the_same_circuits():
    """A backend compiles (and keys) each circuit object once; leaving ``using()`` brings
    back the QNNs of before, not rebuilt ones, with the weights trained inside."""
    torch.manual_seed(9)
    model = build_model(ModelSpec(num_features=2, num_classes=2, router="quantum", ansatz="paper",
                                  expert="quantum"))
    layers = model.quantum_layers()
    qnns = [layer.qnn for layer in layers]
    weights = [layer.connector.weight for layer in layers]
    with model.using(sampler=QMLSampler()):
        assert all(layer.qnn is not qnn for layer, qnn in zip(layers, qnns))
        with torch.no_grad():
            layers[0].connector.weight.add_(0.25)
        trained = layers[0].connector.weight.detach().clone()
    assert all(layer.qnn is qnn for layer, qnn in zip(layers, qnns))
    assert all(layer.connector.weight is w for layer, w in zip(layers, weights))
    torch.testing.assert_close(layers[0].connector.weight.detach(), trained)


def test_quantum_expert_returns_log_probabilities():
    torch.manual_seed(6)
    out = QuantumExpert(2, 2)(_x())
    np.testing.assert_allclose(out.exp().sum(dim=1).detach().numpy(), 1.0, atol=1e-5)


def test_dense_mixture_is_the_gate_weighted_sum():
    torch.manual_seed(7)
    router = LinearRouter(2, 3)
    experts = [LinearExpert(2, 2) for _ in range(3)]
    model = MixtureOfExperts(router, experts)
    x = _x()
    gates = router(x)
    expected = sum(gates[:, [e]] * experts[e](x) for e in range(3))
    torch.testing.assert_close(model(x), expected)


def test_top_k_keeps_k_gates_and_renormalises():
    torch.manual_seed(8)
    model = MixtureOfExperts(LinearRouter(2, 4), [LinearExpert(2, 2) for _ in range(4)], top_k=2)
    x = _x(rows=20)
    gates = model.gates(x)
    dense = model.router(x)
    assert ((gates > 0).sum(dim=1) == 2).all()
    torch.testing.assert_close(gates.sum(dim=1), torch.ones(20))
    kept = dense.topk(2, dim=1)
    torch.testing.assert_close(gates.gather(1, kept.indices),
                               kept.values / kept.values.sum(dim=1, keepdim=True))


def test_mixture_rejects_inconsistent_settings():
    with pytest.raises(ConfigError, match="routes to 2 experts, got 3"):
        MixtureOfExperts(LinearRouter(2, 2), [LinearExpert(2, 2) for _ in range(3)])
    with pytest.raises(ConfigError, match="top_k must be between 1 and 2"):
        MixtureOfExperts(LinearRouter(2, 2), [LinearExpert(2, 2) for _ in range(2)], top_k=3)
    with pytest.raises(ConfigError, match="unknown router 'cnn'; valid routers: 'linear', 'mlp', 'quantum'"):
        ModelSpec(num_features=2, num_classes=2, router="cnn")


def test_bad_features_are_rejected_with_a_clear_error():
    router = QuantumRouter(2, 2, ansatz="paper")
    with pytest.raises(DataError, match="NaN or infinite"):
        router(torch.tensor([[0.1, float("nan")]]))
    with pytest.raises(DataError, match="input has 3 features but this circuit embeds 2"):
        router(torch.zeros(1, 3))


@pytest.mark.parametrize("kw", [dict(router="quantum", ansatz="sel"),
                                dict(router="quantum", ansatz="paper", expert="quantum"),
                                dict(router="mlp", expert="mlp", top_k=1)])
def test_save_load_round_trip(tmp_path, kw):
    torch.manual_seed(9)
    spec = ModelSpec(num_features=2, num_classes=2, **kw)
    model = build_model(spec)
    path = save_model(tmp_path / "model.pt", model, spec, {"note": "kept"})
    loaded, loaded_spec, extra = load_model(tmp_path)  # a run folder works too
    assert loaded_spec == spec and extra == {"note": "kept"}
    x = _x()
    torch.testing.assert_close(loaded(x), model(x))
    assert load_model(tmp_path / "model")[1] == spec  # the suffix may be left off
    assert path.exists() and not list(tmp_path.glob("*.tmp"))


def test_model_file_errors(tmp_path):
    spec = ModelSpec(num_features=2, num_classes=2, router="linear")
    model = build_model(spec)
    good = save_model(tmp_path / "good.pt", model, spec)
    with pytest.raises(ModelFileError, match="model file not found"):
        load_model(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model at all")  # not damaged: never a model
    with pytest.raises(ModelFileError, match=r"not a qmoe-qiskit model file \(not a PyTorch"):
        load_model(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelFileError, match="not a qmoe-qiskit model file"):
        load_model(other)


def test_model_file_from_another_format_version(tmp_path, monkeypatch):
    spec = ModelSpec(num_features=2, num_classes=2, router="linear")
    monkeypatch.setattr(moe_module, "FORMAT_VERSION", 99)
    save_model(tmp_path / "future.pt", build_model(spec), spec)
    monkeypatch.undo()
    with pytest.raises(ModelFileError, match="format version 99; this qmoe-qiskit reads version 1"):
        load_model(tmp_path / "future.pt")


def test_a_circuit_wider_than_the_exact_simulator_is_refused_before_it_is_built():
    with pytest.raises(ConfigError, match=r"quantum router on 30 qubits \(one per feature: the "
                                          r"data has 30 features\) is too wide"):
        build_model(ModelSpec(num_features=30, num_classes=2, router="quantum"))
    with pytest.raises(ConfigError, match=r"quantum expert on 26 qubits"):
        build_model(ModelSpec(num_features=26, num_classes=2, router="linear", expert="quantum"))
    with pytest.raises(ConfigError, match=r"router on 25 qubits \(--qubits\)"):
        build_model(ModelSpec(num_features=2, num_classes=2, router="quantum", num_qubits=25))


def test_a_model_takes_array_likes_as_a_user_would_pass_them():
    """A NumPy array (float64 or integers) or a list of rows gives the tensor's outputs;
    anything else is one clear error."""
    import numpy as np

    from qmoe_qiskit.errors import DataError
    from qmoe_qiskit.models import ModelSpec, build_model

    model = build_model(ModelSpec(router="quantum", ansatz="sel").for_data(2, 2))
    x = np.array([[0.1, 0.7], [1.2, -0.3]])
    reference = model(torch.as_tensor(x, dtype=torch.float32))
    for given in (x, x.tolist(), x.astype(np.float32)):
        torch.testing.assert_close(model(given), reference)
    torch.testing.assert_close(model(np.array([[1, 0]])),
                               model(torch.tensor([[1.0, 0.0]])))
    with pytest.raises(DataError, match=r"model inputs must be a \(batch, features\) array"):
        model([["a", "b"]])


def test_the_balancing_loss_is_the_switch_transformers_by_hand():
    """E · Σ_i f_i P_i: f_i the share of the batch whose largest probability is expert i's,
    P_i the mean probability of expert i."""
    from qmoe_qiskit.models.moe import balance_loss

    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1],
                          [0.2, 0.2, 0.6]], dtype=torch.float64)
    f = [2 / 4, 1 / 4, 1 / 4]
    p = [(0.7 + 0.6 + 0.1 + 0.2) / 4, (0.2 + 0.3 + 0.8 + 0.2) / 4, (0.1 + 0.1 + 0.1 + 0.6) / 4]
    assert balance_loss(probs).item() == pytest.approx(3 * sum(a * b for a, b in zip(f, p)))
    uniform = torch.full((6, 3), 1 / 3, dtype=torch.float64)
    uniform[[0, 1], 0] += 1e-9  # ties broken so that each expert takes two inputs
    uniform[[2, 3], 1] += 1e-9
    uniform[[4, 5], 2] += 1e-9
    assert balance_loss(uniform).item() == pytest.approx(1.0)
    collapsed = torch.tensor([[1.0, 0.0, 0.0]] * 5, dtype=torch.float64)
    assert balance_loss(collapsed).item() == pytest.approx(3.0)


def test_a_mixtures_training_loss_adds_the_weighted_balancing_term():
    from qmoe_qiskit.models import ModelSpec, build_model
    from qmoe_qiskit.models.moe import balance_loss

    torch.manual_seed(0)
    spec = ModelSpec(router="mlp", num_experts=3, balance_weight=0.3).for_data(2, 2)
    model = build_model(spec)
    x = torch.randn(16, 2)
    y = torch.randint(0, 2, (16,))
    loss, out = model.training_loss(x, y)
    expected = torch.nn.functional.cross_entropy(out, y) + 0.3 * balance_loss(model.router(x))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in model.router.parameters())  # the term reaches it


def test_the_balance_weight_is_saved_with_the_model(tmp_path):
    from qmoe_qiskit.models import ModelSpec, build_model, load_model, save_model

    spec = ModelSpec(router="linear", num_experts=4, top_k=2, balance_weight=0.01).for_data(2, 2)
    save_model(tmp_path / "m.pt", build_model(spec), spec)
    model, loaded, _ = load_model(tmp_path / "m.pt")
    assert loaded == spec and model.balance_weight == 0.01 and model.top_k == 2


def test_routing_stats_by_hand():
    import numpy as np

    from qmoe_qiskit.metrics import routing_stats

    gates = np.array([[0.9, 0.1, 0.0, 0.0], [0.8, 0.2, 0.0, 0.0], [0.3, 0.7, 0.0, 0.0],
                      [0.4, 0.6, 0.0, 0.0]])
    stats = routing_stats(gates)
    assert stats["load"] == [0.5, 0.5, 0.0, 0.0] and stats["dead_fraction"] == 0.5
    assert stats["entropy"] == pytest.approx(np.log(2) / np.log(4))  # two of four, evenly
    assert stats["mean_gate"] == pytest.approx([0.6, 0.4, 0.0, 0.0])


def test_an_expert_capacity_reroutes_then_drops_exactly_the_overflow():
    """Two experts, top-1, factor 1: room ceil(1 · 5 · 1 / 2) = 3 each. Five inputs all prefer
    expert 0: the first three take it, the next two fall back to expert 1. At factor 0.5
    (room 2 each) the fifth input finds no room and is dropped: its gates are all 0."""
    from qmoe_qiskit.metrics import routing_stats
    from qmoe_qiskit.models.moe import capacity_mask

    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.55, 0.45]])
    assert capacity_mask(probs, 1, 1.0).tolist() == [[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]]
    assert capacity_mask(probs, 1, 0.5).tolist() == [[1, 0], [1, 0], [0, 1], [0, 1], [0, 0]]
    assert capacity_mask(probs, 2, 1.0).tolist() == [[1, 1]] * 5  # room 5: nothing overflows
    model = MixtureOfExperts(LinearRouter(2, 2), [LinearExpert(2, 2) for _ in range(2)],
                             top_k=1, capacity=0.5)
    with torch.no_grad():
        model.router.linear.weight.zero_()
        model.router.linear.bias.copy_(torch.tensor([1.0, 0.0]))  # every input prefers 0
        gates = model.gates(torch.zeros(5, 2))
    assert gates.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1], [0, 0]]
    stats = routing_stats(gates.numpy())
    assert stats["dropped_fraction"] == pytest.approx(0.2)
    assert stats["load"] == pytest.approx([0.4, 0.4])


@pytest.mark.parametrize("field, value, message", [
    ("capacity", 0.0, "capacity (the expert capacity factor) must be a finite number > 0"),
    ("capacity", float("nan"), "must be a finite number > 0"),
    ("balance_weight", -0.1, "balance weight must be a finite number from 0 to 100"),
    ("top_k", 3, "top-k must be an integer from 1 to the number of experts (2), got 3"),
])
def test_routing_settings_are_checked_in_the_spec(field, value, message):
    from qmoe_qiskit.errors import ConfigError
    from qmoe_qiskit.models import ModelSpec

    with pytest.raises(ConfigError, match=re.escape(message)):
        ModelSpec(**{field: value})


def test_every_routing_setting_is_saved_and_runs_on_a_fake_backend(tmp_path):
    """Top-k with capacity and a balance weight survive save / load and run through the job
    layer on fake_manila in one job per forward pass, as the exact simulator computes them."""
    from qmoe_qiskit.jobs import JobOptions, RuntimeSampler, connect
    from qmoe_qiskit.models import ModelSpec, build_model, load_model, save_model
    from qmoe_qiskit.primitives import SamplerEstimator

    torch.manual_seed(0)
    spec = ModelSpec(router="quantum", ansatz="sel", num_experts=2, top_k=1, capacity=1.0,
                     balance_weight=0.01).for_data(2, 2)
    save_model(tmp_path / "m.pt", build_model(spec), spec)
    model, loaded, _ = load_model(tmp_path / "m.pt")
    assert loaded == spec and (model.top_k, model.capacity) == (1, 1.0)
    x = torch.rand(6, 2) * np.pi
    exact = model.gates(x)
    with RuntimeSampler(connect("fake_manila"), JobOptions(shots=4000), seed=1) as sampler:
        with model.using(sampler=sampler, estimator=SamplerEstimator(sampler)):
            _, hardware = sampler.run_together(lambda: model.forward_with_gates(x))
    assert sampler.stats()["jobs_submitted"] == 1
    assert ((hardware > 0).sum(dim=1) == 1).all()  # top-1 under capacity: one expert each
    assert (hardware.argmax(1) == exact.argmax(1)).float().mean() >= 0.5


def test_a_reuploading_experts_gradients_equal_parameter_shift():
    """The Jacobian of a data re-uploading expert's class probabilities, on the exact
    simulator, equals the parameter-shift rule on qiskit-machine-learning's exact reference
    sampler: each weight θ_j and each embedded angle s_{l,i} x_i sits in one RY gate, so
    dp/dθ_j = (p(θ_j + π/2) - p(θ_j - π/2)) / 2, and a learnable input scale s_{l,i} (which
    reaches the circuit through the QNN's input gradients) has dp/ds = x_i · the same shift of
    its angle."""
    from qmoe_qiskit.models.quantum import ReuploadingExpert

    torch.manual_seed(3)
    expert = ReuploadingExpert(3, 2, num_layers=2)
    with torch.no_grad():
        expert.input_scale.uniform_(0.5, 1.5)
    x = torch.rand(1, 3) * np.pi + 0.3
    probs = torch.exp(expert(x))[0]
    ours = {"scale": [], "weight": []}
    for k in range(2):
        grads = torch.autograd.grad(probs[k], [expert.input_scale, expert.layer.connector.weight],
                                    retain_graph=True)
        ours["scale"].append(grads[0].reshape(-1))
        ours["weight"].append(grads[1].reshape(-1))
    expert.set_primitive(QMLSampler())  # the reference, for the shifted evaluations
    half = np.pi / 2

    def reference(**change) -> torch.Tensor:
        with torch.no_grad():
            scale = expert.input_scale.clone()
            weight = expert.layer.connector.weight.clone()
            if "scale" in change:
                (l, i), delta = change["scale"]
                expert.input_scale[l, i] += delta / x[0, i]  # moves the angle by delta
            if "weight" in change:
                j, delta = change["weight"]
                expert.layer.connector.weight[j] += delta
            out = torch.exp(expert(x))[0]
            expert.input_scale.copy_(scale)
            expert.layer.connector.weight.copy_(weight)
        return out

    for l in range(2):
        for i in range(3):
            shift = (reference(scale=((l, i), half)) - reference(scale=((l, i), -half))) / 2
            for k in range(2):
                assert ours["scale"][k][l * 3 + i].item() == pytest.approx(
                    x[0, i].item() * shift[k].item(), abs=1e-5)
    for j in range(expert.layer.connector.weight.numel()):
        shift = (reference(weight=(j, half)) - reference(weight=(j, -half))) / 2
        for k in range(2):
            assert ours["weight"][k][j].item() == pytest.approx(shift[k].item(), abs=1e-5)
    assert torch.cat(ours["scale"]).abs().sum() > 0


def test_a_reuploading_expert_embeds_the_input_again_in_every_layer():
    from qmoe_qiskit.circuits import reuploading_ansatz

    built = reuploading_ansatz(3, 4, num_outputs=2)
    assert len(built.inputs) == 12 and len(built.weights) == 12
    embedded = [inst.operation.params[0] for inst in built.circuit.data
                if inst.operation.name == "ry" and set(inst.operation.params[0].parameters)
                <= set(built.inputs)]
    assert len(embedded) == 12  # every layer's own copy of the three features


def test_a_multiplexed_rotation_is_the_controlled_rotations_it_stands_for():
    """RY(angles[s]) on the target for each basis state s of the controls, as 2^k RY + 2^k CX,
    equals the product of the 2^k controlled RYs (control state s) Qiskit builds."""
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import RYGate
    from qiskit.quantum_info import Operator

    from qmoe_qiskit.circuits import multiplexed_ry

    rng = np.random.default_rng(0)
    for k in range(4):
        angles = rng.uniform(-3, 3, 1 << k)
        ours, reference = QuantumCircuit(k + 1), QuantumCircuit(k + 1)
        multiplexed_ry(ours, list(angles), list(range(1, k + 1)), 0)
        for s, angle in enumerate(angles):
            gate = RYGate(angle).control(k, ctrl_state=s, annotated=False) if k else RYGate(angle)
            reference.append(gate, list(range(1, k + 1)) + [0])
        assert np.allclose(Operator(ours).data, Operator(reference).data, atol=1e-12)
        assert {inst.operation.name for inst in ours.data} <= {"ry", "cx"}


def _coherent(expert: str, experts: int, classes: int = 2, features: int = 2, seed: int = 0):
    from qmoe_qiskit.models import ModelSpec, build_model

    torch.manual_seed(seed)
    spec = ModelSpec(router="quantum", ansatz="paper", expert=expert, num_experts=experts,
                     aggregation="coherent").for_data(features, classes)
    model = build_model(spec)
    if model.experts.input_scale is not None:
        with torch.no_grad():
            model.experts.input_scale.uniform_(0.5, 1.5)
    return model, spec


@pytest.mark.parametrize("expert, experts, classes", [("quantum", 2, 2), ("quantum", 4, 3),
                                                       ("reupload", 2, 2), ("reupload", 4, 2)])
def test_coherent_aggregation_equals_a_statevector_of_the_composed_circuit(expert, experts,
                                                                           classes):
    """The coherent model's joint P(routing outcome, class) is Qiskit's Statevector of its one
    circuit with the features, the router's weights (and the scaled features) bound as inputs
    and the experts' weights bound as weights, read by the routing rule; its output is that
    distribution postselected on routing outcome 0."""
    model, _ = _coherent(expert, experts, classes)
    layer = model.experts.layer
    built = layer.ansatz
    x = torch.rand(3, 2) * np.pi
    router = model.router.layer.connector.weight.detach()
    joint = model.experts.joint(x, router).detach()
    out = model(x).detach()
    weights = layer.connector.weight.detach().numpy()
    measured = [built.circuit.find_bit(inst.qubits[0]).index for inst in built.circuit.data
                if inst.operation.name == "measure"]
    for row in range(len(x)):
        inputs = [x[row].tolist(), router.tolist()]
        if model.experts.input_scale is not None:
            scale = model.experts.input_scale.detach()
            inputs.append((scale * x[row]).reshape(-1).tolist())
        values = dict(zip(built.inputs, np.concatenate(inputs)))
        values.update(zip(built.weights, weights))
        bound = built.circuit.remove_final_measurements(inplace=False).assign_parameters(values)
        probs = Statevector(bound).probabilities(measured)  # outcome bits in clbit order
        expected = np.zeros(experts * classes)
        for k, p in enumerate(probs):
            expected[built.interpret(k)] += p
        expected = expected.reshape(classes, experts)  # outcome r + E·c
        assert np.allclose(joint[row].numpy(), expected, atol=1e-10)
        kept = expected[:, 0] / expected[:, 0].sum()
        assert np.allclose(out[row].exp().numpy(), kept, atol=1e-6)


def test_coherent_aggregation_marginalised_over_routing_is_the_classical_mixture():
    """Without postselection (summed over routing outcomes), the joint circuit's class
    distribution is Σ_e P(e|x) P_e(c|x): the router's probabilities times each expert's own
    circuit (a QuantumExpert holding expert e's angles): the incoherent mixture it extends."""
    from qmoe_qiskit.models.quantum import QuantumExpert

    model, _ = _coherent("quantum", 4)
    x = torch.rand(4, 2) * np.pi
    with torch.no_grad():
        joint = model.experts.joint(x, model.router.layer.connector.weight)
        gates = model.router(x)
        angles = model.experts.layer.connector.weight[:-2].reshape(4, -1)  # ω last
        mixture = torch.zeros(4, 2, dtype=torch.float64)
        for e in range(4):
            expert = QuantumExpert(2, 2, num_layers=2)
            expert.layer.connector.weight.copy_(angles[e])
            mixture += gates[:, e:e + 1].double() * expert(x).exp().double()
    assert torch.allclose(joint.sum(dim=-1).double(), mixture, atol=1e-6)
    assert not torch.allclose(torch.softmax(model(x), -1).double(), mixture, atol=1e-3)


def test_coherent_aggregation_gradients_equal_finite_differences():
    """Every trainable tensor of a coherent re-uploading model (the router's weights, which
    reach the loss through the router and through the joint circuit's inputs, the experts'
    and aggregation angles, the input scales) gets the gradient central differences give.
    TorchConnector hands its outputs and gradients to torch in float32, so the step is 1e-3
    and the tolerance 3e-4 (float32 rounding of the loss over the step is about 1e-4; a
    wrong factor, sign or missing path is orders of magnitude more)."""
    model, _ = _coherent("reupload", 2, seed=2)
    model.double()
    x = torch.rand(4, 2, dtype=torch.float64) * np.pi
    y = torch.tensor([0, 1, 1, 0])

    def loss() -> torch.Tensor:
        return model.training_loss(x, y)[0]

    params = [p for p in model.parameters() if p.requires_grad]
    assert len(params) == 3
    grads = torch.autograd.grad(loss(), params)
    step = 1e-3
    with torch.no_grad():
        for param, grad in zip(params, grads):
            flat = param.view(-1)
            assert grad.abs().sum() > 1e-2
            for j in range(flat.numel()):
                flat[j] += step
                up = loss().item()
                flat[j] -= 2 * step
                down = loss().item()
                flat[j] += step
                assert grad.view(-1)[j].item() == pytest.approx((up - down) / (2 * step),
                                                                abs=3e-4)


@pytest.mark.parametrize("fields, message", [
    (dict(expert="linear"), "coherent aggregation combines the experts' amplitudes in one "
                            "circuit, so it needs quantum experts (--expert quantum or "
                            "reupload); --expert linear is classical"),
    (dict(expert="quantum", ansatz="sel"), "needs --router quantum --ansatz paper; got "
                                           "--ansatz sel"),
    (dict(expert="quantum", router="mlp"), "got --router mlp"),
    (dict(expert="quantum", num_experts=3), "it needs 2, 4, 8, ... experts; got 3"),
    (dict(expert="quantum", top_k=1), "leave --top-k and --capacity out"),
    (dict(expert="quantum", capacity=1.0), "leave --top-k and --capacity out"),
    (dict(aggregation="quantum"), "unknown aggregation 'quantum'; valid aggregations: "
                                  "'classical', 'coherent'"),
])
def test_coherent_aggregation_settings_are_checked_in_the_spec(fields, message):
    from qmoe_qiskit.models import ModelSpec

    fields = {"router": "quantum", "ansatz": "paper", "aggregation": "coherent", **fields}
    with pytest.raises(ConfigError, match=re.escape(message)):
        ModelSpec(**fields)


@pytest.mark.parametrize("expert", ["quantum", "reupload"])
def test_a_coherent_model_saves_loads_and_runs_on_a_fake_backend(tmp_path, expert):
    """A coherent model (plain and re-uploading experts) survives save / load with the same
    outputs, and runs through the job layer on fake_manila in one job per forward pass (the
    router's PUB and the joint circuit's), close to its exact class distribution."""
    from qmoe_qiskit.jobs import JobOptions, RuntimeSampler, connect
    from qmoe_qiskit.models import CoherentMixture, load_model, save_model

    model, spec = _coherent(expert, 2, seed=1)
    save_model(tmp_path / "m.pt", model, spec)
    loaded, loaded_spec, _ = load_model(tmp_path / "m.pt")
    assert loaded_spec == spec and isinstance(loaded, CoherentMixture)
    x = torch.rand(6, 2) * np.pi
    exact = torch.softmax(loaded(x), -1).detach()
    assert torch.allclose(exact, torch.softmax(model(x), -1).detach(), atol=1e-12)
    with RuntimeSampler(connect("fake_manila"), JobOptions(shots=8000), seed=1) as sampler:
        with loaded.using(sampler=sampler):
            outputs, gates = sampler.run_together(lambda: loaded.forward_with_gates(x))
    assert sampler.stats()["jobs_submitted"] == 1
    tvd = 0.5 * (torch.softmax(outputs, -1) - exact).abs().sum(-1)
    assert tvd.mean() < 0.15
    assert torch.allclose(gates.sum(-1), torch.ones(6, dtype=gates.dtype), atol=1e-9)
