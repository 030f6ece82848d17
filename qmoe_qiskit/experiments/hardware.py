"""``qmoe run``: a trained model's held-out accuracy measured on a backend through the job layer.

Every quantum part of the model (router, quantum experts) runs on a
:class:`~qmoe_qiskit.jobs.RuntimeSampler` / :class:`~qmoe_qiskit.jobs.RuntimeEstimator` for the
backend: one PUB per circuit carrying the bindings of all test samples, answered from the result
cache when it was run before, and recorded in the job ledger before the run waits on it. The
same samples are also evaluated exactly, so the report sets the backend against the ideal model.
``dry_run`` stops after planning: circuits, bindings, shots and an estimated QPU time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import restore
from ..errors import ConfigError
from ..jobs import (
    JobOptions,
    Ledger,
    ResultCache,
    RuntimeEstimator,
    RuntimeSampler,
    connect,
    default_cache_dir,
)
from ..jobs.cache import library_versions
from ..models import load_model
from ..models.quantum import QuantumLayer
from ..plots import router_agreement
from .runs import RunFolder

__all__ = ["RunConfig", "run_on_backend", "plan_text"]


@dataclass(frozen=True)
class RunConfig:
    model: str
    backend: str  # an IBM Quantum backend, or a fake backend (local testing mode)
    shots: int = 1024
    samples: int | None = None  # the first K held-out test samples; None: all of them
    optimization_level: int = 1
    seed: int = 0  # transpiler seed
    layout: tuple[int, ...] | None = None  # physical qubits; None: lowest calibrated error
    twirling: bool = False
    dynamical_decoupling: bool = False
    cache_dir: str | None = None  # None: $QMOE_CACHE_DIR or ~/.cache/qmoe-qiskit
    channel: str | None = None
    instance: str | None = None
    dry_run: bool = False

    def __post_init__(self):
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"samples must be >= 1, got {self.samples}")
        self.job_options()  # validates shots, optimization level

    def job_options(self) -> JobOptions:
        return JobOptions(shots=self.shots, optimization_level=self.optimization_level,
                          seed_transpiler=self.seed, initial_layout=self.layout,
                          twirling=self.twirling, dynamical_decoupling=self.dynamical_decoupling)


def run_on_backend(config: RunConfig, out: str | Path | None = None, *,
                   progress: bool = True) -> tuple[dict[str, Any], RunFolder | None]:
    """Run (or with ``dry_run`` only plan) the model on the backend.

    Returns the results and the run folder (``None`` for a dry run, which writes nothing).
    The model, the data and the account are all checked before anything is transpiled.
    """
    tic = time.perf_counter()
    model, spec, extra = load_model(config.model)
    layers = [m for m in model.modules() if isinstance(m, QuantumLayer)]
    if not layers:
        raise ConfigError("the model has no quantum circuits (router and experts are "
                          "classical); there is nothing to run on a backend")
    data = restore(extra)
    available = len(data.y_test)
    count = available if config.samples is None else config.samples
    if count > available:
        raise ConfigError(f"samples={count} but the model's test split has {available}")
    x = torch.as_tensor(data.x_test[:count], dtype=torch.float32)
    y = data.y_test[:count]
    connection = connect(config.backend, channel=config.channel, instance=config.instance)

    cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    cache, ledger = ResultCache(cache_root), Ledger(cache_root / "ledger.jsonl")
    bar = tqdm(total=len(layers), desc=f"{'planning' if config.dry_run else 'running'} on "
               f"{connection.name}", disable=not progress, unit="circuit")
    sampler = RuntimeSampler(connection, config.job_options(), cache=cache, ledger=ledger,
                             plan_only=config.dry_run, on_record=lambda record: bar.update())
    model.set_primitives(sampler=sampler, estimator=RuntimeEstimator(sampler))
    try:
        with sampler, torch.no_grad():
            outputs, gates = model.forward_with_gates(x)
    finally:
        bar.close()
        model.set_primitives()
    records = [asdict(r) for r in sampler.records]
    plan = _plan(records, connection, config)
    if config.dry_run:
        return plan, None

    with torch.no_grad():
        ideal_outputs, ideal_gates = model.forward_with_gates(x)
    predictions = outputs.argmax(dim=-1).numpy()
    ideal_predictions = ideal_outputs.argmax(dim=-1).numpy()
    gates, ideal_gates = gates.numpy(), ideal_gates.numpy()
    stats = sampler.stats()
    results = {
        **plan,
        "accuracy": float(np.mean(predictions == y)),
        "ideal_accuracy": float(np.mean(ideal_predictions == y)),
        "jobs_submitted": stats["jobs_submitted"],
        "jobs_fetched": stats["jobs_fetched"],
        "cache_hits": stats["cache_hits"],
        "mean_tvd_to_ideal": float(0.5 * np.abs(gates - ideal_gates).sum(axis=1).mean()),
        "router": {"distributions": gates.tolist(), "ideal": ideal_gates.tolist()},
        "predictions": predictions.tolist(),
        "labels": y.tolist(),
        "wall_seconds": time.perf_counter() - tic,
    }
    run = RunFolder("run", out)
    run.write_json("results.json", results)
    run.save_figure("router_vs_ideal.png", router_agreement(
        ideal_gates, gates, title=f"router on {connection.name}, {config.shots} shots"))
    run.write_text("report.md", _report(results))
    return results, run


def _plan(records: list[dict], connection, config: RunConfig) -> dict[str, Any]:
    pending = [r for r in records if r["source"] in ("planned", "submitted", "fetched")]
    known = [r["shot_seconds"] for r in pending if r["shot_seconds"] is not None]
    return {
        "command": "run",
        "model": str(Path(config.model)),
        "backend": connection.name,
        "local_testing_mode": connection.local,
        "calibration": connection.calibration,
        "shots": config.shots,
        "samples": records[0]["bindings"] if records else 0,
        "options": asdict(config.job_options()),
        "dry_run": config.dry_run,
        "circuits": len(records),
        "bindings": sum(r["bindings"] for r in records),
        "total_shots": sum(r["bindings"] * r["shots"] for r in records),
        "uncached_circuits": len(pending),
        "estimated_qpu_seconds": (float(sum(known)) if len(known) == len(pending) else None),
        "pubs": records,
        "versions": library_versions(),
    }


def plan_text(plan: dict[str, Any]) -> str:
    """The dry run's answer: what would be submitted, and the estimated QPU time."""
    lines = [f"dry run on {plan['backend']}"
             + (" (local testing mode)" if plan["local_testing_mode"] else "")
             + ": nothing submitted",
             f"{'circuit':<16} {'qubits':<18} {'depth':>5} {'2q':>4} {'bindings':>8} "
             f"{'shots':>6} {'est. s':>8}  status"]
    for r in plan["pubs"]:
        est = "-" if r["shot_seconds"] is None else f"{r['shot_seconds']:.1f}"
        status = "cached" if r["source"] == "cache" else "would submit"
        lines.append(f"{r['circuit']:<16} {str(r['layout']):<18} {r['depth']:>5} "
                     f"{r['two_qubit_gates']:>4} {r['bindings']:>8} {r['shots']:>6} "
                     f"{est:>8}  {status}")
    seconds = plan["estimated_qpu_seconds"]
    lines += [
        f"circuits: {plan['circuits']} ({plan['uncached_circuits']} not cached), "
        f"bindings: {plan['bindings']}, shots: {plan['total_shots']:,}",
        "estimated QPU time: " + ("unknown (the backend reports no gate durations)"
                                  if seconds is None else f"{seconds:.1f} s")
        + " (bindings x shots x (circuit duration + repetition delay); queueing and "
          "per-job overhead not included)",
    ]
    return "\n".join(lines)


def _report(results: dict[str, Any]) -> str:
    mode = " (runtime local testing mode: a simulator with the device's noise)" \
        if results["local_testing_mode"] else ""
    lines = [
        f"# Run on {results['backend']}{mode}", "",
        f"Model `{results['model']}`, the first {results['samples']} held-out test samples, "
        f"{results['shots']} shots per binding. Calibration: {results['calibration']}.", "",
        "| | accuracy |", "|---|---:|",
        f"| {results['backend']} | {results['accuracy']:.3f} |",
        f"| ideal (exact simulation, same samples) | {results['ideal_accuracy']:.3f} |", "",
        f"Mean TVD between the measured and the ideal router distribution: "
        f"{results['mean_tvd_to_ideal']:.4f}.", "",
        f"Jobs submitted: {results['jobs_submitted']}, fetched from earlier runs: "
        f"{results['jobs_fetched']}, cache hits: {results['cache_hits']}.", "",
        "| circuit | layout | depth | 2q gates | bindings | source | job |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in results["pubs"]:
        lines.append(f"| {r['circuit']} | {r['layout']} ({r['layout_method']}) | {r['depth']} | "
                     f"{r['two_qubit_gates']} | {r['bindings']} | {r['source']} | "
                     f"{r['job_id'] or '-'} |")
    lines += ["", "![router: measured against ideal](router_vs_ideal.png)", ""]
    return "\n".join(lines)
