"""Gate angles as functions of a circuit's parameters, for simulators that batch bindings.

An angle affine in the parameters (``a*x + b*y + c``) becomes a row of coefficients and an
offset: all angles of a binding matrix are one matrix product. Any other angle (the ZZ feature
map's ``2(π - x0)(π - x1)``) becomes numpy functions, lambdified from
``ParameterExpression.sympify()``: its value per binding and, for the chain rule, each
parameter's ``ParameterExpression.gradient``.

:class:`AngleTable` collects a circuit's angles this way while it is compiled, and
``GENERATORS`` holds each rotation's generator: the exact and the noisy simulators compile
from both, and refuse a gate after a measurement with :func:`refuse_after_measurement`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qiskit.circuit import ParameterExpression

from ..errors import UnsupportedCircuitError

__all__ = ["is_affine", "affine_row", "angle_expression", "numeric", "evaluate_angles",
           "chain_rule", "AngleTable", "GENERATORS", "ROTATIONS", "refuse_after_measurement"]

# d R(theta) / d theta = A R(theta) for each rotation whose angle may be a parameter.
GENERATORS = {
    "rx": np.array([[0, -0.5j], [-0.5j, 0]]),
    "ry": np.array([[0, -0.5], [0.5, 0]], dtype=complex),
    "rz": np.array([[-0.5j, 0], [0, 0.5j]]),
    "p": np.array([[0, 0], [0, 1j]]),
}
ROTATIONS = tuple(GENERATORS)


class AngleTable:
    """The angles of a circuit being compiled, one column each, as functions of
    ``parameters`` (the value columns, in this order): the arrays of
    :func:`evaluate_angles` and :func:`chain_rule`."""

    def __init__(self, parameters):
        self.param_index = {p: i for i, p in enumerate(parameters)}
        self._coeffs: list[np.ndarray] = []
        self._offsets: list[float] = []
        self.kinds: list[str] = []
        self.expressions: list[tuple] = []

    def add(self, kind: str, angle) -> tuple[int, bool]:
        """A new column for a ``kind`` rotation by ``angle`` (a number or a
        ``ParameterExpression``): ``(column, whether it depends on any parameter)``."""
        column = len(self._offsets)
        if is_affine(angle):
            row, offset = affine_row(angle, self.param_index)
            varies = bool(np.any(row))
        else:
            row, offset, varies = np.zeros(len(self.param_index)), 0.0, True
            self.expressions.append(angle_expression(column, angle, self.param_index))
        self._coeffs.append(row)
        self._offsets.append(offset)
        self.kinds.append(kind)
        return column, varies

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def coeffs(self) -> np.ndarray:
        """``(angles, parameters)``"""
        return np.array(self._coeffs, dtype=float).reshape(len(self), len(self.param_index))

    @property
    def offsets(self) -> np.ndarray:
        return np.array(self._offsets, dtype=float)


def refuse_after_measurement(name: str, qubits, measured, what: str) -> None:
    """Both simulators run final measurements only: refuse ``name`` on ``qubits`` if any was
    measured already, in one line saying ``what`` runs instead."""
    if any(q in measured for q in qubits):
        raise UnsupportedCircuitError(
            f"gate {name!r} acts on qubit {list(qubits)} after it was measured; {what}")


def is_affine(angle) -> bool:
    """Whether ``angle`` (a number or a ``ParameterExpression``) is affine in its parameters."""
    if not isinstance(angle, ParameterExpression):
        return True
    return not any(isinstance(slope, ParameterExpression) and slope.parameters
                   for slope in (angle.gradient(p) for p in angle.parameters))


def affine_row(angle, param_index: dict) -> tuple[np.ndarray, float]:
    """Coefficients and offset of an angle that is affine in the circuit's parameters."""
    row = np.zeros(len(param_index))
    if not isinstance(angle, ParameterExpression):
        return row, float(angle)
    for param in angle.parameters:
        row[param_index[param]] = float(np.real(complex(angle.gradient(param))))
    offset = angle.bind({p: 0.0 for p in angle.parameters}) if angle.parameters else angle
    return row, float(np.real(complex(offset)))


def angle_expression(column: int, angle: ParameterExpression, param_index: dict) -> tuple:
    """A non-affine angle as numpy functions of the parameter rows: its value, and for each of
    its parameters the derivative (the chain rule's factor)."""
    value, symbolic, symbols = _lambdified(angle, param_index)
    slopes = []
    for param in sorted(angle.parameters, key=lambda p: param_index[p]):
        if symbolic is not None:  # differentiate the expression that was checked
            import sympy

            derivative = sympy.diff(symbolic, symbols[param])
            slopes.append((param_index[param], _function(derivative, symbols, param_index)))
        else:
            slopes.append((param_index[param], _bound(angle.gradient(param), param_index)))
    return column, value, tuple(slopes)


def numeric(expr, param_index: dict) -> Callable[[np.ndarray], np.ndarray]:
    """``expr`` evaluated on every row of a parameter-value matrix (columns: ``param_index``)."""
    return _lambdified(expr, param_index)[0]


def _lambdified(expr, param_index: dict):
    """``(function, sympy expression, {parameter: symbol})``: a vectorised evaluation of
    ``expr``, checked against Qiskit's own ``bind`` at a probe point. Qiskit 2.6's
    ``sympify`` can map a symbol to the wrong parameter (seen on the results of
    ``ParameterExpression.gradient``, depending on hash order); where the check fails the
    expression is bound row by row instead (slower, always right)."""
    if not isinstance(expr, ParameterExpression) or not expr.parameters:
        constant = float(np.real(complex(expr)))
        return (lambda values: np.full(len(values), constant)), None, {}
    import sympy  # a Qiskit dependency (ParameterExpression.sympify)

    params = sorted(expr.parameters, key=lambda p: param_index[p])
    symbolic = expr.sympify()
    by_name = {str(symbol): symbol for symbol in symbolic.free_symbols}
    symbols = {p: by_name.get(p.name, sympy.Dummy()) for p in params}  # a factor may cancel
    function = _function(symbolic, symbols, param_index)
    probe = np.zeros((1, max(param_index.values()) + 1))
    rng = np.random.default_rng(12345)
    for p in params:
        probe[0, param_index[p]] = rng.uniform(0.3, 1.7)
    exact = float(np.real(complex(expr.bind({p: probe[0, param_index[p]] for p in params}))))
    if not np.isclose(function(probe)[0], exact, rtol=1e-9, atol=1e-12):
        return _bound(expr, param_index), None, {}
    return function, symbolic, symbols


def _function(symbolic, symbols: dict, param_index: dict) -> Callable[[np.ndarray], np.ndarray]:
    import sympy

    params = list(symbols)
    function = sympy.lambdify([symbols[p] for p in params], symbolic, modules="numpy")
    columns = [param_index[p] for p in params]

    def evaluate(values: np.ndarray) -> np.ndarray:
        out = np.real(np.asarray(function(*(values[:, c] for c in columns)), dtype=complex))
        return np.broadcast_to(out, (len(values),)).astype(float)

    return evaluate


def _bound(expr, param_index: dict) -> Callable[[np.ndarray], np.ndarray]:
    """``expr`` bound with Qiskit, one row at a time."""
    if not isinstance(expr, ParameterExpression) or not expr.parameters:
        constant = float(np.real(complex(expr)))
        return lambda values: np.full(len(values), constant)
    params = list(expr.parameters)
    columns = [param_index[p] for p in params]

    def evaluate(values: np.ndarray) -> np.ndarray:
        return np.array([float(np.real(complex(expr.bind(
            {p: row[c] for p, c in zip(params, columns)})))) for row in values])

    return evaluate


def evaluate_angles(values: np.ndarray, coeffs: np.ndarray, offsets: np.ndarray,
                    expressions: tuple) -> np.ndarray:
    """Every angle of every binding, ``(rows, angles)``: the affine ones as one product, the
    others (``angle_expression`` tuples) evaluated per binding."""
    angles = values @ coeffs.T + offsets
    for column, value, _ in expressions:
        angles[:, column] = value(values)
    return angles


def chain_rule(angle_grads: np.ndarray, values: np.ndarray, coeffs: np.ndarray,
               expressions: tuple) -> np.ndarray:
    """Gradients with respect to the parameters ``(rows, K, parameters)`` from those with
    respect to the angles ``(rows, K, angles)``."""
    grads = angle_grads @ coeffs
    for column, _, slopes in expressions:
        for param, slope in slopes:
            grads[:, :, param] += angle_grads[:, :, column] * slope(values)[:, None]
    return grads
