"""The package's layering: each package imports only the layers below it, siblings never
import each other, no private name crosses a package, and loading the job layer does not load
the simulators."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "qmoe_qiskit"

# Lower numbers are lower layers; a package may import only packages of a lower rank.
RANKS = {
    "errors": 0, "names": 0,
    "files": 1, "resources": 1,
    "circuits": 2, "primitives": 2, "backends": 2, "metrics": 2, "data": 2,
    "transpile": 3,
    "simulation": 4, "noise_models": 4, "jobs": 4,
    "models": 5,
    "training": 6,
    "plots": 7,
    "experiments": 8,
    "cli": 9,
}


def violations(package: str, source: str, filename: str = "<module>", *,
               top_level: bool = False) -> list[str]:
    """Imports in ``source`` that break the layering; the source is a module of the
    subpackage ``package``, or with ``top_level`` the module ``qmoe_qiskit/<package>.py``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level >= 2 or (node.level == 1 and top_level):
            target = module.split(".")[0]
        elif node.level == 0 and module.startswith("qmoe_qiskit."):
            target = module.split(".")[1]
        else:
            continue
        if not target or target == package:
            continue
        where = f"{filename}:{node.lineno}"
        if target not in RANKS:
            found.append(f"{where}: imports {target!r}, which has no layer")
        elif RANKS[target] >= RANKS[package]:
            found.append(f"{where}: {package} (layer {RANKS[package]}) imports {target} "
                         f"(layer {RANKS[target]})")
        private = [a.name for a in node.names if a.name.startswith("_")
                   and not a.name.startswith("__")]
        if private:
            found.append(f"{where}: imports private {', '.join(private)} from {target}")
    return found


def _modules():
    """``(package, top_level, path)`` of every module but the package's ``__init__``."""
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts != ("__init__.py",):
            yield parts[0].removesuffix(".py"), len(parts) == 1, path


def test_every_module_has_a_layer():
    packages = {package for package, _, _ in _modules()}
    assert packages == set(RANKS), packages ^ set(RANKS)


def test_imports_run_only_downward_and_no_private_name_crosses_a_package():
    found = []
    for package, top_level, path in _modules():
        found += violations(package, path.read_text(), str(path.relative_to(ROOT)),
                            top_level=top_level)
    assert found == []


@pytest.mark.parametrize("package, top_level, source", [
    ("jobs", False, "from ..noise_models.factories import get_backend"),    # a sibling
    ("transpile", True, "from .jobs.sampler import RuntimeSampler"),        # upward
    ("noise_models", False, "from ..primitives.base import _hidden"),       # a private name
    ("simulation", False, "from qmoe_qiskit.models import QuantumRouter"),  # upward, absolute
    ("training", True, "def f():\n    from .experiments import run_experiment"),  # in a body
])
def test_the_layering_check_catches_what_it_should(package, top_level, source):
    assert violations(package, source, top_level=top_level)
    assert not violations(package, "from .errors import ConfigError", top_level=True)


def test_the_job_layer_loads_without_the_simulators():
    code = ("import sys, qmoe_qiskit.jobs; "
            "print(sorted(m for m in sys.modules if m.startswith('qmoe_qiskit.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert "qmoe_qiskit.jobs" in loaded
    for sibling in ("qmoe_qiskit.noise_models", "qmoe_qiskit.simulation", "qmoe_qiskit.models"):
        assert sibling not in loaded
