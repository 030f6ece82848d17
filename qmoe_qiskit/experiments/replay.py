"""A model's forward pass replayed under given outcome distributions (the hardware's measured
frequencies, their readout-mitigated version, or any noise model's exact distributions), or
under an estimator pass's values (as the runtime Estimator returned them, or refitted), for
the very circuits and bindings a run measured."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from qiskit.primitives import DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub

from ..errors import DataError
from ..jobs.estimator import EstimatedPub, GroupedEstimator
from ..jobs.mitigation import EstimatorSampler
from ..jobs.outcomes import MeasuredPub
from ..primitives import ExactDistributions, SamplerEstimator, SyncSampler, binding_rows

__all__ = ["ReplaySampler", "ReplayEstimator", "RouterTap", "replay", "replay_estimates"]

CHANGED = "was the model file changed after the run?"


class ReplaySampler(SyncSampler):
    """A sampler answering a model's PUBs, in order, with given distributions: replays a run
    through the model under any model's (or the hardware's) outcome probabilities."""

    def __init__(self, pubs: Sequence[MeasuredPub], tables: Sequence[np.ndarray]):
        self._queue = list(zip(pubs, tables))

    def _run_pub(self, pub: SamplerPub) -> SamplerPubResult:
        if not self._queue:
            raise DataError(f"the model runs more circuits than the run measured; {CHANGED}")
        measured, table = self._queue.pop(0)
        names = [p.name for p in measured.isa.parameters]
        by_name = {p.name: p for p in pub.circuit.parameters}
        values = binding_rows(pub.parameter_values, [by_name[n] for n in names if n in by_name])
        if values.shape != measured.values.shape or not np.allclose(values, measured.values,
                                                                    atol=1e-6):
            raise DataError(f"the model's circuits or inputs differ from those the run "
                            f"measured; {CHANGED}")
        register = pub.circuit.cregs[0].name
        field = ExactDistributions(table.reshape(pub.shape + table.shape[-1:]),
                                   measured.isa.num_clbits)
        return SamplerPubResult(DataBin(**{register: field}, shape=pub.shape))


def replay(model, x: torch.Tensor, pubs: Sequence[MeasuredPub],
           tables: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The model's predictions and router gates on ``x`` when its circuits' outcome
    distributions are ``tables`` (one per measured PUB, rows per binding)."""
    sampler = ReplaySampler(pubs, tables)
    with model.using(sampler=sampler, estimator=SamplerEstimator(sampler)), torch.no_grad():
        outputs, gates = model.forward_with_gates(x)
    return outputs.argmax(dim=-1).numpy(), gates.numpy()


class ReplayEstimator(GroupedEstimator):
    """An estimator answering a model's circuits, in order, with an estimator pass's values
    and stds: ``tables`` ``[(evs, stds), ...]`` (rows, observables), by default the values
    each :class:`~qmoe_qiskit.jobs.EstimatedPub` recorded."""

    def __init__(self, pubs: Sequence[EstimatedPub],
                 tables: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, *,
                 shots: int = 1):
        tables = [(p.evs, p.stds) for p in pubs] if tables is None else list(tables)
        self._queue = list(zip(pubs, tables))
        self._shots = shots

    @property
    def default_shots(self) -> int:
        return self._shots

    def _estimate(self, pub, observables):
        if not self._queue:
            raise DataError(f"the model runs more circuits than the run estimated; {CHANGED}")
        recorded, (evs, stds) = self._queue.pop(0)
        by_name = {p.name: p for p in pub.circuit.parameters}
        values = binding_rows(pub.parameter_values,
                              [by_name[n] for n in recorded.parameters if n in by_name])
        if values.shape != recorded.values.shape or len(observables) != evs.shape[1] or \
                not np.allclose(values, recorded.values, atol=1e-6):
            raise DataError(f"the model's circuits, inputs or observables differ from those "
                            f"the run estimated; {CHANGED}")
        return np.asarray(evs), np.asarray(stds)


class RouterTap:
    """The outputs of a model's router circuit (its QNN: ⟨Z_i⟩ or probabilities, before any
    classical adapter) in the latest forward pass; ``None`` for a classical router."""

    def __init__(self, model):
        self.last = None
        layer = getattr(getattr(model, "router", None), "layer", None)
        self._hook = None if layer is None else layer.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.last = output.detach().numpy().copy()

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()


def replay_estimates(model, x: torch.Tensor, pubs: Sequence[EstimatedPub],
                     tables: Sequence[tuple[np.ndarray, np.ndarray]] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The model's predictions, router gates and router circuit outputs on ``x`` when its
    estimator pass returns ``tables`` (default: what ``pubs`` recorded): ⟨Z⟩ circuits read
    them directly, probability circuits through their Z strings."""
    estimator = ReplayEstimator(pubs, tables)
    tap = RouterTap(model)
    try:
        with model.using(sampler=EstimatorSampler(estimator), estimator=estimator), \
                torch.no_grad():
            outputs, gates = model.forward_with_gates(x)
    finally:
        tap.close()
    return outputs.argmax(dim=-1).numpy(), gates.numpy(), tap.last
