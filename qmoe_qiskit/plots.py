"""Figures. Each function returns a matplotlib ``Figure``; nothing touches pyplot's global state."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .training import logits

__all__ = ["decision_boundaries", "training_curves", "noise_sweep", "router_agreement"]


def decision_boundaries(panels: list[tuple[str, object]], x: np.ndarray, y: np.ndarray,
                        *, resolution: int = 120, margin: float = 0.2) -> Figure:
    """One panel per ``(title, model)``: predicted class over the plane, with points ``(x, y)``.

    Features must be two-dimensional (the plane the models were trained in).
    """
    if x.shape[1] != 2:
        raise ValueError(f"decision boundaries need 2 features, got {x.shape[1]}")
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([g0.ravel(), g1.ravel()])
    fig = Figure(figsize=(4 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, model) in zip(axes, panels):
        out = logits(model, grid)
        prob = np.exp(out - out.max(axis=1, keepdims=True))
        prob = (prob / prob.sum(axis=1, keepdims=True))[:, 1].reshape(g0.shape)
        ax.contourf(g0, g1, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
        ax.contour(g0, g1, prob, levels=[0.5], colors="k", linewidths=1)
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r", edgecolors="k", s=14, linewidths=0.4)
        ax.set_title(title)
        ax.set_xlabel("feature 0 (scaled)")
        ax.set_ylabel("feature 1 (scaled)")
    return fig


def training_curves(histories: dict[str, dict]) -> Figure:
    """Validation loss and accuracy per epoch, one line per named history."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, h in histories.items():
        ax_loss.plot(h["val_loss"], label=name)
        ax_acc.plot(h["val_accuracy"], label=name)
    ax_loss.set(xlabel="epoch", ylabel="validation loss", title="Validation loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    ax_acc.legend(fontsize="small")
    return fig


def noise_sweep(levels: list[float], means: list[float], stds: list[float], *, ideal: float,
                baseline: float | None, xlabel: str, title: str) -> Figure:
    """Test accuracy against noise level (error bars: std over repetitions), with the ideal
    model's and the classical baseline's accuracy as horizontal lines."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.errorbar(levels, means, yerr=stds, marker="o", capsize=3, label="quantum router under noise")
    ax.axhline(ideal, color="tab:green", linestyle="--", label=f"ideal (noiseless) {ideal:.3f}")
    if baseline is not None:
        ax.axhline(baseline, color="tab:gray", linestyle=":",
                   label=f"classical baseline {baseline:.3f}")
    ax.set(xlabel=xlabel, ylabel="held-out test accuracy", title=title)
    ax.legend(fontsize="small")
    return fig


def router_agreement(ideal: np.ndarray, measured: np.ndarray, *, title: str) -> Figure:
    """Each sample's routing probability per expert: measured (y) against ideal (x)."""
    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for e in range(ideal.shape[1]):
        ax.scatter(ideal[:, e], measured[:, e], s=12, alpha=0.7, label=f"expert {e}")
    ax.plot([0, 1], [0, 1], color="k", linewidth=0.8, linestyle="--")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="ideal P(expert | x)",
           ylabel="measured P(expert | x)", title=title)
    ax.legend(fontsize="small")
    return fig
