"""A model's forward pass replayed under given outcome distributions: the hardware's measured
frequencies, their readout-mitigated version, or any noise model's exact distributions, for
the very circuits and bindings a run measured."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from qiskit.primitives import DataBin, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub

from ..errors import DataError
from ..jobs.outcomes import MeasuredPub
from ..primitives import ExactDistributions, SamplerEstimator, SyncSampler, binding_rows

__all__ = ["ReplaySampler", "replay"]


class ReplaySampler(SyncSampler):
    """A sampler answering a model's PUBs, in order, with given distributions: replays a run
    through the model under any model's (or the hardware's) outcome probabilities."""

    def __init__(self, pubs: Sequence[MeasuredPub], tables: Sequence[np.ndarray]):
        self._queue = list(zip(pubs, tables))

    def _run_pub(self, pub: SamplerPub) -> SamplerPubResult:
        if not self._queue:
            raise DataError("the model runs more circuits than the run measured; was the "
                            "model file changed after the run?")
        measured, table = self._queue.pop(0)
        names = [p.name for p in measured.isa.parameters]
        by_name = {p.name: p for p in pub.circuit.parameters}
        values = binding_rows(pub.parameter_values, [by_name[n] for n in names if n in by_name])
        if values.shape != measured.values.shape or not np.allclose(values, measured.values,
                                                                    atol=1e-6):
            raise DataError("the model's circuits or inputs differ from those the run measured; "
                            "was the model file changed after the run?")
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
