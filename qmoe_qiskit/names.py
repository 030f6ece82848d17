"""The names the command line offers as choices, in a module that imports nothing.

``qmoe --help`` builds every parser; reading the choices from here, not from the packages that
implement them (which import Qiskit, torch and scikit-learn), keeps it well under a second.
Those packages take their tuples from here, so each list is written once; so do the training
defaults, which the parsers' help states.
"""

DATASETS = ("moons", "circles", "digits", "mnist", "fashion_mnist")
ANSATZE = ("paper", "sel")
ROUTERS = ("linear", "mlp", "quantum")
EXPERTS = ("linear", "mlp", "quantum", "reupload")  # reupload: data re-uploading circuits
QUANTUM_EXPERTS = ("quantum", "reupload")
# how expert outputs combine: mixed after measurement, or as amplitudes in one circuit
AGGREGATIONS = ("classical", "coherent")

# TrainConfig's defaults, and those of the models sweep --retrain trains at each level
TRAIN_DEFAULTS = {"epochs": 100, "lr": 0.01, "batch_size": 32, "patience": 10}
RETRAIN_DEFAULTS = {**TRAIN_DEFAULTS, "epochs": 30, "patience": 5}
# qmoe study routing: its tasks (experiments.routing.TASKS) and training protocol
ROUTING_TASKS = ("moons", "circles", "digits38", "mnist38", "mnist4")
ROUTING_DEFAULTS = {**TRAIN_DEFAULTS, "epochs": 40, "lr": 0.02}


def describe_training(defaults: dict) -> str:
    """``100 epochs, lr 0.01, batch 32, patience 10`` (patience None: no early stopping)."""
    patience = (f"patience {defaults['patience']}" if defaults.get("patience")
                else "no early stopping")
    epochs = defaults["epochs"]
    return (f"{epochs} epoch{'s' * (epochs != 1)}, lr {defaults['lr']:g}, batch "
            f"{defaults['batch_size']}, {patience}")
