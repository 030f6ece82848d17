"""The shape every experiment shares, and its run folder.

An experiment is a frozen config, validated on construction, with ``to_dict()`` and:

1. ``plan()``: the checks that need files or devices (a model file, noise levels against a
   device's calibration), then the experiment cut into **cells**: frozen, picklable callables,
   each a pure function of its fields (it seeds itself) returning a typed result;
2. an executor runs the cells (:func:`serial` here; any executor that calls each cell and
   returns the results in order will do, on other processes or machines);
3. ``aggregate(cells, results, seconds)``: results, report, figures and files, computed from
   the cell results alone;
4. :func:`write_run_folder`: ``config.json``, ``report.md``, figures and files, then
   ``results.json``, all staged in a hidden sibling folder and moved into place at the end, so a
   killed run never leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from tqdm.auto import tqdm

from ..data import PreparedData, restore
from ..models import MixtureOfExperts, ModelSpec, load_model

__all__ = ["Cell", "Experiment", "Executor", "Outcome", "run_experiment", "serial",
           "write_run_folder", "default_run_path", "load_trained"]


class Cell(Protocol):
    """One independent piece of an experiment."""

    label: str  # shown beside the progress bar

    def __call__(self, *, progress: bool = False) -> Any: ...


class Experiment(Protocol):
    command: ClassVar[str]

    def to_dict(self) -> dict[str, Any]: ...

    def plan(self) -> Sequence[Cell]: ...

    def aggregate(self, cells: Sequence[Cell], results: list, seconds: float) -> "Outcome": ...


@dataclass
class Outcome:
    """What an experiment's aggregation produces."""

    results: dict[str, Any]
    report: str
    summary: str  # the lines the command prints
    figures: dict[str, Any] = field(default_factory=dict)  # file name -> matplotlib Figure
    files: dict[str, Callable[[Path], Any]] = field(default_factory=dict)  # name -> writer
    write: bool = True  # False: nothing to keep (a dry run)


Executor = Callable[..., list]


def serial(cells: Sequence[Cell], *, progress: bool = True, desc: str = "") -> list:
    """Run the cells one after another in this process, with a progress bar over them (a
    single cell shows only its own)."""
    results = []
    with tqdm(total=len(cells), desc=desc, disable=not progress or len(cells) < 2) as bar:
        for cell in cells:
            bar.set_postfix_str(cell.label)
            results.append(cell(progress=progress))
            bar.update()
    return results


def run_experiment(experiment: Experiment, out: str | Path | None = None, *,
                   executor: Executor = serial,
                   progress: bool = True) -> tuple[Outcome, Path | None]:
    """Plan, run the cells, aggregate and write the run folder (``None`` when the outcome
    keeps nothing). Nothing is written before every cell has finished."""
    tic = time.perf_counter()
    cells = experiment.plan()
    results = executor(cells, progress=progress, desc=experiment.command)
    outcome = experiment.aggregate(cells, results, time.perf_counter() - tic)
    if not outcome.write:
        return outcome, None
    config = {"command": experiment.command, **experiment.to_dict()}
    path = out if out is not None else default_run_path(experiment.command)
    return outcome, write_run_folder(path, config, outcome)


def load_trained(path: str | Path) -> tuple[MixtureOfExperts, ModelSpec, PreparedData]:
    """A saved model with the very splits it was trained on (its test split is held out)."""
    model, spec, extra = load_model(path)
    return model, spec, restore(extra)


def default_run_path(command: str) -> Path:
    return Path("runs") / f"{command}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def write_run_folder(target: str | Path, config: dict[str, Any], outcome: Outcome) -> Path:
    """Write the run folder at ``target``; ``results.json`` is written last, and the folder
    appears whole or not at all (an existing one is updated file by file, results last)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial",
                                    dir=target.parent))
    try:
        _write_json(staging / "config.json", config)
        (staging / "report.md").write_text(outcome.report, encoding="utf-8")
        for name, figure in outcome.figures.items():
            figure.savefig(staging / name, dpi=120)
        for name, writer in outcome.files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            writer(staging / name)
        _write_json(staging / "results.json", outcome.results)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _move_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    (target / "results.json").unlink(missing_ok=True)  # incomplete until the new one lands
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == "results.json"):
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        os.replace(entry, destination)
    staging.rmdir()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
