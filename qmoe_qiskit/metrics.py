"""Scores and distances, one module for every experiment: classification scores, mean ± std
over seeds or repetitions, and distances between routing distributions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

__all__ = ["accuracy", "classification_scores", "summarize", "tvd", "mean_tvd"]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(y_pred) == np.asarray(y_true)))


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1."""
    return {"accuracy": accuracy(y_true, y_pred),
            "f1": float(f1_score(y_true, y_pred, average="macro"))}


def summarize(values: Sequence[float], *, per: str = "per_seed") -> dict[str, Any]:
    """``{"mean", "std", per: values}`` with the sample standard deviation (ddof=1; 0 for a
    single value)."""
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, per: [float(v) for v in arr]}


def tvd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation distance ``½ Σ_k |p_k − q_k|`` between the rows of ``p`` and ``q``."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(axis=-1)


def mean_tvd(p: np.ndarray, q: np.ndarray) -> float:
    """The TVD of each row pair, averaged over rows (samples)."""
    return float(tvd(p, q).mean())
