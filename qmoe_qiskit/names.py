"""The names the command line offers as choices, in a module that imports nothing.

``qmoe --help`` builds every parser; reading the choices from here, not from the packages that
implement them (which import Qiskit, torch and scikit-learn), keeps it well under a second.
Those packages take their tuples from here, so each list is written once.
"""

DATASETS = ("moons", "circles", "digits", "mnist", "fashion_mnist")
ANSATZE = ("paper", "sel")
ROUTERS = ("linear", "mlp", "quantum")
EXPERTS = ("linear", "mlp", "quantum")
