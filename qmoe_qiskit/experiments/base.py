"""The shape every experiment shares, and its run folder.

An experiment is a frozen config, validated on construction, with ``to_dict()`` and:

1. ``plan()``: the checks that need files or devices (a model file, noise levels against a
   device's calibration), then the experiment cut into **cells**: frozen, picklable callables,
   each a pure function of its fields (it seeds itself) returning a typed result;
2. an executor runs the cells (:func:`serial` here, Ray in :mod:`.executors`; any executor
   that calls each cell and returns the results in order will do, on other processes or
   machines);
3. ``aggregate(cells, results, seconds)``: results, report, figures and files, computed from
   the cell results alone;
4. :func:`write_run_folder`: ``config.json``, ``report.md``, figures and files, then
   ``results.json``, all staged in a hidden sibling folder and moved into place at the end, so a
   killed run never leaves a folder that looks complete.

Finished cells are kept on disk by this process as they finish (:class:`CellStore`, a hidden
sibling ``.<out>.cells`` of the run folder): a killed run, run again with the same ``--out``,
only runs the cells that are missing. A cell's key hashes its pickled fields (every setting,
nested configs included), the package version and the size and time of the run's input files,
so a changed setting or input never reuses an old result. The store is removed once the run
folder is whole.

The run folder is checked before any work: a folder that already holds files is refused unless
``overwrite`` is given (then it is replaced whole, never when it holds one of the run's
inputs), and one that cannot be written is refused. If a folder turns up at the target while
the run works, the results go beside it (``<out>-1``) rather than being lost.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import json
import logging
import math
import os
import pickle
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
from ..errors import ConfigError, DataError, ModelFileError, StorageError
from ..files import check_writable_dir, file_sha256, os_reason
from ..models import MixtureOfExperts, ModelSpec, load_model

__all__ = ["Cell", "CellStore", "Experiment", "Executor", "Outcome", "run_experiment",
           "serial", "write_run_folder", "folder_writers", "check_run_folder",
           "default_run_path", "load_trained", "duration", "estimate_experiment",
           "LONG_SECONDS"]

logger = logging.getLogger(__name__)


class Cell(Protocol):
    """One independent piece of an experiment."""

    label: str  # shown beside the progress bar

    def __call__(self, *, progress: bool = False) -> Any: ...


class Experiment(Protocol):
    """Also optional: ``writes`` (``False``: keeps no run folder, as a dry run),
    ``inputs()`` (files the run reads, which ``overwrite`` may never delete) and a
    ``progress`` keyword of ``plan`` (for planning that does work the user waits on)."""

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


Executor = Callable[..., list]
"""``executor(cells, *, progress, desc, on_done)``: run every cell and return the results in
order, calling ``on_done(index, result)`` in this process as each cell finishes (in any
order). :func:`serial` here; :mod:`.executors` has Ray."""


def serial(cells: Sequence[Cell], *, progress: bool = True, desc: str = "",
           on_done: Callable[[int, Any], None] | None = None) -> list:
    """Run the cells one after another in this process, with a progress bar over them (a
    single cell shows only its own)."""
    results = []
    with tqdm(total=len(cells), desc=desc, disable=not progress or len(cells) < 2) as bar:
        for i, cell in enumerate(cells):
            bar.set_postfix_str(cell.label)
            results.append(cell(progress=progress))
            if on_done is not None:
                on_done(i, results[-1])
            bar.update()
    return results


_CELL_MAGIC = b"qmoe-cell-1 sha256="


class CellStore:
    """Finished cells' results, one pickle file per cell, written atomically as each finishes.

    A result that cannot be pickled is not kept (its cell runs again on a resume).
    """

    def __init__(self, folder: str | Path, *, salt: str = ""):
        self.folder = Path(folder)
        self.salt = salt
        self.unsaved = 0  # results that could not be kept (a full disk)

    @classmethod
    def beside(cls, run_folder: Path, salt: str = "") -> "CellStore":
        return cls(run_folder.parent / f".{run_folder.name}.cells", salt=salt)

    def key(self, cell: Cell) -> str | None:
        """A hash of the cell's pickled fields (every value in full, unlike a repr that
        abbreviates arrays), the package version and the run's inputs; ``None`` for a cell
        that cannot be pickled (it is never kept)."""
        try:
            data = pickle.dumps(cell, protocol=4)
        except (pickle.PicklingError, TypeError, AttributeError):
            return None
        digest = hashlib.sha256(f"{_version()}\n{self.salt}\n".encode())
        digest.update(data)
        return digest.hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.pkl"

    def load(self, key: str | None, expected: str | None = None) -> tuple[bool, Any]:
        """``(True, result)`` for the finished cell with this :meth:`key`, ``(False, None)``
        otherwise. An entry that is not what :meth:`save` wrote for this key (unreadable,
        edited, or, where ``expected`` names the cell's result type, a result of another type)
        counts as missing: it is computed again, never trusted."""
        if key is None:
            return False, None
        try:
            blob = self._path(key).read_bytes()
        except FileNotFoundError:
            return False, None
        except OSError as exc:
            return self._unusable(f"{type(exc).__name__}: {exc}")
        header, _, data = blob.partition(b"\n")
        if header != _CELL_MAGIC + self._digest(key, data):
            return self._unusable("it is not the entry this run wrote: damaged or edited")
        try:
            result = pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError,
                ValueError) as exc:
            return self._unusable(f"{type(exc).__name__}: {exc}")
        if expected is not None and type(result).__name__ != expected:
            return self._unusable(f"it holds a {type(result).__name__}, not a {expected}")
        return True, result

    @staticmethod
    def _digest(key: str, data: bytes) -> bytes:
        return hashlib.sha256(key.encode() + b"\n" + data).hexdigest().encode()

    @staticmethod
    def _unusable(why: str) -> tuple[bool, None]:
        logger.warning("a kept cell result is unusable (%s); running it again", why)
        return False, None

    def save(self, key: str | None, result: Any, label: str = "a cell") -> None:
        if key is None:
            return
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            logger.warning("the result of %s cannot be kept for a resume (%s)", label, exc)
            return
        path = self._path(key)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(_CELL_MAGIC + self._digest(key, data) + b"\n" + data)
            os.replace(tmp, path)
        except OSError as exc:  # a full disk: the run goes on; what was kept stays
            tmp.unlink(missing_ok=True)
            if not self.unsaved:
                logger.warning("the result of %s cannot be kept for a resume in %s (%s); the "
                               "run goes on, but an interruption would compute it again",
                               label, self.folder, os_reason(exc))
            self.unsaved += 1

    def __len__(self) -> int:
        """How many finished cells are kept."""
        return len(list(self.folder.glob("*.pkl"))) if self.folder.is_dir() else 0

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


LONG_SECONDS = 180  # work estimated to take longer is announced before it starts


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_experiment(experiment: Experiment) -> str:
    """What ``--dry-run`` prints for a study: its cells and, where the experiment can time
    itself, how long they will take. Nothing runs and nothing is written."""
    cells = experiment.plan()
    text = f"{len(cells)} cells"
    if hasattr(experiment, "estimate"):
        seconds, how = experiment.estimate(cells)
        text += f"; about {duration(seconds)} ({how})"
    return text


def run_experiment(experiment: Experiment, out: str | Path | None = None, *,
                   overwrite: bool = False, executor: Executor = serial,
                   progress: bool = True) -> tuple[Outcome, Path | None]:
    """Check the run folder, plan, run the cells (only those not already kept from an
    interrupted run into the same folder), aggregate and write the run folder (``None`` for an
    experiment that keeps none). Nothing is written to the run folder before every cell has
    finished."""
    tic = time.perf_counter()
    writes = getattr(experiment, "writes", True)
    path = default_run_path(experiment.command) if out is None else out
    inputs = experiment.inputs() if hasattr(experiment, "inputs") else ()
    protected = (*inputs, *(experiment.protected() if hasattr(experiment, "protected") else ()))
    if writes:
        path = check_run_folder(path, overwrite=overwrite, inputs=protected)
    if "progress" in inspect.signature(experiment.plan).parameters:
        cells = experiment.plan(progress=progress)  # planning the user waits on (compare's run)
    else:
        cells = experiment.plan()
    store = CellStore.beside(path, _inputs_stamp(inputs)) if writes else None
    if hasattr(experiment, "estimate"):
        seconds, how = experiment.estimate(cells)
        if seconds > LONG_SECONDS:
            logger.warning("this will take about %s (%s); an interrupted run resumes with the "
                           "same --out", duration(seconds), how)
    results = _run_cells(cells, executor, store, progress, experiment.command)
    outcome = experiment.aggregate(cells, results, time.perf_counter() - tic)
    if not writes:
        return outcome, None
    config = {"command": experiment.command, **experiment.to_dict()}
    try:
        written = write_run_folder(path, config, outcome, overwrite=overwrite)
    except StorageError:
        raise
    except OSError as exc:  # a full disk, a folder gone read-only: nothing finished is lost
        kept = len(store)
        raise StorageError(
            f"the run folder {path} cannot be written ({os_reason(exc)}); "
            + (f"the {kept} of {len(cells)} finished cells kept in {store.folder} are "
               f"reused when the same command runs again" if kept else
               "no finished cell could be kept either") + ": free space and run it again"
        ) from None
    store.clear()
    return outcome, written


def _run_cells(cells: Sequence[Cell], executor: Executor, store: CellStore | None,
               progress: bool, desc: str) -> list:
    if store is None:
        return executor(cells, progress=progress, desc=desc)
    results: list = [None] * len(cells)
    keys = [store.key(cell) for cell in cells]  # each cell pickled once
    todo = []
    for i, key in enumerate(keys):
        found, result = store.load(key, result_type(cells[i]))
        if found:
            results[i] = result
        else:
            todo.append(i)
    if len(todo) < len(cells):
        logger.warning("resuming: %d of %d cells were already finished (kept in %s; delete it "
                       "to start over)", len(cells) - len(todo), len(cells), store.folder)
    fresh = executor([cells[i] for i in todo], progress=progress, desc=desc,
                     on_done=lambda j, result: store.save(keys[todo[j]], result,
                                                          cells[todo[j]].label))
    for i, result in zip(todo, fresh):
        results[i] = result
    return results


def result_type(cell: Cell) -> str | None:
    """The name of the type a cell's ``__call__`` is annotated to return (``None`` where it
    names none): what a kept result must be to be reused."""
    annotation = inspect.signature(type(cell).__call__).return_annotation
    if annotation is inspect.Signature.empty or annotation in ("Any", Any):
        return None
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None)
    return None if name is None else name.strip("'\"").rsplit(".", 1)[-1]


def _inputs_stamp(inputs: Sequence[str | Path]) -> str:
    """Each input's path and a digest of its content (every file of a folder, by relative
    name): an input that changed, even with its size and modification time kept, is a new
    run, and no kept cell computed from the old one is reused."""
    stamps = []
    for p in inputs:
        path = Path(p)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        try:
            contents = [f"{f.relative_to(path) if f != path else ''}={file_sha256(f)}"
                        for f in files]
            stamps.append(f"{p}:{hashlib.sha256(chr(10).join(contents).encode()).hexdigest()}")
        except OSError:
            stamps.append(f"{p}:missing")
    return "|".join(stamps)


def _version() -> str:
    from .. import __version__

    return __version__


def check_run_folder(out: str | Path, *, overwrite: bool = False,
                     inputs: Sequence[str | Path] = ()) -> Path:
    """``out`` as a run folder that may be written, or :class:`StorageError` saying why not."""
    if not str(out).strip():
        raise StorageError("the run folder (--out) is empty; give a folder name")
    path = Path(out)
    here = path.resolve()
    for given in inputs:  # the command's inputs, its cache and ledger: never written over
        other = Path(given).resolve()
        if here == other or here in other.parents:
            raise StorageError(f"the run folder {path} is or holds {given}, which this command "
                               f"reads; choose another --out")
        if other in here.parents:
            raise StorageError(f"the run folder {path} lies inside {given}, which this command "
                               f"reads; choose another --out")
    if path.is_dir() and any(path.iterdir()):  # refused before anything touches it
        if not overwrite:
            raise StorageError(f"the run folder {path} already holds files; choose another "
                               f"--out, or pass --overwrite to replace it")
        if here in (Path.cwd(), *Path.cwd().parents):
            raise StorageError(f"the run folder {path} holds the current directory; "
                               f"choose another --out")
    return check_writable_dir(path, "run folder")


def load_trained(path: str | Path) -> tuple[MixtureOfExperts, ModelSpec, PreparedData]:
    """A saved model with the very splits it was trained on (its test split is held out)."""
    model, spec, extra = load_model(path)
    if not {"data", "preprocessor"} <= set(extra):
        raise ModelFileError(
            f"{path} has no record of the data it was trained on, so its held-out test split "
            f"cannot be rebuilt; save models with save_model(path, model, spec, "
            f"data.provenance()), as qmoe train does")
    try:
        return model, spec, restore(extra)
    except DataError:  # the data itself (files moved, say): its own message says it plainly
        raise
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelFileError(f"{path} has an unreadable record of its data ({exc})") from None


_JSON_KINDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
               list: "a list", dict: "an object", type(None): "null"}


def read_results(folder: str | Path, command: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config.json`` and ``results.json`` of a finished ``qmoe <command>`` folder; a one-line
    error for anything else (:func:`check_fields` checks the fields a caller reads)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"no {command} folder at {folder}; give the folder a qmoe {command} "
                          f"wrote")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{folder} is not a finished qmoe {command} folder (no "
                          f"{Path(exc.filename).name})") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder} cannot be read ({type(exc).__name__}: {exc})") from None
    written = config.get("command") if isinstance(config, dict) else None
    if written != command:
        raise ConfigError(f"{folder} is not a qmoe {command} folder (it was written by "
                          f"{'qmoe ' + written if written else 'something else'}); give the "
                          f"folder of a qmoe {command}")
    if not isinstance(results, dict):
        raise DataError(f"{folder / 'results.json'} is damaged or from another version: it "
                        f"holds a JSON {type(results).__name__}, not the results object; run "
                        f"qmoe {command} again")
    return config, results


def check_fields(results: dict[str, Any], folder: str | Path, command: str,
                 fields: dict[str, type | tuple]) -> None:
    """A one-line :class:`DataError` where the ``results.json`` of ``folder`` lacks one of
    ``fields`` (name -> the type, or types, its value must have)."""
    damaged = f"{Path(folder) / 'results.json'} is damaged or from another version"
    for name, kind in fields.items():
        value = results.get(name)
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
                kind if isinstance(kind, tuple) else (kind,))):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            wanted = " or ".join(_JSON_KINDS.get(k, k.__name__) for k in kinds)
            found = ("it has none" if name not in results
                     else f"it is {_JSON_KINDS.get(type(value), type(value).__name__)}")
            raise DataError(f"{damaged}: its {name!r} should be {wanted} ({found}); run qmoe "
                            f"{command} again")


def recorded_path(folder: str | Path, value: str) -> Path:
    """A path a run folder recorded, found from here: as written where it is absolute or
    exists; else (a relative path from an older version, written from another directory)
    beside the folder or one of its parents, where it exists."""
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    for base in (Path(folder).resolve(), *Path(folder).resolve().parents):
        if (base / path).exists():
            return base / path
    return path


def default_run_path(command: str) -> Path:
    return Path("runs") / f"{command}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def write_run_folder(target: str | Path, config: dict[str, Any], outcome: Outcome, *,
                     overwrite: bool = False) -> Path:
    """Write the run folder at ``target`` and return where it went: ``results.json`` is written
    last, and the folder appears whole or not at all. A folder already at ``target`` is replaced
    whole with ``overwrite``; without it the results go to the first free ``<target>-<n>``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial",
                                    dir=target.parent))
    try:
        staging.chmod(_folder_mode())  # mkdtemp makes it 0700; a run folder is an ordinary one
        for name, writer in folder_writers(config, outcome).items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            writer(staging / name)
        return _move_into_place(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _folder_mode() -> int:
    """The mode ``mkdir`` would give a new folder under the process's umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o777 & ~umask


def folder_writers(config: dict[str, Any], outcome: Outcome) -> dict[str, Callable[[Path], Any]]:
    """A run folder's files, name -> writer, in the order they are written: ``config.json``,
    ``report.md``, figures, the outcome's files, and ``results.json`` last."""
    writers: dict[str, Callable[[Path], Any]] = {
        "config.json": lambda path: _write_json(path, config),
        "report.md": lambda path: path.write_text(outcome.report, encoding="utf-8")}
    for name, figure in outcome.figures.items():
        writers[name] = lambda path, figure=figure: figure.savefig(path, dpi=120)
    writers.update(outcome.files)
    writers["results.json"] = lambda path: _write_json(path, outcome.results)
    return writers


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> Path:
    if _rename(staging, target):
        return target
    if overwrite:
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".replaced",
                                    dir=target.parent))
        os.replace(target, old / target.name)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        return target
    for n in range(1, 10_000):
        beside = target.with_name(f"{target.name}-{n}")
        if _rename(staging, beside):
            logger.warning("the run folder %s gained files while this run worked; the results "
                           "are in %s instead", target, beside)
            return beside
    raise StorageError(f"no free run folder beside {target}")


def _rename(staging: Path, target: Path) -> bool:
    """Move ``staging`` to ``target`` if nothing but an empty folder is there (atomically)."""
    try:
        os.rename(staging, target)
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            return False
        raise


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
