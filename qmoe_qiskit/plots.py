"""Figures. Each function returns a matplotlib ``Figure``; nothing touches pyplot's global state."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure

from .training import logits

__all__ = ["decision_boundaries", "training_curves", "noise_sweep", "router_agreement",
           "compare_figures", "claim_bars", "accuracy_vs_level", "parameter_efficiency",
           "threshold_curves", "expert_load"]


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
    lines = [(f"ideal (noiseless) {ideal:.3f}", ideal, "tab:green", "--")]
    if baseline is not None:
        lines.append((f"classical baseline {baseline:.3f}", baseline, "tab:gray", ":"))
    return accuracy_vs_level({"quantum router under noise": (levels, means, stds)},
                             xlabel=xlabel, title=title, lines=lines)


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


_MODEL_TITLES = {"ideal": "ideal", "device": "device", "depolarizing_fit": "depolarizing fit",
                 "device_scaled_fit": "device × k fit", "readout_only": "readout only"}


def compare_figures(pubs, probabilities: dict[str, list[np.ndarray]], analysis: dict,
                    fits: dict, readout: list[dict]) -> dict[str, Figure]:
    """The figures of ``qmoe compare``: hardware against model probability per outcome and
    sample (one panel per model), per-sample TVD histograms with the shot-noise floor, the
    likelihood profiles of the fitted models, and per-qubit readout, calibrated and fitted."""
    names = list(probabilities)
    hardware = pubs[0].counts / pubs[0].counts.sum(axis=1, keepdims=True)

    scatter = Figure(figsize=(3.2 * len(names), 3.4), layout="constrained")
    for ax, name in zip(scatter.subplots(1, len(names), squeeze=False)[0], names):
        model = probabilities[name][0]
        ax.scatter(model.ravel(), hardware.ravel(), s=6, alpha=0.5)
        ax.plot([0, 1], [0, 1], color="k", linewidth=0.8, linestyle="--")
        m = analysis["models"][name]
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="model probability",
               title=f"{_MODEL_TITLES.get(name, name)}\nTVD {m['mean_tvd']:.3f} "
                     f"({m['tvd_over_floor']:.1f}× floor)")
    scatter.axes[0].set_ylabel("measured frequency")

    hist = Figure(figsize=(3.2 * len(names), 3.0), layout="constrained")
    top = max(max(analysis["models"][n]["tvd_per_sample"]) for n in names)
    bins = np.linspace(0, top * 1.05 + 1e-9, 25)
    for ax, name in zip(hist.subplots(1, len(names), squeeze=False, sharey=True)[0], names):
        m = analysis["models"][name]
        ax.hist(m["tvd_per_sample"], bins=bins, color="tab:blue", alpha=0.8)
        ax.axvline(m["floor_tvd"], color="tab:red", linestyle="--", label="shot-noise floor")
        ax.axvline(m["mean_tvd"], color="k", linewidth=1, label="mean TVD")
        ax.set(xlabel="TVD to hardware", title=_MODEL_TITLES.get(name, name))
    hist.axes[0].set_ylabel("samples")
    hist.axes[0].legend(fontsize="x-small")

    profiles = Figure(figsize=(4.2 * max(1, len(fits)), 3.4), layout="constrained")
    for ax, (name, fit) in zip(profiles.subplots(1, max(1, len(fits)), squeeze=False)[0],
                               fits.items()):
        grid, values = ((np.asarray(fit.near), np.asarray(fit.near_profile)) if len(fit.near)
                        else (np.asarray(fit.grid), np.asarray(fit.profile)))
        ax.plot(grid, fit.log_likelihood - values, marker="o", markersize=3)
        ax.axhline(3.841 / 2, color="tab:red", linestyle="--", label="95% threshold")
        ax.axvline(fit.estimate, color="k", linewidth=1, label=f"estimate {fit.estimate:.3g}")
        ax.set(xlabel="ε" if name == "depolarizing_fit" else "k (device scale)",
               ylabel="log-likelihood below maximum", title=_MODEL_TITLES.get(name, name))
        ax.legend(fontsize="x-small")

    bars = Figure(figsize=(max(4.0, 1.2 * len(readout) + 2), 3.4), layout="constrained")
    ax = bars.subplots()
    x = np.arange(len(readout))
    for offset, key, label in ((-0.3, "calibrated_p10", "calibrated P(1|0)"),
                               (-0.1, "calibrated_p01", "calibrated P(0|1)"),
                               (0.1, "scaled_fit_p10", "k × P(1|0)"),
                               (0.3, "scaled_fit_p01", "k × P(0|1)")):
        ax.bar(x + offset, [r[key] for r in readout], width=0.2, label=label)
    if readout:
        ax.axhline(readout[0]["depolarizing_fit"], color="k", linestyle=":",
                   label="depolarizing ε")
    ax.set_xticks(x, [f"q{r['qubit']}" for r in readout])
    ax.set(ylabel="readout error", title="Readout: calibrated and fitted")
    ax.legend(fontsize="x-small")
    return {"scatter.png": scatter, "tvd_histograms.png": hist, "profiles.png": profiles,
            "readout.png": bars}


def claim_bars(panels: list[tuple[str, list[tuple[str, float, float, float | None]]]]) -> Figure:
    """One panel per ``(title, bars)``; each bar ``(label, mean, half-width of the 95%
    interval, the paper's value or None)``: measured bars with their interval, the paper's
    value as a red marker."""
    fig = Figure(figsize=(4.5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, bars) in zip(axes, panels):
        x = np.arange(len(bars))
        ax.bar(x, [b[1] for b in bars], yerr=[b[2] for b in bars], capsize=4,
               color="tab:blue", alpha=0.7, label="measured (held-out, 95% CI)")
        paper = [(i, b[3]) for i, b in enumerate(bars) if b[3] is not None]
        if paper:
            ax.scatter(*zip(*paper), color="tab:red", marker="D", zorder=3, label="paper")
        ax.set_xticks(x, [b[0] for b in bars], fontsize="small")
        ax.set(ylim=(0, 1.05), ylabel="test accuracy")
        ax.set_title(textwrap.fill(title, 40), fontsize="medium")
        ax.legend(fontsize="small", loc="lower right")
    return fig


def accuracy_vs_level(curves: dict[str, tuple[list[float], list[float], list[float]]], *,
                      xlabel: str, title: str,
                      paper: tuple[list[float], list[float]] | None = None,
                      lines: list[tuple[str, float, str, str]] = ()) -> Figure:
    """``curves``: label -> (levels, means, error-bar half-widths); the paper's points if
    given, and horizontal ``lines`` (label, value, colour, line style)."""
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    for label, (levels, means, half) in curves.items():
        ax.errorbar(levels, means, yerr=half, marker="o", capsize=3, label=label)
    if paper is not None:
        ax.plot(*paper, "D--", color="tab:red", label="paper")
    for label, value, color, style in lines:
        ax.axhline(value, color=color, linestyle=style, label=label)
    ax.set(xlabel=xlabel, ylabel="held-out test accuracy", title=title)
    ax.legend(fontsize="small")
    return fig


def parameter_efficiency(panels: list[tuple[str, dict[str, list[tuple[int, float, float]]]]]
                         ) -> Figure:
    """Accuracy against trainable router parameters (log axis): one panel per ``(title,
    family -> [(parameters, mean, std)])``."""
    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    markers = ["o", "s", "^", "v"]
    for ax, (title, families) in zip(axes, panels):
        for marker, (label, points) in zip(markers, families.items()):
            ax.errorbar([p[0] for p in points], [p[1] for p in points],
                        yerr=[p[2] for p in points], marker=marker, linestyle="none",
                        capsize=3, alpha=0.8, label=label)
        ax.set_xscale("log")
        ax.set(xlabel="trainable router parameters", ylabel="test accuracy (mean ± std)")
        ax.set_title(textwrap.fill(title, 48), fontsize="medium")
        ax.legend(fontsize="small")
    return fig


def threshold_curves(curves: dict[str, list[list[float]]], *, threshold: float,
                     marks: dict[str, float]) -> Figure:
    """Per-seed validation accuracy per epoch (thin) and their mean (thick) for each label,
    with the threshold and the paper's epoch marks."""
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    for i, (label, runs) in enumerate(curves.items()):
        color = f"C{i}"
        for run in runs:
            ax.plot(np.arange(1, len(run) + 1), run, color=color, alpha=0.25, linewidth=0.8)
        length = min(len(r) for r in runs)
        mean = np.mean([r[:length] for r in runs], axis=0)
        ax.plot(np.arange(1, length + 1), mean, color=color, linewidth=2, label=label)
    ax.axhline(threshold, color="k", linestyle="--", linewidth=1,
               label=f"{threshold:.0%} validation accuracy")
    for label, epoch in marks.items():
        ax.axvline(epoch, color="tab:red", linestyle=":", linewidth=1)
        ax.text(epoch, 0.6, f" {label}", color="tab:red", fontsize="small")
    ax.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0.5, 1.01),
           title="Training dynamics (thin: seeds, thick: mean)")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def expert_load(loads: dict[str, list[float]], *, ylabel: str) -> Figure:
    """Grouped bars: each label's load per expert."""
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(loads), 1)
    for i, (label, load) in enumerate(loads.items()):
        ax.bar(np.arange(len(load)) + i * width, load, width=width, label=label)
    count = max((len(v) for v in loads.values()), default=0)
    ax.set_xticks(np.arange(count) + 0.4 - width / 2, [f"expert {e}" for e in range(count)])
    ax.set(ylabel=ylabel, title="Expert load on the test split (mean over seeds)")
    ax.legend(fontsize="small")
    return fig
