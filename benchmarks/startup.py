"""Start-up time of the ``qmoe`` command: seconds from launch to exit of commands that do no
work, where the import of Qiskit, torch and scikit-learn used to be the whole cost.

Each command runs as ``python -m qmoe_qiskit.cli ARGS`` in a fresh process, with the source
tree of this checkout, and with ``--before REV`` also with that revision's tree (a temporary
``git worktree``). Trees and commands take turns within one run (the machine is noisy); each
cell is the median over ``--rounds`` launches. ``python -c pass`` is the interpreter's own
floor. ``qmoe jobs list`` reads an empty ledger in a temporary cache folder.

    .venv/bin/python benchmarks/startup.py [--rounds 7] [--before REV] [--check]

``--check`` exits 1 when this tree's ``qmoe --help`` takes 1 s or more (the target).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "qmoe --help": ["-m", "qmoe_qiskit.cli", "--help"],
    "qmoe train --help": ["-m", "qmoe_qiskit.cli", "train", "--help"],
    "qmoe jobs list": ["-m", "qmoe_qiskit.cli", "jobs", "list"],
    "import qmoe_qiskit.experiments": ["-c", "import qmoe_qiskit.experiments"],
}
TARGET_S = 1.0


def launch(tree: Path, args: list[str], env: dict) -> float:
    tic = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - tic


def measure(trees: dict[str, Path], rounds: int) -> dict[tuple[str, str], float]:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "QMOE_CACHE_DIR": cache, "PYTHONDONTWRITEBYTECODE": "1"}
        for tree in trees.values():  # compile each tree's bytecode once, outside the timing
            for args in COMMANDS.values():
                launch(tree, args, {**env, "PYTHONDONTWRITEBYTECODE": ""})
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for name, args in COMMANDS.items():
                for label, tree in trees.items():
                    times.setdefault((name, label), []).append(launch(tree, args, env))
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before", default=None, metavar="REV",
                        help="also time this git revision's tree, interleaved")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 if this tree's qmoe --help takes {TARGET_S:.0f} s or more")
    args = parser.parse_args(argv)
    trees = {"now": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            before = Path(tmp) / "before"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                            str(before), args.before], check=True)
            trees = {f"before ({args.before})": before, "now": ROOT}
        try:
            medians = measure(trees, args.rounds)
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(before)], check=False)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; median of {args.rounds} launches (s)\n")
    labels = list(trees)
    print("| command | " + " | ".join(labels + ["before / now"] * (len(labels) > 1)) + " |")
    print("|---|" + "---:|" * (len(labels) + (len(labels) > 1)))
    for name in COMMANDS:
        cells = [f"{medians[name, label]:.2f}" for label in labels]
        ratio = ([f"{medians[name, labels[0]] / medians[name, 'now']:.0f}×"]
                 if len(labels) > 1 else [])
        print(f"| `{name}` | " + " | ".join(cells + ratio) + " |")
    if args.check and medians["qmoe --help", "now"] >= TARGET_S:
        print(f"qmoe --help took {medians['qmoe --help', 'now']:.2f} s: over the "
              f"{TARGET_S:.0f} s target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
