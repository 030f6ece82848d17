"""qmoe-qiskit: quantum mixture-of-experts models with Qiskit routers.

Layers, each importing only from those below it: ``cli`` → ``experiments`` → ``plots``,
``training`` → ``models`` → the execution packages ``simulation`` (exact, fast), ``noise_models``
(Aer) and ``jobs`` (IBM Runtime), siblings that never import each other → ``transpile`` →
the floor: ``primitives`` (shared execution building blocks), ``backends``, ``metrics``, ``data``,
``circuits`` → ``errors``.
"""

__version__ = "0.1.0"
