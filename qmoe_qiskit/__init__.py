"""qmoe-qiskit: quantum mixture-of-experts models with Qiskit routers.

Subpackages: ``circuits`` (ansatz builders), ``models`` (routers, experts, the mixture),
``simulation`` (fast exact primitives and adjoint gradients), ``noise_models`` and ``jobs``;
modules ``data``, ``training``, ``plots``, ``experiments`` and the ``qmoe`` command in ``cli``.
"""

__version__ = "0.1.0"
