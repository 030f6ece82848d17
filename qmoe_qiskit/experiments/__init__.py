"""Experiments: each takes a config, produces results, and writes a run folder with a report."""

from .ablation import AblationConfig, run_ablation
from .runs import RunFolder, summarize

__all__ = ["AblationConfig", "run_ablation", "RunFolder", "summarize"]
