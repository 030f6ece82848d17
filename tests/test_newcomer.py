"""What a newcomer reads: install commands that work from a clone, flag names with one meaning."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from qmoe_qiskit.errors import install_hint

ROOT = Path(__file__).resolve().parents[1]


def _project_texts():
    for path in [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
                 *sorted((ROOT / "qmoe_qiskit").rglob("*.py")),
                 *sorted((ROOT / "scripts").iterdir())]:
        if path.is_file():
            yield path, path.read_text()


def test_nothing_promises_an_install_from_pypi():
    # the package is not on PyPI: 'pip install qmoe-qiskit[...]' fails outside the clone
    bad = re.compile(r"pip install\s+['\"]?qmoe-qiskit")
    offenders = [str(p.relative_to(ROOT)) for p, text in _project_texts() if bad.search(text)]
    assert offenders == []


def test_the_install_hint_is_a_command_for_this_clone():
    hint = install_hint("ray")
    assert hint.startswith(f"{sys.executable} -m pip install -e ")
    assert f"{ROOT}[ray]" in hint and "bash scripts/setup.sh --test" in hint
    # the extra it names exists
    assert re.search(r"^ray = \[", (ROOT / "pyproject.toml").read_text(), re.M)
    assert re.search(r"^mitigation = \[", (ROOT / "pyproject.toml").read_text(), re.M)



def _subparsers():
    import argparse

    from qmoe_qiskit.cli import build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_every_command_accepts_no_progress():
    lacking = [name for name, p in _subparsers().items()
               if "--no-progress" not in p._option_string_actions]
    assert lacking == []
