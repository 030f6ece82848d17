"""The words of ``qmoe compare``: its report and the lines it prints, from the analysis."""

from __future__ import annotations

from .compare_analysis import CompareAnalysis, ModelScore

__all__ = ["report", "summary", "verdict_lines"]

_SYMBOLS = {"epsilon": "ε", "scale": "k", "gate_scale": "k_g", "readout_scale": "k_r"}


def _interval(ci) -> str:
    lo, hi = ci
    return f"[{'?' if lo is None else f'{lo:.4g}'}, {'open' if hi is None else f'{hi:.4g}'}]"


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-300 else "< 1e-300"


def _fitted(m: ModelScore) -> str:
    return ", ".join(f"{_SYMBOLS.get(k, k)} = {v:.4g} {_interval(m.fit.intervals[k])}"
                     for k, v in m.fit.values.items())


def _how_far(m: ModelScore) -> str:
    g = m.fit.gof
    return (f"deviance {g.deviance:.1f} on {g.dof} degrees of freedom, p = {_p(g.p_value)}; "
            f"dispersion {g.dispersion:.2f}, mean TVD {m.tvd_over_floor:.2f}× its shot-noise "
            f"floor")


def verdict_lines(a: CompareAnalysis) -> list[str]:
    """The verdict, the proportions, readout, drift and consistency findings, in words."""
    v, models = a.verdict, a.models
    rule = (f"deviance goodness-of-fit test at level α = {v.alpha:g} (counts pooled to expected "
            f"counts ≥ 5; degrees of freedom the pooled cells less one per sample, less the "
            f"fitted parameters)")
    if v.explaining:
        passing = ", ".join(f"{models[n].title} (p = {_p(models[n].fit.gof.p_value)})"
                            for n in v.explaining)
        lines = [f"**Explained** by the {rule}: {passing}."]
        if len(v.explaining) > 1:
            ranked = sorted(v.explaining, key=lambda n: models[n].aic)
            gap = models[ranked[1]].aic - models[ranked[0]].aic
            by_bic = min(ranked, key=lambda n: models[n].bic)
            lines.append(f"Several models pass. Preferred: **{models[v.preferred].title}**, the "
                         f"simplest within 2 of the lowest AIC (lowest: {models[ranked[0]].title}, "
                         f"ΔAIC {gap:.1f} to {models[ranked[1]].title}; lowest BIC: "
                         f"{models[by_bic].title}).")
    else:
        worst = models[v.least_bad]
        lines = [f"**No model explains the hardware**: the {rule} rejects every one. The least "
                 f"bad (lowest AIC) is {worst.title}: {_how_far(worst)}. The device has noise "
                 f"none of these models describes, such as coherent errors, crosstalk or drift."]
    if a.proportions is not None:
        p = a.proportions
        two = models["device_two_scale_fit"]
        if p["differ"]:
            gates, readout = (_interval(two.fit.intervals[k])
                              for k in ("gate_scale", "readout_scale"))
            lines.append(f"**The calibration's proportions are wrong**: gates × "
                         f"{p['gate_scale']:.3g} {gates}, readout × {p['readout_scale']:.3g} "
                         f"{readout} (likelihood-ratio test of one scale for both: p = "
                         f"{_p(p['p_value'])}).")
        else:
            lines.append(f"One scale serves gates and readout alike (likelihood-ratio test of "
                         f"k_g = k_r: p = {_p(p['p_value'])}).")
    check = a.readout_check
    if check is not None and check.get("identifiable") and check["differ"]:
        lines.append(f"**The readout the counts imply disagrees with the run's own mthree "
                     f"calibration** beyond both uncertainties (χ² = {check['statistic']:.1f} on "
                     f"{check['dof']} degrees of freedom, p = {_p(check['p_value'])}).")
    elif check is not None and check.get("identifiable"):
        lines.append(f"The readout the counts imply agrees with the run's mthree calibration "
                     f"(χ² = {check['statistic']:.1f} on {check['dof']} degrees of freedom, p = "
                     f"{_p(check['p_value'])}).")
    widened = [n for n, m in models.items() if m.fit.dispersion > 1]
    if widened:
        lines.append("Intervals widened by the dispersion (quasi-likelihood), the counts being "
                     "over-dispersed for the model: " + ", ".join(
                         f"{models[n].title} (× √{models[n].fit.dispersion:.2f})"
                         for n in widened) + ".")
    d = a.drift
    if d is not None:
        k = ", ".join(f"{x:.3g}" for x in d.repeat_values)
        if d.p_value < a.alpha:
            lines.append(f"**The device drifted between the {len(d.repeat_values)} repeats**: "
                         f"k per repeat {k} (likelihood-ratio test of one k for all: p = "
                         f"{_p(d.p_value)}; spread beyond shot noise {d.excess_spread:.3g}). "
                         f"Quote the jackknife interval of the long-run k: {d.jackknife:.4g} "
                         f"{_interval(d.jackknife_interval)}, not the profile interval of the "
                         f"pooled counts.")
        else:
            lines.append(f"No drift detected over {len(d.repeat_values)} repeats (k per repeat "
                         f"{k}; likelihood-ratio test of one k for all: p = {_p(d.p_value)}); "
                         f"jackknife interval of the long-run k {d.jackknife:.4g} "
                         f"{_interval(d.jackknife_interval)}.")
    return lines


def summary(a: CompareAnalysis) -> str:
    run = a.run
    lines = [f"{run['backend']}: {a.samples} samples × {a.shots} shots"
             + (f" ({a.repeats} repeats)" if a.repeats > 1 else "")
             + f"; hardware accuracy {a.hardware_accuracy:.3f}; shot-noise floor TVD "
               f"{a.shot_noise_floor_tvd:.4f}"]
    for name, m in a.models.items():
        fitted = f"  {_fitted(m)}" if m.fit.values else ""
        lines.append(f"  {name:<21} p {_p(m.fit.gof.p_value):>8}  TVD {m.tvd_over_floor:5.2f}× "
                     f"floor  AIC {m.aic:12.1f}  accuracy {m.accuracy:.3f}"
                     + ("  explains" if m.explains else "") + fitted)
    if a.mitigation is not None:
        ideal = a.mitigation["models"].get("ideal")
        if ideal is not None:
            lines.append(f"readout-mitigated: TVD to ideal {ideal['raw_mean_tvd']:.4f} raw -> "
                         f"{ideal['mitigated_mean_tvd']:.4f} mitigated; accuracy "
                         f"{a.mitigation['hardware_accuracy']:.3f}")
    if a.mitigated_router is not None:
        for name, r in a.mitigated_router["rows"].items():
            if name == "raw":
                continue
            cover = "cover" if r.get("stds_cover_error") else "do not cover"
            z = "" if r.get("z_rms") is None else \
                f", z RMS {r['z_rms']:.2f} (stds {cover} the error at α {a.alpha})"
            removed = "" if r["raw_error_removed"] is None else \
                f" ({r['raw_error_removed']:.0%} of raw removed)"
            lines.append(f"mitigated ({name}): router error vs ideal {r['error_vs_ideal']:.4f}"
                         f"{removed}{z}; accuracy {r['accuracy']:.3f}")
    lines += [line.replace("**", "") for line in verdict_lines(a)]
    return "\n".join(lines)


def _mitigation_section(a: CompareAnalysis) -> list[str]:
    m = a.mitigation
    if m is None:
        return ["No readout mitigation (run with `--mitigate readout` to measure a readout "
                "calibration in the same job and compare mitigated counts too).", ""]
    measured = ", ".join(f"{q}: {e['p10']:.4f} / {e['p01']:.4f}"
                         for q, e in m["calibration"]["qubits"].items())
    lines = ["## Readout-mitigated hardware", "",
             f"mthree corrected the counts with the readout calibration measured in the run's "
             f"job (P(1|0) / P(0|1) per qubit: {measured}). Mitigation removes readout error, so "
             f"each model is taken here without its readout errors; the raw column sets the "
             f"uncorrected counts against the same readout-free model. Mitigated distributions "
             f"are not multinomial samples (correction amplifies shot noise), so the floor, "
             f"taken from the model at {a.shots} shots, is a lower bound.", "",
             "| model, readout removed | raw TVD [95% CI] | mitigated TVD [95% CI] | floor | "
             "mitigated / floor |", "|---|---|---|---:|---:|"]
    for name, r in m["models"].items():
        lines.append(f"| {a.models[name].title} | {r['raw_mean_tvd']:.4f} "
                     f"{_ci(r['raw_mean_tvd_ci'])} | {r['mitigated_mean_tvd']:.4f} "
                     f"{_ci(r['mitigated_mean_tvd_ci'])} | {r['floor_tvd']:.4f} | "
                     f"{r['mitigated_tvd_over_floor']:.2f} |")
    lines += ["", f"Accuracy on the mitigated distributions: {m['hardware_accuracy']:.3f} "
                  f"(raw: {a.hardware_accuracy:.3f}).", ""]
    return lines


def _ci(ci) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _mitigated_router_section(a: CompareAnalysis) -> list[str]:
    m = a.mitigated_router
    if m is None:
        return []
    rows = m["rows"]
    models = list(next(iter(rows.values()))["error_vs_models"]) if rows else []
    titles = {n: a.models[n].title for n in models if n in a.models and n != "ideal"}
    lines = ["## What mitigation leaves behind", "",
             "The router circuit's outputs (⟨Z_i⟩ or probabilities), raw and mitigated, against "
             "the exact model and each fitted noise model: mean |value - model value| over "
             "samples and outputs. *Removed* is the fraction of the raw error against ideal "
             "that the technique removes. For the runtime Estimator's techniques, z = "
             "(mitigated - ideal) / reported std: its RMS is 1 when the error bars are honest, "
             f"and the χ² test (Σ z² on as many degrees of freedom, errors taken as "
             f"independent) rejects at α = {m['alpha']} when they do not cover the error left. "
             "Accuracy with its 95% Wilson interval over the samples; QPU × is the estimated "
             "QPU time of the technique's PUBs over the raw ones (a refit offline costs no "
             "job).", "",
             "| values | error vs ideal (no noise) | removed | "
             + " | ".join(f"vs {t}" for t in titles.values())
             + " | z RMS | χ² p | stds cover the error | accuracy [95% CI] | QPU × |",
             "|---|---:|---:|" + "---:|" * len(titles) + "---:|---:|---|---|---:|"]
    for name, r in rows.items():
        removed = "—" if r["raw_error_removed"] is None else f"{r['raw_error_removed']:.0%}"
        z = "—" if r.get("z_rms") is None else f"{r['z_rms']:.2f}"
        p = "—" if r.get("p_value") is None else _p(r["p_value"])
        cover = "—" if r.get("stds_cover_error") is None else \
            ("yes" if r["stds_cover_error"] else "**no**")
        cost = "—" if r["qpu_multiple"] is None else f"{r['qpu_multiple']:.2f}"
        lo, hi = r["accuracy_ci"]
        lines.append(f"| {name} | {r['error_vs_ideal']:.4f} | {removed} | "
                     + " | ".join(f"{r['error_vs_models'][n]:.4f}" for n in titles)
                     + f" | {z} | {p} | {cover} | {r['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | "
                       f"{cost} |")
    return lines + [""]


def _readout_section(a: CompareAnalysis) -> list[str]:
    lines = ["## Readout (per measured qubit)", "",
             "Calibrated P(1|0) / P(0|1), what the single-k and the two-scale fits imply, the "
             "per-qubit fit (with its 95% Wald interval, clipped to [0, 1]) and, where the run "
             "measured one, its mthree calibration (± its binomial standard error).", "",
             "| qubit | calibrated | k × calibrated | k_r × calibrated | fitted per qubit | "
             "mthree |", "|---:|---|---|---|---|---|"]

    def pair(row, key):
        if f"{key}_p10" not in row:
            return "—"
        return f"{row[f'{key}_p10']:.4f} / {row[f'{key}_p01']:.4f}"

    for r in a.readout:
        fitted = r.get("fitted")
        fit_text = "—" if fitted is None else " / ".join(
            f"{fitted[k]:.4f} {_interval(fitted[f'{k}_ci'])}" for k in ("p10", "p01"))
        m = r.get("measured")
        measured = "—" if m is None else " / ".join(f"{m[k]:.4f} ± {m[f'{k}_se']:.4f}"
                                                    for k in ("p10", "p01"))
        lines.append(f"| {r['qubit']} | {r['calibrated_p10']:.4f} / {r['calibrated_p01']:.4f} | "
                     f"{pair(r, 'scaled_fit')} | {pair(r, 'two_scale_fit')} | {fit_text} | "
                     f"{measured} |")
    source = a.readout[0]["source"] if a.readout else "none"
    lines += ["", f"Readout calibration source: {source}.", ""]
    return lines


def _device_section(a: CompareAnalysis) -> list[str]:
    lines = ["## What the device model is", ""]
    lines.append("Idle-time relaxation: " + (
        "on (the ISA circuits scheduled as late as possible with the device's durations; "
        "thermal relaxation on every wait)." if a.idle_noise else
        "off (`--no-idle-noise`: qubits relax only during their own gates)."))
    rows = a.device_consistency
    if rows:
        lines += ["", "Relaxation during these gates alone exceeds their calibrated error, so "
                      "Aer's device model (which adds depolarizing error only for what "
                      "relaxation leaves of the calibrated error) adds none and keeps the "
                      "relaxation: in the model they are noisier than their calibration.", "",
                  "| gate | qubits | calibrated error | relaxation during it | model above "
                  "calibration |", "|---|---|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['gate']} | {r['qubits']} | {r['calibrated_error']:.3g} | "
                         f"{r['relaxation_error']:.3g} | +{100 * r['excess']:.0f}% |")
    else:
        lines.append("Every gate's calibrated error exceeds its relaxation: the model matches "
                     "the calibration gate by gate.")
    return lines + [""]


def _drift_section(a: CompareAnalysis) -> list[str]:
    d = a.drift
    if d is None:
        return []
    lines = ["## Drift between repeats", "",
             f"The device × k fitted to each of the {len(d.repeat_values)} repeats apart "
             f"(each its own job):", "", "| repeat | k | 95% profile interval |",
             "|---:|---:|---|"]
    for i, (k, ci) in enumerate(zip(d.repeat_values, d.repeat_intervals)):
        lines.append(f"| {i} | {k:.4g} | {_interval(ci)} |")
    lines += ["", f"Standard deviation of k between repeats {d.spread:.3g}, of which beyond "
                  f"each repeat's own uncertainty {d.excess_spread:.3g}. Likelihood-ratio test "
                  f"that one k serves every repeat: statistic {d.statistic:.1f} on {d.dof} "
                  f"degrees of freedom, p = {_p(d.p_value)}. Jackknife over repeats: long-run k "
                  f"= {d.jackknife:.4g} ± {d.jackknife_se:.3g}, 95% interval "
                  f"{_interval(d.jackknife_interval)} (Student t, {d.dof} degrees of freedom).",
              "", "![k per repeat](drift.png)", ""]
    return lines


def report(a: CompareAnalysis) -> str:
    run = a.run
    mode = " (runtime local testing mode)" if run["local_testing_mode"] else ""
    repeats = (f" in each of {a.repeats} repeats ({a.shots} shots in all)"
               if a.repeats > 1 else "")
    lines = [
        f"# Simulated against measured noise: {run['backend']}{mode}", "",
        f"{a.samples} {'training' if run.get('split') == 'train' else 'held-out test'} "
        f"samples, {a.shots // a.repeats} shots each{repeats}, "
        f"circuits {', '.join(a.circuits)}; device calibration of `{run['device']}` "
        f"({run['calibration']}). Every model is evaluated exactly (Aer density matrix) on the "
        f"ISA circuits, physical qubits and bindings the run used.", "",
        "## Verdict", "", *[f"{line}\n" for line in verdict_lines(a)],
        "## Models", "",
        "Each model's goodness of fit to every circuit's counts (deviance G² with its p-value, "
        "dispersion X²/dof), its fitted parameters with 95% profile-likelihood intervals, AIC "
        "(lower is better; BIC in results.json) and, as descriptive distances, the mean TVD "
        "between each sample's measured frequencies and the model's distribution (router "
        "circuit; 95% bootstrap interval over samples) against its shot-noise floor, the mean "
        f"TVD a perfect model shows from {a.shots} shots. Hellinger distances are in "
        f"results.json.", "",
        "| model | fitted | G² / dof | p | explains at α | ΔAIC | mean TVD [95% CI] | TVD / "
        "floor | top expert agrees | accuracy |",
        "|---|---|---:|---:|---|---:|---|---:|---:|---:|",
    ]
    best_aic = min(m.aic for m in a.models.values())
    for name, m in a.models.items():
        g = m.fit.gof
        lo, hi = m.mean_tvd_ci
        lines.append(f"| {m.title} | {_fitted(m) or '—'} | {g.deviance:.1f} / {g.dof} | "
                     f"{_p(g.p_value)} | {'**yes**' if m.explains else 'no'} | "
                     f"{m.aic - best_aic:.1f} | {m.mean_tvd:.4f} [{lo:.4f}, {hi:.4f}] | "
                     f"{m.tvd_over_floor:.2f} | {m.routing_agreement:.3f} | {m.accuracy:.3f} |")
    lines += [f"| hardware | | | | | | | floor {a.shot_noise_floor_tvd:.4f} | | "
              f"{a.hardware_accuracy:.3f} |", ""]
    truth = run["stand_in"]
    if truth is not None:
        told = ", ".join(f"{k} {v}" for k, v in truth.items() if k != "job_scales")
        scales = truth.get("job_scales")
        lines += [f"The backend is a stand-in with a known truth ({told}"
                  + (f"; the scales its jobs drew: {', '.join(f'{s:.3g}' for s in scales)}"
                     if scales else "")
                  + "); no fit was told it.", ""]
    elif run["local_testing_mode"]:
        lines += ["The backend ran in plain local testing mode, whose simulator (Aer's "
                  "target-based device model) uses one symmetric readout error per qubit; the "
                  "device models here use the calibration's asymmetric P(1|0), P(0|1). Part of "
                  "any misfit of the device models can come from that difference.", ""]
    lines += [*_readout_section(a), *_drift_section(a), *_device_section(a),
              *_mitigation_section(a), *_mitigated_router_section(a),
              "![hardware against model probabilities](scatter.png)", "",
              "![TVD per sample with the shot-noise floor](tvd_histograms.png)", "",
              "![likelihood profiles and the joint region of the two scales](profiles.png)", "",
              "![readout: calibrated, fitted and measured](readout.png)", ""]
    return "\n".join(lines)
