"""The papers' claims (package data, ``claims.json``) and the rule that gives each a verdict.

Verdicts:

- **reproduced**: the paper's number lies within the 95% interval of the held-out measurement
  (:func:`accuracy_interval`: the t-interval of the mean over seeds, kept inside [0, 1] and
  widened to the Wilson interval of the pooled test counts), or an ordering claim holds in
  every seed;
- **not reproduced**: it does not; the verdict's note says by how much;
- **not run**: the measurement could not be made (data not available, claim not selected).

Every function here is pure: it reads measurements through :class:`Measured` and returns a
:class:`Verdict`, so the rule can be tested without training anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import numpy as np
from scipy import stats

from ..metrics import summarize

__all__ = ["Claim", "Verdict", "Measured", "load_claims", "papers", "judge", "interval",
           "accuracy_interval", "QUICK_NOTE",
           "VERDICT_RULE", "eta", "eta_arithmetic"]

VERDICT_RULE = (
    "A claim is **reproduced** when the paper's number lies inside the 95% interval of our "
    "held-out accuracy: the t-interval of the mean over n seeds (mean ± t₀.₉₇₅,ₙ₋₁ · std/√n), "
    "cut to [0, 1], where every mean accuracy lies, and widened where needed to the 95% "
    "Wilson interval of the correct answers pooled over the seeds' test sets, so that seeds "
    "which agree exactly (all 100%, say) do not give a zero-width interval; its coverage is "
    "measured in the tests. Or, for a claim that one "
    "model beats another, when it holds in every seed. Otherwise it is **not reproduced**, and "
    "the note says by how much. A claim is **not run** when its measurement could not be made "
    "(the note says why).")


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    source: str
    claim: str
    paper_value: str
    test: dict[str, Any]

    @property
    def group(self) -> int:
        """The claim's number in the issue's list (``"2b"`` -> 2)."""
        return int("".join(ch for ch in self.id if ch.isdigit()))


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "reproduced" | "not reproduced" | "not run"
    measured: str  # what the report's table shows
    notes: str = ""
    values: dict[str, Any] = field(default_factory=dict)  # the numbers behind it


def _data() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("claims.json").read_text(encoding="utf-8")
    return json.loads(text)


def load_claims() -> list[Claim]:
    return [Claim(**c) for c in _data()["claims"]]


def papers() -> dict[str, dict[str, str]]:
    return _data()["papers"]


class Measured(Protocol):
    """What the verdicts read: per-seed held-out accuracies by task and role."""

    def ran(self, task: str) -> str | None:
        """``None`` when ``task`` was measured; otherwise why not."""

    def accuracies(self, task: str, model: str) -> list[float]: ...

    def test_samples(self, task: str) -> int | None:
        """Each seed's held-out test size on ``task`` (None: unknown)."""

    def router_parameters(self, task: str, model: str) -> int: ...

    def family(self, task: str, prefix: str) -> list[tuple[str, int, list[float]]]:
        """Every model of ``task`` whose name starts with ``prefix``: (name, router
        parameters, per-seed accuracies)."""

    def levels(self, protocol: str) -> dict[float, list[float]]:
        """Depolarizing level -> per-seed accuracy of the Two Moons quantum router."""

    def epochs_to(self, task: str, model: str, threshold: float) -> list[int | None]:
        """Per seed, the first epoch (1-based) whose validation accuracy reaches
        ``threshold``; ``None`` when training never did."""


def interval(values: list[float]) -> dict[str, Any]:
    """Mean, sample std and the 95% t-interval of the mean."""
    summary = summarize(values)
    n, mean, std = len(summary["per_seed"]), summary["mean"], summary["std"]
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else float("inf")
    return {**summary, "low": mean - half, "high": mean + half, "n": n}


QUICK_NOTE = "quick run: indicative only"


def accuracy_interval(values: list[float], test_samples: int | None = None) -> dict[str, Any]:
    """The 95% interval of a mean held-out accuracy over seeds, inside [0, 1].

    The t-interval of the mean (:func:`interval`) is cut to [0, 1] (the mean accuracy lies
    there, so the cut loses no coverage) and, given each seed's ``test_samples``, widened to
    the Wilson interval of the correct answers pooled over seeds, which stays open where the
    seeds agree exactly. With one seed and no test size it is [0, 1]."""
    ci = interval(values)
    low, high = max(0.0, ci["low"]), min(1.0, ci["high"])
    if test_samples:
        from ..metrics import wilson_interval

        trials = test_samples * ci["n"]
        correct = int(round(sum(ci["per_seed"]) * test_samples))
        wl, wh = wilson_interval(correct, trials)
        low, high = min(low, wl), max(high, wh)
    return {**ci, "low": low, "high": high,
            "method": "t over seeds, cut to [0, 1], widened to the pooled Wilson interval"}


def _pm(ci: dict[str, Any], percent: bool = True) -> str:
    k = 100 if percent else 1
    unit = "%" if percent else ""
    return f"{k * ci['mean']:.1f} ± {k * ci['std']:.1f}{unit}"


def _gap(value: float, ci: dict[str, Any]) -> str:
    if ci["low"] <= value <= ci["high"]:
        return "inside the interval"
    side, edge = ("above", ci["high"]) if value > ci["high"] else ("below", ci["low"])
    gap = 100 * abs(value - edge)
    by = f"{gap:.1f} points" if gap >= 0.05 else "less than 0.05 points"
    return (f"the paper's {100 * value:.2f}% lies {side} the 95% interval "
            f"[{100 * ci['low']:.2f}, {100 * ci['high']:.2f}]%, by {by}")


def eta(accuracy: float, parameters: int) -> float:
    """η = accuracy / ln(1 + P), accuracy as a fraction (this toolkit's convention)."""
    return accuracy / math.log(1 + parameters)


def eta_arithmetic(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which accuracy scale and logarithm give the paper's η from its own accuracies and
    parameter counts. For each (scale, base) the predicted η of every row; for each scale the
    base each row alone would need; and the base- and scale-free ratios."""
    scales = {"fraction": 0.01, "percent": 1.0}
    bases = {"ln": math.e, "log10": 10.0, "log2": 2.0}
    table = {}
    for sname, s in scales.items():
        for bname, b in bases.items():
            table[f"{sname}/{bname}"] = [s * r["accuracy"] / math.log(1 + r["parameters"], b)
                                         for r in rows]
    needed = {}
    for sname, s in scales.items():
        # s·acc / log_b(1+P) = η  <=>  ln b = η · ln(1+P) / (s·acc)
        needed[sname] = [math.exp(r["eta"] * math.log(1 + r["parameters"])
                                  / (s * r["accuracy"])) for r in rows]
    divisor = [r["accuracy"] / r["eta"] for r in rows]  # what log(1 + P) would have to be
    ratios = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            a, b = rows[i], rows[j]
            ratios.append({
                "pair": f"{a['router']}/{b['router']}",
                "paper": a["eta"] / b["eta"],
                "formula": (a["accuracy"] / b["accuracy"]) * math.log(1 + b["parameters"])
                / math.log(1 + a["parameters"])})
    matches = [k for k, pred in table.items()
               if all(abs(p - r["eta"]) <= 0.006 for p, r in zip(pred, rows))]
    order = sorted(range(len(rows)), key=lambda i: rows[i]["parameters"])
    monotone = all(divisor[order[k]] < divisor[order[k + 1]] for k in range(len(order) - 1))
    return {"rows": rows, "predicted": table, "base_needed": needed, "accuracy_over_eta": divisor,
            "ratios": ratios, "matches": matches, "monotone_in_parameters": monotone}


# --------------------------------------------------------------------------- the rule
def judge(claim: Claim, measured: Measured, *, selected: bool = True,
          epochs: int | None = None) -> Verdict:
    """The claim's verdict; ``epochs``: how many epochs the run trained, where it was cut short
    (a quick run), so that a claim no run that short can test is "not run", not a failure."""
    if not selected:
        return Verdict("not run", "—", "not selected (--claims)")
    if epochs is not None and (needs := _epochs_needed(claim.test)) and epochs < needs:
        return Verdict("not run", "—", f"not run (quick): this run trains {epochs} epochs, and "
                                       f"the claim is about epoch {needs}")
    test = claim.test
    task = test.get("task")
    if task is not None and (why := measured.ran(task)):
        return Verdict("not run", "—", why)
    return _RULES[test["kind"]](test, measured)


def _value(test, m: Measured) -> Verdict:
    ci = accuracy_interval(m.accuracies(test["task"], test["model"]),
                           m.test_samples(test["task"]))
    params = m.router_parameters(test["task"], test["model"])
    inside = ci["low"] <= test["value"] <= ci["high"]
    measured = (f"{_pm(ci)} (95% CI {100 * ci['low']:.1f}–{100 * ci['high']:.1f}; {params} "
                f"router params; η {eta(ci['mean'], params):.3f})")
    notes = [] if inside else [_gap(test["value"], ci)]
    if test.get("parameters") not in (None, params):
        notes.append(f"this router has {params} parameters, the paper counts "
                     f"{test['parameters']}")
    return Verdict("reproduced" if inside else "not reproduced", measured, "; ".join(notes),
                   {"accuracy": ci, "router_parameters": params})


def _parameters_to_match(test, m: Measured) -> Verdict:
    target = interval(m.accuracies(test["task"], test["model"]))
    quantum = m.router_parameters(test["task"], test["model"])
    mlps = sorted(m.family(test["task"], "mlp_h"), key=lambda row: row[1])
    if not mlps:
        return Verdict("not run", "—", "no MLP routers were trained on this task")
    matching = [(name, p, float(np.mean(acc))) for name, p, acc in mlps
                if np.mean(acc) >= target["mean"]]
    values = {"quantum_parameters": quantum, "quantum_accuracy": target,
              "mlp": [(name, p, float(np.mean(acc))) for name, p, acc in mlps]}
    if not matching:
        largest = mlps[-1][1]
        enough = largest >= test["factor"] * quantum
        return Verdict("reproduced" if enough else "not run",
                       f"no MLP router up to {largest} params reaches {_pm(target)}",
                       f"the largest MLP tried has {largest / quantum:.1f}× the quantum "
                       f"router's parameters", values)
    name, p, acc = matching[0]
    ratio = p / quantum
    verdict = "reproduced" if ratio >= test["factor"] else "not reproduced"
    return Verdict(verdict, f"{name} ({p} params, {ratio:.1f}×) already reaches "
                            f"{100 * acc:.1f}% ≥ quantum {_pm(target)}",
                   "" if verdict == "reproduced" else
                   f"an MLP router with {ratio:.1f}× (not ≥ {test['factor']}×) the quantum "
                   f"router's {quantum} parameters is as accurate on held-out data", values)


def _levels(test, m: Measured) -> Verdict:
    got = m.levels(test["protocol"])
    rows, inside, worst = [], 0, (0.0, None)
    for level, value in zip(test["levels"], test["values"]):
        if level not in got:
            return Verdict("not run", "—", f"level {level:g} was not measured")
        ci = accuracy_interval(got[level], m.test_samples("moons"))
        rows.append({"level": level, "paper": value, **ci})
        if ci["low"] <= value <= ci["high"]:
            inside += 1
        else:
            gap = min(abs(value - ci["low"]), abs(value - ci["high"]))
            if gap > worst[0]:
                worst = (gap, level)
    measured = " / ".join(f"{100 * r['mean']:.1f}" for r in rows) + "%"
    if inside == len(rows):
        return Verdict("reproduced", measured, "every level inside its 95% interval",
                       {"levels": rows})
    return Verdict("not reproduced", measured,
                   f"{inside} of {len(rows)} levels inside their 95% interval; the largest gap "
                   f"is {100 * worst[0]:.1f} points, at ε = {worst[1]:g}", {"levels": rows})


def _linear_accuracies(m: Measured) -> list[float]:
    return m.accuracies("moons", "linear")


def _advantage_up_to(test, m: Measured) -> Verdict:
    linear = np.asarray(_linear_accuracies(m))
    failures, values = [], {}
    for protocol in ("evaluated", "retrained"):
        got = m.levels(protocol)
        for level in test["levels"]:
            quantum = np.asarray(got[level])
            wins = int((quantum > linear).sum())
            values[f"{protocol} ε={level:g}"] = {"seeds_won": wins, "seeds": len(linear),
                                                  "margin": float((quantum - linear).mean())}
            if wins < len(linear):
                failures.append(f"{protocol}, ε = {level:g}: {wins} of {len(linear)} seeds "
                                f"(mean margin {100 * (quantum - linear).mean():+.1f} points)")
    measured = ("quantum > linear in every seed at every ε ≤ 0.02 (both protocols)"
                if not failures else f"fails at {len(failures)} of {len(values)} "
                                     f"(protocol, level) pairs")
    return Verdict("not reproduced" if failures else "reproduced", measured,
                   "; ".join(failures), values)


def _breakdown(test, m: Measured) -> Verdict:
    linear = float(np.mean(_linear_accuracies(m)))
    crossings, notes = {}, []
    for protocol in ("evaluated", "retrained"):
        got = m.levels(protocol)
        levels = sorted(got)
        means = [float(np.mean(got[lv])) for lv in levels]
        crossings[protocol] = _crossing(levels, means, linear)
        c = crossings[protocol]
        notes.append(f"{protocol}: " + ("never below the linear router up to "
                                        f"ε = {levels[-1]:g}" if c is None else
                                        f"crosses the linear router ({100 * linear:.1f}%) at "
                                        f"ε ≈ {c:.4f}"))
    low, high = test["within"]
    ok = all(c is not None and low <= c <= high for c in crossings.values())
    measured = ", ".join(f"{p}: {'none' if c is None else f'ε ≈ {c:.3f}'}"
                         for p, c in crossings.items())
    return Verdict("reproduced" if ok else "not reproduced", measured,
                   "; ".join(notes) + f" (the paper: around ε = {test['value']:g}, "
                   f"counted as reproduced within [{low:g}, {high:g}])",
                   {"crossing": crossings, "linear_accuracy": linear})


def _crossing(levels: list[float], means: list[float], baseline: float) -> float | None:
    """The first level where the curve drops to ``baseline`` (linear interpolation); 0 when
    it starts there or below."""
    if means[0] <= baseline:
        return levels[0]
    for (l0, m0), (l1, m1) in zip(zip(levels, means), zip(levels[1:], means[1:])):
        if m1 <= baseline:
            return l0 + (m0 - baseline) / (m0 - m1) * (l1 - l0)
    return None


def _eta_arithmetic(test, m: Measured) -> Verdict:
    rows = test["rows"]
    result = eta_arithmetic(rows)
    paper = ", ".join(f"{r['accuracy']}/{r['eta']} = {d:.2f}"
                      for r, d in zip(rows, result["accuracy_over_eta"]))
    if result["matches"]:
        return Verdict("reproduced", f"η = {result['matches'][0]}", "", result)
    ratio_text = "; ".join(f"{r['pair']}: paper {r['paper']:.2f}, formula {r['formula']:.2f}"
                           for r in result["ratios"])
    return Verdict(
        "not reproduced", "no scale or logarithm gives all three η",
        f"accuracy/η must equal log(1 + P), which grows with P; the paper's values give "
        f"{paper} for P = {', '.join(str(r['parameters']) for r in rows)}, not increasing in P, "
        f"so no base and no accuracy scale fits all three. Ratios of η do not depend on the "
        f"base or the scale: {ratio_text}.", result)


def _eta_ratio(test, m: Measured) -> Verdict:
    low, high = test["range"]
    rows, skipped = [], []
    for task, better, worse in test["pairs"]:
        if why := m.ran(task):
            skipped.append(f"{task}: {why}")
            continue
        pb, pw = m.router_parameters(task, better), m.router_parameters(task, worse)
        ratio = [eta(a, pb) / eta(b, pw) for a, b in zip(m.accuracies(task, better),
                                                        m.accuracies(task, worse))]
        rows.append({"pair": f"{task}: {better}/{worse}", **interval(ratio)})
    if not rows:
        return Verdict("not run", "—", "; ".join(skipped))
    outside = [r for r in rows if not low <= r["mean"] <= high]
    measured = ", ".join(f"{r['pair']} {r['mean']:.2f}×" for r in rows)
    notes = ("" if not outside else "outside 1.5–2.5×: " + ", ".join(
        f"{r['pair']} ({r['mean']:.2f} ± {r['std']:.2f})" for r in outside))
    if skipped:
        notes += ("; " if notes else "") + "not run: " + "; ".join(skipped)
    return Verdict("not reproduced" if outside else "reproduced", measured, notes,
                   {"ratios": rows})


def _frontier(test, m: Measured) -> Verdict:
    losses, values, skipped = [], {}, []
    for task in test["tasks"]:
        if why := m.ran(task):
            skipped.append(f"{task}: {why}")
            continue
        quantum = [(p, float(np.mean(a))) for _, p, a in m.family(task, "quantum_")]
        mlp = [(p, float(np.mean(a))) for _, p, a in m.family(task, "mlp_h")]
        values[task] = {"quantum": sorted(quantum), "mlp": sorted(mlp)}
        for budget in sorted({p for p, _ in quantum}):
            best_q = max(a for p, a in quantum if p <= budget)
            within = [a for p, a in mlp if p <= budget]
            if within and max(within) > best_q:
                losses.append(f"{task}, ≤ {budget} params: MLP {100 * max(within):.1f}% > "
                              f"quantum {100 * best_q:.1f}%")
    if not values:
        return Verdict("not run", "—", "; ".join(skipped))
    measured = ("quantum ≥ MLP at every quantum budget" if not losses else
                f"MLP routers more accurate at {len(losses)} parameter budget(s)")
    notes = "; ".join(losses) + ("; not run: " + "; ".join(skipped) if skipped else "")
    return Verdict("not reproduced" if losses else "reproduced", measured, notes, values)


def _epochs_to(test, m: Measured) -> Verdict:
    threshold = test["threshold"]
    q = m.epochs_to(test["task"], "quantum", threshold)
    d = m.epochs_to(test["task"], "deep", threshold)
    inf = float("inf")
    within = sum(e is not None and e <= test["quantum_within"] for e in q)
    faster = sum((a if a is not None else inf) < (b if b is not None else inf)
                 for a, b in zip(q, d))
    show = lambda es: ", ".join("never" if e is None else str(e) for e in es)  # noqa: E731
    measured = f"quantum: {show(q)}; deep: {show(d)} (epochs per seed)"
    ok = within == len(q) and faster == len(q)
    notes = (f"quantum within {test['quantum_within']} epochs in {within} of {len(q)} seeds, "
             f"faster than the deep router in {faster} of {len(q)}")
    return Verdict("reproduced" if ok else "not reproduced", measured, notes,
                   {"quantum": q, "deep": d})


def _ordering(test, m: Measured) -> Verdict:
    task = test["task"]
    a = np.asarray(m.accuracies(task, test["better"]))
    b = np.asarray(m.accuracies(task, test["worse"]))
    wins = int(((a >= b) if test.get("ties") else (a > b)).sum())
    diff = interval(list(a - b))
    measured = (f"{test['better']} {_pm(interval(list(a)))} vs {test['worse']} "
                f"{_pm(interval(list(b)))}")
    ok = wins == len(a)
    notes = (f"holds in {wins} of {len(a)} seeds; difference {100 * diff['mean']:+.1f} ± "
             f"{100 * diff['std']:.1f} points")
    return Verdict("reproduced" if ok else "not reproduced", measured, notes,
                   {"difference": diff, "seeds_won": wins})


def _epochs_needed(test: dict[str, Any]) -> int | None:
    """The training length a claim's test needs to be decided at all."""
    if test["kind"] == "epochs_to":
        return max(test["quantum_within"], test["deep_epochs"])
    return None


_RULES = {"value": _value, "parameters_to_match": _parameters_to_match, "levels": _levels,
          "advantage_up_to": _advantage_up_to, "breakdown": _breakdown,
          "eta_arithmetic": _eta_arithmetic, "eta_ratio": _eta_ratio, "frontier": _frontier,
          "epochs_to": _epochs_to, "ordering": _ordering}
