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


def test_each_option_name_has_one_meaning_across_the_command_line():
    # the same option string stores into the same destination in every command, with the same
    # type; the old spellings that meant different things are deprecated aliases only
    from qmoe_qiskit.cli import RENAMED, _Deprecated

    seen: dict[str, set] = {}
    for command, parser in _subparsers().items():
        for option, action in parser._option_string_actions.items():
            if isinstance(action, _Deprecated):
                assert RENAMED[(command, option)] == action.new
                continue
            seen.setdefault(option, set()).add((action.dest, action.type))
    differing = {option: kinds for option, kinds in seen.items() if len(kinds) > 1}
    assert differing == {}
    for (command, old), new in RENAMED.items():
        assert new in _subparsers()[command]._option_string_actions, (command, new)


def test_old_spellings_warn_and_mean_what_they_meant(capsys):
    from qmoe_qiskit.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", "--noise", "0.2"])
    assert args.data_noise == 0.2
    assert "--noise is deprecated" in capsys.readouterr().err
    args = parser.parse_args(["sweep", "--model", "m", "--noise", "fake_manila"])
    assert args.noise_model == "fake_manila"
    args = parser.parse_args(["run", "--model", "m", "--backend", "b", "--samples", "7",
                              "--seed", "3"])
    assert (args.limit, args.transpiler_seed) == (7, 3)
    err = capsys.readouterr().err
    assert "use --limit" in err and "use --transpiler-seed" in err and err.count("\n") == 3
    args = parser.parse_args(["run", "--model", "m", "--backend", "b", "--limit", "7"])
    assert args.limit == 7 and capsys.readouterr().err == ""


DATA = ROOT.parent / "shared" / "data"


def test_data_dir_means_the_data_folder_in_train_and_reproduce(tmp_path):
    import pytest

    if not (DATA / "mnist").is_dir():
        pytest.skip("the real MNIST files are not beside this checkout")
    from qmoe_qiskit.cli import main

    out = tmp_path / "m"
    assert main(["train", "--dataset", "mnist", "--data-dir", str(DATA), "--classes", "0,1",
                 "--features", "2", "--samples", "100", "--router", "linear", "--epochs", "1",
                 "--no-progress", "--out", str(out)]) == 0
    assert (out / "model.pt").is_file()
