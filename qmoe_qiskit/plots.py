"""Figures. Each function returns a matplotlib ``Figure``; nothing touches pyplot's global state."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure

from .training import logits

__all__ = ["decision_boundaries", "training_curves", "noise_sweep", "router_agreement",
           "compare_figures", "claim_bars", "accuracy_vs_level", "parameter_efficiency",
           "threshold_curves", "expert_load", "interval_panels", "forest_plot", "scaling_curves"]


def decision_boundaries(panels: list[tuple[str, object]], x: np.ndarray, y: np.ndarray,
                        *, resolution: int = 120, margin: float = 0.2,
                        title: str | None = None) -> Figure:
    """One panel per ``(title, model)``: the predicted probability of class 1 over the plane
    (colour bar), the 0.5 boundary, and the points ``(x, y)`` by class (legend).

    Features must be two-dimensional (the plane the models were trained in).
    """
    if x.shape[1] != 2:
        raise ValueError(f"decision boundaries need 2 features, got {x.shape[1]}")
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([g0.ravel(), g1.ravel()])
    fig = Figure(figsize=(3.6 * len(panels) + 1.2, 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    filled = None
    for ax, (name, model) in zip(axes, panels):
        out = logits(model, grid)
        prob = np.exp(out - out.max(axis=1, keepdims=True))
        prob = (prob / prob.sum(axis=1, keepdims=True))[:, 1].reshape(g0.shape)
        filled = ax.contourf(g0, g1, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                             alpha=0.6)
        ax.contour(g0, g1, prob, levels=[0.5], colors="k", linewidths=1)
        for label, color, marker in ((0, "tab:blue", "o"), (1, "tab:red", "s")):
            mask = y == label
            ax.scatter(x[mask, 0], x[mask, 1], c=color, marker=marker, edgecolors="k", s=14,
                       linewidths=0.4, label=f"class {label} (test)")
        ax.set_title(name)
        ax.set_xlabel("feature 0 (scaled)")
        ax.set_ylabel("feature 1 (scaled)")
    axes[0].legend(fontsize="x-small", loc="lower left")
    if filled is not None:
        bar = fig.colorbar(filled, ax=list(axes), shrink=0.9)
        bar.set_label("predicted P(class 1); black line: 0.5")
    if title:
        fig.suptitle(textwrap.fill(title, 40 * len(panels)), fontsize="medium")
    return fig


_STYLES = [("-", None), ("--", "o"), (":", "s"), ("-.", "^"), ((0, (5, 1)), "v"),
           ((0, (1, 1)), "D"), ((0, (3, 1, 1, 1)), "x"), ("-", "+"), ("--", "*")]


def training_curves(histories: dict[str, dict], *, title: str | None = None) -> Figure:
    """Validation loss and accuracy per epoch, one line per named history; each line has its
    own dash pattern and markers, so that lines lying on one another stay visible."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    longest = max((len(h["val_loss"]) for h in histories.values()), default=1)
    for i, (name, h) in enumerate(histories.items()):
        style, marker = _STYLES[i % len(_STYLES)]
        epochs = np.arange(1, len(h["val_loss"]) + 1)
        kw = dict(label=name, linestyle=style, marker=marker, markersize=4,
                  markevery=max(1, longest // 8), linewidth=2.2 if i == 0 else 1.3,
                  zorder=3 if i == 0 else 2)
        ax_loss.plot(epochs, h["val_loss"], **kw)
        ax_acc.plot(epochs, h["val_accuracy"], **kw)
    ax_loss.set(xlabel="epoch", ylabel="validation loss", title="Validation loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy",
               ylim=(None, 1.005))
    ax_acc.legend(fontsize="small")
    if title:
        fig.suptitle(textwrap.fill(title, 110), fontsize="medium")
    return fig


def noise_sweep(levels: list[float], means: list[float], stds: list[float] | None, *,
                ideal: float, baseline: float | None, xlabel: str, title: str,
                retrained_noiseless: list[float] | None = None, note: str = "") -> Figure:
    """Test accuracy against noise level (error bars: std over repetitions, none when exact),
    with the given model's noiseless and the classical baseline's accuracy as horizontal lines;
    with ``retrained_noiseless``, each level's retrained model scored without noise too."""
    lines = [(f"the given model, noiseless {ideal:.3f}", ideal, "tab:green", "--")]
    if baseline is not None:
        lines.append((f"classical baseline {baseline:.3f}", baseline, "tab:gray", ":"))
    label = ("model retrained at each level, under its noise" if retrained_noiseless is not None
             else "the given model under noise")
    curves = {label: (levels, means, stds)}
    if retrained_noiseless is not None:
        curves["the same retrained models, noiseless"] = (levels, retrained_noiseless, None)
    fig = accuracy_vs_level(curves, xlabel=xlabel, title=title, lines=lines)
    if note:
        fig.axes[0].annotate(note, (0.01, 0.01), xycoords="axes fraction", fontsize="x-small",
                             color="0.3")
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


_MODEL_TITLES = {"ideal": "ideal", "device": "device", "depolarizing_fit": "depolarizing fit",
                 "device_scaled_fit": "device × k fit", "readout_only": "readout only",
                 "device_two_scale_fit": "gates × k_g, readout × k_r",
                 "device_readout_fit": "gates × k_g, readout per qubit"}
_AXIS = {"epsilon": "ε (depolarizing)", "scale": "k (device scale)",
         "gate_scale": "k_g (gate scale)", "readout_scale": "k_r (readout scale)"}


def _p_text(p: float) -> str:
    return f"p = {p:.2g}" if p >= 1e-300 else "p < 1e-300"


def _panels(count: int, width: float, height: float, columns: int = 4):
    rows = -(-count // columns)
    cols = min(count, columns)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def compare_figures(analysis) -> dict[str, Figure]:
    """The figures of ``qmoe compare`` from its analysis: hardware against model probability
    per outcome and sample (one panel per model), per-sample TVD histograms with the
    shot-noise floor, the likelihood profiles of the fitted parameters and the joint region
    of the two scales, per-qubit readout (calibrated, fitted, measured), and with repeats the
    scale fitted to each repeat."""
    a = analysis
    source = (f"{a.run['backend']}{' (stand-in)' if a.run['stand_in'] else ''}: {a.samples} "
              f"samples × {a.shots} shots")
    names = list(a.models)
    hardware = a.hardware

    scatter, axes = _panels(len(names), 3.2, 3.4)
    for ax, name in zip(axes, names):
        m = a.models[name]
        ax.scatter(m.fit.probabilities[0].ravel(), hardware.ravel(), s=6, alpha=0.5)
        ax.plot([0, 1], [0, 1], color="k", linewidth=0.8, linestyle="--")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="model probability",
               ylabel="measured frequency",
               title=f"{_MODEL_TITLES[name]}\n{_p_text(m.fit.gof.p_value)}, TVD "
                     f"{m.tvd_over_floor:.1f}× floor")
    scatter.suptitle(f"Router outcomes, measured against each model — {source}")

    hist, axes = _panels(len(names), 3.2, 3.0)
    top = max(max(a.models[n].tvd_per_sample) for n in names)
    bins = np.linspace(0, top * 1.05 + 1e-9, 25)
    for ax, name in zip(axes, names):
        m = a.models[name]
        ax.hist(m.tvd_per_sample, bins=bins, color="tab:blue", alpha=0.8)
        ax.axvline(m.floor_tvd, color="tab:red", linestyle="--", label="shot-noise floor")
        ax.axvline(m.mean_tvd, color="k", linewidth=1, label="mean TVD")
        ax.set(xlabel="TVD to hardware", ylabel="samples", title=_MODEL_TITLES[name])
    axes[0].legend(fontsize="x-small")
    hist.suptitle(f"Per-sample TVD against the shot-noise floor — {source}")

    profiles = [(name, key, a.models[name].fit.profiles[key]) for name in names
                for key in a.models[name].fit.profiles]
    region = a.models.get("device_two_scale_fit")
    panels = len(profiles) + (region is not None)
    prof_fig, axes = _panels(max(panels, 1), 4.0, 3.4, columns=3)
    for ax, (name, key, fit) in zip(axes, profiles):
        grid, values = ((np.asarray(fit.near), np.asarray(fit.near_profile)) if len(fit.near)
                        else (np.asarray(fit.grid), np.asarray(fit.profile)))
        dispersion = a.models[name].fit.dispersion
        ax.plot(grid, fit.log_likelihood - values, marker="o", markersize=3)
        ax.axhline(3.841 * dispersion / 2, color="tab:red", linestyle="--",
                   label="95% threshold" + (f" × dispersion {dispersion:.2f}"
                                            if dispersion > 1 else ""))
        ax.axvline(fit.estimate, color="k", linewidth=1, label=f"estimate {fit.estimate:.3g}")
        ax.set(xlabel=_AXIS[key], ylabel="log-likelihood below maximum",
               title=_MODEL_TITLES[name])
        ax.legend(fontsize="x-small")
    if region is not None:
        ax = axes[len(profiles)]
        joint = region.fit.extra["joint_region"]
        g, r = np.asarray(joint["gate_scale"]), np.asarray(joint["readout_scale"])
        deficit = np.asarray(joint["deficit"]).T / region.fit.dispersion
        shade = ax.contourf(g, r, deficit, levels=[0, 2.279, 5.991, 11.83],
                            colors=["tab:blue", "tab:cyan", "lightgray"], alpha=0.7)
        ax.contour(g, r, deficit, levels=[5.991], colors="k", linewidths=1)
        ax.plot([region.fit.values["gate_scale"]], [region.fit.values["readout_scale"]], "k+",
                markersize=10, label="estimate")
        diagonal = np.linspace(max(g.min(), r.min()), min(g.max(), r.max()), 2)
        if diagonal[1] > diagonal[0]:
            ax.plot(diagonal, diagonal, color="tab:red", linestyle=":", label="k_g = k_r")
        ax.set(xlabel=_AXIS["gate_scale"], ylabel=_AXIS["readout_scale"],
               title="joint region (68%, 95%, 99.7%)")
        ax.legend(fontsize="x-small")
        prof_fig.colorbar(shade, ax=ax, label="2 Δ log-likelihood"
                          + (" / dispersion" if region.fit.dispersion > 1 else ""))
    prof_fig.suptitle(f"Likelihood profiles — {source}")

    fitted = {name: a.models[name].fit.values for name in ("device_scaled_fit",
                                                            "device_two_scale_fit")
              if name in a.models}
    figures_readout = _readout_figure(a.readout, source, fitted)
    figures = {"scatter.png": scatter, "tvd_histograms.png": hist, "profiles.png": prof_fig,
               "readout.png": figures_readout}
    if a.drift is not None:
        figures["drift.png"] = _drift_figure(a.drift, source)
    return figures


def _readout_figure(rows: list[dict], source: str,
                    fitted: dict[str, dict[str, float]] | None = None) -> Figure:
    """Per measured qubit, P(1|0) and P(0|1): calibrated, implied by the scale fits (their
    fitted k and k_r named), fitted per qubit (95% Wald interval) and measured by mthree (95%,
    binomial)."""
    fig = Figure(figsize=(max(7.0, 2.2 * len(rows) + 4), 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    x = np.arange(len(rows))
    fitted = fitted or {}
    k = fitted.get("device_scaled_fit", {}).get("scale")
    k_r = fitted.get("device_two_scale_fit", {}).get("readout_scale")
    series = [("calibrated", "calibrated", "o"),
              ("scaled_fit", "k × calibrated" + (f" (k = {k:.3g})" if k is not None else ""),
               "s"),
              ("two_scale_fit", "k_r × calibrated"
               + (f" (k_r = {k_r:.3g})" if k_r is not None else ""), "D"),
              ("fitted", "fitted per qubit (95% Wald)", "^"), ("measured", "mthree (95%)", "v")]
    shown = [s for s in series if rows and (f"{s[0]}_p10" in rows[0] or s[0] in rows[0])]
    for ax, key, label in ((axes[0], "p10", "P(1|0)"), (axes[1], "p01", "P(0|1)")):
        for i, (kind, name, marker) in enumerate(shown):
            offset = 0.6 * (i / max(len(shown) - 1, 1) - 0.5)
            if kind in ("fitted", "measured"):
                values = np.array([r[kind][key] for r in rows])
                if kind == "fitted":
                    ci = [r[kind][f"{key}_ci"] for r in rows]
                    lo = [v - (c[0] if c[0] is not None else v) for v, c in zip(values, ci)]
                    hi = [(c[1] if c[1] is not None else v) - v for v, c in zip(values, ci)]
                else:
                    se = np.array([1.96 * r[kind][f"{key}_se"] for r in rows])
                    lo, hi = np.minimum(se, values), se
                ax.errorbar(x + offset, values, yerr=[lo, hi], fmt=marker, capsize=3,
                            label=name)
            else:
                ax.plot(x + offset, [r[f"{kind}_{key}"] for r in rows], marker, label=name)
        ax.set_xticks(x, [f"q{r['qubit']}" for r in rows])
        ax.set(title=label, xlabel="measured qubit", xlim=(-0.6, len(rows) - 0.4))
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("readout error probability")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
               ncols=min(len(shown), 5), fontsize="small")
    fig.suptitle(f"Readout per qubit: calibrated, fitted and measured\n{source}")
    return fig


def _drift_figure(d, source: str) -> Figure:
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(d.repeat_values))
    lo = [v - (ci[0] if ci[0] is not None else v) for v, ci in zip(d.repeat_values,
                                                                    d.repeat_intervals)]
    hi = [(ci[1] if ci[1] is not None else v) - v for v, ci in zip(d.repeat_values,
                                                                    d.repeat_intervals)]
    ax.errorbar(x, d.repeat_values, yerr=[lo, hi], fmt="o", capsize=3,
                label="each repeat (95% profile interval)")
    ax.axhspan(*d.jackknife_interval, color="tab:orange", alpha=0.25,
               label="long-run k, jackknife 95% interval")
    ax.axhline(d.pooled, color="k", linewidth=1, label=f"pooled fit {d.pooled:.3g}")
    ax.set_xticks(x, [str(i) for i in x])
    ax.set(xlabel="repeat (each its own job)", ylabel="k (device scale)",
           title=f"Device scale per repeat (drift test: {_p_text(d.p_value)})")
    fig.suptitle(source, fontsize="medium")
    ax.legend(fontsize="x-small")
    return fig


def claim_bars(panels: list[tuple[str, list[tuple[str, float, float, float | None]]]], *,
               title: str | None = None) -> Figure:
    """One panel per ``(title, bars)``; each bar ``(label, mean, (low, high) of its 95%
    interval, the paper's value or None)``: measured bars with their interval, the paper's
    value as a red marker."""
    fig = Figure(figsize=(4.5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, bars) in zip(axes, panels):
        x = np.arange(len(bars))
        yerr = [[b[1] - b[2][0] for b in bars], [b[2][1] - b[1] for b in bars]]
        ax.bar(x, [b[1] for b in bars], yerr=yerr, capsize=4,
               color="tab:blue", alpha=0.7, label="measured (held-out, 95% CI)")
        paper = [(i, b[3]) for i, b in enumerate(bars) if b[3] is not None]
        if paper:
            ax.scatter(*zip(*paper), color="tab:red", marker="D", zorder=3, label="paper")
        ax.set_xticks(x, [b[0] for b in bars], fontsize="small")
        ax.set(ylim=(0, 1.05), ylabel="test accuracy")
        ax.set_title(textwrap.fill(name, 40), fontsize="medium")
        ax.legend(fontsize="small", loc="lower right")
    if title:
        fig.suptitle(textwrap.fill(title, 50 * len(panels)), fontsize="medium")
    return fig


def accuracy_vs_level(curves: dict[str, tuple[list[float], list[float], list[float]]], *,
                      xlabel: str, title: str,
                      paper: tuple[list[float], list[float]] | None = None,
                      lines: list[tuple[str, float, str, str]] = (),
                      dodge: bool = False) -> Figure:
    """``curves``: label -> (levels, means, error bars: half-widths, or [minus, plus] lists
    for intervals that are not symmetric, or None); the paper's points if given, and
    horizontal ``lines`` (label, value, colour, line style). ``dodge`` shifts each curve a
    little sideways so that bars at the same level do not hide each other."""
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    span = max((max(lv) - min(lv) for lv, _, _ in curves.values() if len(lv) > 1), default=1.0)
    for i, (label, (levels, means, errors)) in enumerate(curves.items()):
        shift = (i - (len(curves) - 1) / 2) * 0.012 * span if dodge else 0.0
        ax.errorbar([lv + shift for lv in levels], means, yerr=errors, marker="o", capsize=3,
                    label=label)
    if paper is not None:
        ax.plot(*paper, "D--", color="tab:red", label="paper")
    for label, value, color, style in lines:
        ax.axhline(value, color=color, linestyle=style, label=label)
    ax.set(xlabel=xlabel, ylabel="held-out test accuracy")
    ax.set_title(textwrap.fill(title, 64), fontsize="medium")
    ax.legend(fontsize="small")
    return fig


def parameter_efficiency(panels: list[tuple[str, dict[str, list[tuple[int, float, float]]]]],
                         *, title: str | None = None) -> Figure:
    """Accuracy against trainable router parameters (log axis): one panel per ``(title,
    family -> [(parameters, mean, std)])``. Bars are mean ± std over seeds, cut at the
    accuracy's range [0, 1]; each family's frontier (the best mean reached with at most that
    many parameters) is a step line."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(5.5 * len(panels), 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    markers = ["o", "s", "^", "v"]
    for ax, (name, families) in zip(axes, panels):
        top = 0.0
        for i, (marker, (label, points)) in enumerate(zip(markers, families.items())):
            points = sorted(points)
            params = [p[0] for p in points]
            means = np.array([p[1] for p in points])
            stds = np.array([p[2] for p in points])
            low, high = np.clip(means - stds, 0, 1), np.clip(means + stds, 0, 1)
            top = max(top, float(high.max()))
            ax.errorbar(params, means, yerr=[means - low, high - means], marker=marker,
                        linestyle="none", capsize=3, alpha=0.8, color=f"C{i}", label=label,
                        clip_on=False)
            ax.step(params, np.maximum.accumulate(means), where="post", color=f"C{i}",
                    alpha=0.6, linewidth=1.2)
        ax.plot([], [], color="gray", linewidth=1.2,
                label="lines: frontier (best mean with at most\nthat many parameters)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collided with the major
        bottom, _ = ax.get_ylim()
        ax.set_ylim(bottom, min(1.0, top + 0.08 * (top - bottom)))  # never past accuracy 1
        ax.set(xlabel="trainable router parameters (log scale)",
               ylabel="test accuracy (mean ± std over seeds)")
        ax.set_title(textwrap.fill(name, 48), fontsize="medium")
        ax.legend(fontsize="x-small", loc="best")
    if title:
        fig.suptitle(textwrap.fill(title, 60 * len(panels)), fontsize="medium")
    return fig


def threshold_curves(curves: dict[str, list[list[float]]], *, threshold: float,
                     marks: dict[str, float], title: str = "Training dynamics") -> Figure:
    """Per-seed validation accuracy per epoch (thin) and their mean (thick) for each label,
    with the threshold and the paper's epoch marks; a mark past the last epoch run is not
    drawn (it would stretch the axis) but named in the legend."""
    fig = Figure(figsize=(7.4, 4.8), layout="constrained")
    ax = fig.subplots()
    last = 1
    for i, (label, runs) in enumerate(curves.items()):
        color = f"C{i}"
        for run in runs:
            ax.plot(np.arange(1, len(run) + 1), run, color=color, alpha=0.25, linewidth=0.8)
        length = min(len(r) for r in runs)
        last = max(last, max(len(r) for r in runs))
        mean = np.mean([r[:length] for r in runs], axis=0)
        ax.plot(np.arange(1, length + 1), mean, color=color, linewidth=2, label=label)
    ax.axhline(threshold, color="k", linestyle="--", linewidth=1,
               label=f"{threshold:.0%} validation accuracy")
    beyond, lowest = [], min(min(run) for runs in curves.values() for run in runs)
    for label, epoch in marks.items():
        if epoch > last:
            beyond.append(label)
            continue
        ax.axvline(epoch, color="tab:red", linestyle=":", linewidth=1)
        ax.annotate(label, (epoch, 0.52), xytext=(-3, 0), textcoords="offset points",
                    rotation=90, ha="right", va="bottom", color="tab:red", fontsize="small")
    if beyond:
        ax.plot([], [], " ", label=f"{', '.join(beyond)}: past the {last} epochs run here")
    ax.set(xlabel="epoch", ylabel="validation accuracy",
           ylim=(min(0.5, lowest - 0.02), 1.01), xlim=(0.5, last + 0.5))
    ax.set_title(textwrap.fill(f"{title} (thin: each seed, thick: mean)", 64),
                 fontsize="medium")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2,
               fontsize="small")
    return fig


def expert_load(loads: dict[str, list[float]], *, ylabel: str,
                title: str = "Expert load on the test split (mean over seeds)",
                note: str = "") -> Figure:
    """Grouped bars: each label's load per expert; ``note`` (under the axes) says what the
    loads are."""
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(loads), 1)
    for i, (label, load) in enumerate(loads.items()):
        ax.bar(np.arange(len(load)) + i * width, load, width=width, label=label)
    count = max((len(v) for v in loads.values()), default=0)
    ax.set_xticks(np.arange(count) + 0.4 - width / 2, [f"expert {e}" for e in range(count)])
    ax.set(ylabel=ylabel, ylim=(0, 1))
    ax.set_title(textwrap.fill(title, 70), fontsize="medium")
    ax.legend(fontsize="small")
    if note:
        fig.supxlabel(textwrap.fill(note, 100), fontsize="small")
    return fig


def interval_panels(panels: list[tuple[str, list[tuple[str, float, float, float, bool | None]]]],
                    *, xlabel: str, title: str, reference: float | None = None,
                    limits: tuple[float, float] | None = None) -> Figure:
    """One panel per ``(title, rows)``; each row ``(label, value, low, high, marked)`` a
    point with its interval, one row per line (a forest plot). ``marked`` ``True`` fills the
    point, ``False`` leaves it open, ``None`` fills every point alike. ``reference`` draws a
    dashed vertical line. Every panel shares one x-axis, spanning the intervals with a margin,
    clipped to ``limits``."""
    columns = min(len(panels), 4)
    rows_of_panels = -(-len(panels) // columns)
    height = max(len(rows) for _, rows in panels) * 0.28 + 1.2
    fig = Figure(figsize=(4.2 * columns, height * rows_of_panels + 1.0), layout="constrained")
    axes = fig.subplots(rows_of_panels, columns, squeeze=False).ravel()
    lo, hi = _span([r for _, rows in panels for r in rows], reference, limits)
    for ax, (name, rows) in zip(axes, panels):
        y = np.arange(len(rows))[::-1]
        for yi, (label, value, low, high, marked) in zip(y, rows):
            face = "tab:blue" if marked or marked is None else "white"
            ax.errorbar([value], [yi], xerr=[[value - low], [high - value]], fmt="o",
                        color="tab:blue", markerfacecolor=face, capsize=3)
        ax.set_yticks(y, [r[0] for r in rows], fontsize="small")
        if reference is not None:
            ax.axvline(reference, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(lo, hi)
        ax.set_xlabel(xlabel, fontsize="small")
        ax.set_title(textwrap.fill(name, 44), fontsize="small")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(textwrap.fill(title, 48 * columns), fontsize="medium")
    return fig


def _span(rows, reference: float | None, limits: tuple[float, float] | None
          ) -> tuple[float, float]:
    """The x-range of interval rows ``(label, value, low, high, ...)``: every interval and the
    reference line, with a margin, clipped to ``limits``."""
    lows = [r[2] for r in rows] + ([reference] if reference is not None else [])
    highs = [r[3] for r in rows] + ([reference] if reference is not None else [])
    pad = 0.05 * max(max(highs) - min(lows), 1e-9)
    lo, hi = min(lows) - pad, max(highs) + pad
    if limits is not None:
        lo, hi = max(lo, limits[0]), min(hi, limits[1])
    return lo, hi


def forest_plot(rows: list[tuple[str, list[tuple[str, float, float, float, bool]]]], *,
                xlabel: str, title: str, limits: tuple[float, float] | None = None) -> Figure:
    """One axes: a line per ``(label, points)``, each point ``(series, value, low, high,
    marked)`` drawn with its interval in its series' colour, a little apart from the other
    series of its line; ``marked`` fills the point (else open). A dashed line marks 0."""
    series = list(dict.fromkeys(p[0] for _, points in rows for p in points))
    colours = {name: f"C{i}" for i, name in enumerate(series)}
    fig = Figure(figsize=(9, 0.5 * len(rows) * max(1, len(series) / 3) + 1.8),
                 layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1].astype(float)
    step = 0.7 / max(len(series), 1)
    labelled = set()
    for yi, (_, points) in zip(y, rows):
        for name, value, low, high, marked in points:
            offset = (series.index(name) - (len(series) - 1) / 2) * step
            ax.errorbar([value], [yi - offset], xerr=[[value - low], [high - value]], fmt="o",
                        color=colours[name], markerfacecolor=colours[name] if marked else
                        "white", capsize=2, label=None if name in labelled else name)
            labelled.add(name)
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, [label for label, _ in rows], fontsize="small")
    ax.set_xlim(*_span([p for _, points in rows for p in points], 0.0, limits))
    ax.set_xlabel(xlabel)
    fig.legend(fontsize="small", loc="outside lower center", ncols=min(len(series), 5))
    ax.set_title(textwrap.fill(title, 85), fontsize="medium")
    return fig


def scaling_curves(curves: dict[str, list[dict[str, float]]], *, title: str) -> Figure:
    """Test accuracy against the number of experts: ``curves`` label -> points
    ``{"experts", "mean", "low", "high"}`` (accuracies in [0, 1], drawn in percent with their
    interval), on a log2 axis."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (label, points) in enumerate(curves.items()):
        shift = 2 ** ((i - (len(curves) - 1) / 2) * 0.03)  # so bars at one count do not hide
        x = [p["experts"] * shift for p in points]
        mean = [100 * p["mean"] for p in points]
        err = [[100 * (p["mean"] - p["low"]) for p in points],
               [100 * (p["high"] - p["mean"]) for p in points]]
        ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, label=label)
    counts = sorted({p["experts"] for points in curves.values() for p in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set(xlabel="experts (experts × layers fixed)", ylabel="held-out test accuracy (%)",
           ylim=(None, 100))
    ax.set_title(textwrap.fill(title, 70), fontsize="medium")
    ax.legend(fontsize="small")
    return fig
