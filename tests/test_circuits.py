"""Ansatz builders: structure, the routing rule, and bad input."""

import numpy as np
import pytest
from qiskit.quantum_info import Statevector

from qmoe_qiskit.circuits import build_ansatz, paper_ansatz, sel_ansatz
from qmoe_qiskit.errors import ConfigError


def test_sel_matches_the_published_router_shape():
    built = sel_ansatz(2, 3)
    assert len(built.inputs) == 2 and len(built.weights) == 18
    assert built.readout == "expectations" and len(built.observables) == 2
    ops = built.circuit.count_ops()
    assert ops["rx"] == 2 and ops["rz"] == 12 and ops["ry"] == 6 and ops["cx"] == 6


def test_sel_cnot_range_changes_with_layer():
    built = sel_ansatz(3, 2)
    pairs = [tuple(built.circuit.find_bit(q).index for q in inst.qubits)
             for inst in built.circuit.data if inst.operation.name == "cx"]
    assert pairs == [(0, 1), (1, 2), (2, 0), (0, 2), (1, 0), (2, 1)]


def test_paper_ansatz_structure():
    built = paper_ansatz(3, 2)
    ops = built.circuit.count_ops()
    assert ops["ry"] == 3 + 6 and ops["cz"] == 4
    assert built.num_outputs == 8 and built.circuit.num_clbits == 3


@pytest.mark.parametrize("num_outputs, clbits", [(2, 1), (4, 2), (3, 3), (5, 3)])
def test_paper_measures_only_what_the_routing_rule_needs(num_outputs, clbits):
    assert paper_ansatz(3, 1, num_outputs=num_outputs).circuit.num_clbits == clbits


@pytest.mark.parametrize("num_outputs", [2, 3, 4])
def test_routing_rule_is_basis_index_mod_n(num_outputs):
    built = paper_ansatz(3, 2, num_outputs=num_outputs)
    rng = np.random.default_rng(0)
    values = rng.uniform(0, np.pi, built.circuit.num_parameters)
    circuit = built.circuit.assign_parameters(values)
    full = Statevector(circuit.remove_final_measurements(inplace=False)).probabilities()
    expected = np.zeros(num_outputs)
    for k, p in enumerate(full):
        expected[k % num_outputs] += p
    measured = [circuit.find_bit(i.qubits[0]).index for i in circuit.data if i.operation.name == "measure"]
    marginal = Statevector(circuit.remove_final_measurements(inplace=False)).probabilities(measured)
    folded = np.zeros(num_outputs)
    for k, p in enumerate(marginal):
        folded[built.interpret(k)] += p
    np.testing.assert_allclose(folded, expected, atol=1e-12)


def test_narrow_input_embeds_on_the_first_qubits():
    built = paper_ansatz(3, 1, num_features=2)
    assert len(built.inputs) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="ring", num_qubits=2, num_layers=1), r"unknown ansatz 'ring'; valid ansätze: 'paper', 'sel'"),
    (dict(name="sel", num_qubits=0, num_layers=1), r"qubits must be an integer >= 1, got 0"),
    (dict(name="paper", num_qubits=2, num_layers=0), r"layers must be an integer >= 1, got 0"),
    (dict(name="sel", num_qubits=2, num_layers=1, num_features=5), r"5 features but the circuit has 2 qubits"),
    (dict(name="paper", num_qubits=2, num_layers=1, num_outputs=5), r"between 2 and 4, got 5"),
])
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_ansatz(**kwargs)
