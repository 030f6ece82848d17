"""Experiments: each a frozen config cut into independent cells, aggregated into a run folder.

``run_experiment(config, out)`` runs any of them: :class:`TrainRun` (``qmoe train``),
:class:`AblationConfig` (``qmoe ablation``), :class:`SweepConfig` (``qmoe sweep``),
:class:`RunConfig` (``qmoe run``), :class:`CompareConfig` (``qmoe compare``) and
:class:`ReproduceConfig` (``qmoe reproduce``). See
:mod:`.base` for the shape they share. The experiment
classes load on first use, so a command pays only for the execution packages it needs.
"""

from importlib import import_module

from .base import Outcome, run_experiment, serial, write_run_folder

_LAZY = {"AblationConfig": "ablation", "QUICK": "ablation", "TrainRun": "train",
         "evaluate_saved": "train", "SweepConfig": "sweep", "RunConfig": "run",
         "plan_text": "run", "CompareConfig": "compare", "ReproduceConfig": "reproduce",
         "RoutingStudy": "routing"}

__all__ = ["Outcome", "run_experiment", "serial", "write_run_folder", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
