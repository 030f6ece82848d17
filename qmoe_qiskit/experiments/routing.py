"""``qmoe study routing``: which routing feature of a quantum mixture of experts helps, where,
and by how much.

Every variant is a quantum mixture (a ``paper``-ansatz router on ``max(d, 3)`` qubits, four
``paper``-circuit experts of two layers) changed in one way, or a baseline at matched
parameters; see :data:`VARIANTS`. Every variant is trained on every seed's own split of
every task (a paired design: the variants of a seed share its data), scored on the held-out
test split, and compared with the variant it changes (:data:`CONTRASTS`) by a paired t-test
over seeds; the verdicts control the family-wise error over all contrasts of the run with
Holm's procedure at :data:`ALPHA`.

A cell is one variant trained on one seed of one task (reproduce's
:class:`~.reproduce.ModelCell`): it runs on any executor and is kept as it finishes, so a
killed run resumes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..data import DataSpec, idx_available, idx_files, idx_folder
from ..errors import ConfigError, check_seed, check_seed_count, choices
from ..metrics import holm, paired_difference, summarize
from ..models import ModelSpec
from ..names import ROUTING_DEFAULTS
from ..plots import forest_plot, interval_panels, scaling_curves
from ..training import TrainConfig
from .base import Outcome
from .claims import accuracy_interval
from .reproduce import ModelCell, ModelScore, SinglePQC, estimate_cells

__all__ = ["RoutingStudy", "TASKS", "VARIANTS", "CONTRASTS", "QUICK", "ALPHA", "variant_model"]

ALPHA = 0.05  # family-wise error rate of the study's verdicts (Holm over every contrast)
EXPERTS = 4  # the plain mixture's experts
EXPERT_LAYERS = 2  # and their layers; the scaling variants keep experts x layers fixed
ROUTER_LAYERS = 3
BALANCE = 0.1  # the load-balancing loss's weight where a variant balances

# task -> (dataset, classes, PCA features or None, needs the MNIST files)
TASKS: dict[str, tuple[str, tuple[int, ...] | None, int | None, bool]] = {
    "moons": ("moons", None, None, False),
    "circles": ("circles", None, None, False),
    "digits38": ("digits", (3, 8), 4, False),
    "mnist38": ("mnist", (3, 8), 4, True),
    "mnist4": ("mnist", (0, 1, 2, 3), 4, True),
}

VARIANTS: dict[str, str] = {
    "dense": "plain QMoE: quantum router, 4 quantum experts, dense gates",
    "top1": "top-1 sparse gates",
    "top2": "top-2 sparse gates",
    "balance": f"dense, with the load-balancing loss (weight {BALANCE:g})",
    "top1_balance": f"top-1, with the load-balancing loss (weight {BALANCE:g})",
    "reupload": "re-uploading experts (2 layers, learnable input scales)",
    "plain_L4": "plain experts of 4 layers (the re-uploading experts' parameter count)",
    "coherent": "coherent aggregation (router and experts in one circuit)",
    "plus": "re-uploading experts, top-1 and load balancing together",
    "experts2": "2 experts of 4 layers (the plain mixture's parameters)",
    "experts8": "8 experts of 1 layer (the plain mixture's parameters)",
    "single_pqc": "one PQC of the plain mixture's parameter count, no routing",
    "mlp_router": "MLP router of the quantum router's parameter count, 4 quantum experts",
}

# (variant, the variant it changes, what the difference measures)
CONTRASTS: tuple[tuple[str, str, str], ...] = (
    ("top1", "dense", "top-1 vs dense gates"),
    ("top2", "dense", "top-2 vs dense gates"),
    ("balance", "dense", "load balancing (dense gates)"),
    ("top1_balance", "top1", "load balancing (top-1 gates)"),
    ("reupload", "dense", "re-uploading vs plain experts (same layers)"),
    ("reupload", "plain_L4", "re-uploading vs plain experts (same parameters)"),
    ("coherent", "dense", "coherent vs classical aggregation"),
    ("plus", "dense", "re-uploading + top-1 + balancing vs plain"),
    ("dense", "single_pqc", "QMoE vs a single PQC (matched parameters)"),
    ("dense", "mlp_router", "quantum vs MLP router (matched parameters)"),
    ("experts8", "experts2", "8 vs 2 experts (fixed parameters)"),
)

SCALING = {"experts2": 2, "dense": 4, "experts8": 8}


def router_qubits(features: int) -> int:
    """The router's qubits: one per feature, and at least 3 (8 basis states, one per expert
    of the largest mixture), so that every variant of a task has the same router."""
    return max(features, 3)


def _mlp_width(features: int, experts: int, target: int) -> int:
    """The MLP router hidden width whose parameter count is closest to ``target``."""
    count = lambda h: features * h + h + h * experts + experts  # noqa: E731
    return min(range(1, 257), key=lambda h: (abs(count(h) - target), h))


def variant_model(name: str, features: int, classes: int) -> ModelSpec | SinglePQC:
    """The model of variant ``name`` for data of ``features`` features and ``classes``
    classes (see :data:`VARIANTS`)."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown routing variant {name!r}; valid variants: "
                          f"{choices(VARIANTS)}")
    qubits = router_qubits(features)
    plain = ModelSpec(num_features=features, num_classes=classes, num_experts=EXPERTS,
                      router="quantum", ansatz="paper", num_qubits=qubits,
                      num_layers=ROUTER_LAYERS, expert="quantum", expert_layers=EXPERT_LAYERS)
    fixed = EXPERTS * EXPERT_LAYERS  # experts x layers, kept by the scaling variants
    change = {
        "dense": {}, "top1": dict(top_k=1), "top2": dict(top_k=2),
        "balance": dict(balance_weight=BALANCE),
        "top1_balance": dict(top_k=1, balance_weight=BALANCE),
        "reupload": dict(expert="reupload"),
        "plain_L4": dict(expert_layers=2 * EXPERT_LAYERS),
        "coherent": dict(aggregation="coherent"),
        "plus": dict(expert="reupload", top_k=1, balance_weight=BALANCE),
        "experts2": dict(num_experts=2, expert_layers=fixed // 2),
        "experts8": dict(num_experts=8, expert_layers=fixed // 8),
    }
    if name in change:
        return dataclasses.replace(plain, **change[name])
    total = qubits * ROUTER_LAYERS + EXPERTS * EXPERT_LAYERS * features  # the plain mixture's
    if name == "single_pqc":  # a paper circuit has one angle per qubit and layer
        return SinglePQC(features, classes, math.ceil(total / features))
    return dataclasses.replace(plain, router="mlp", num_qubits=None, router_hidden=_mlp_width(
        features, EXPERTS, qubits * ROUTER_LAYERS))


@dataclass(frozen=True)
class RoutingStudy:
    """Every selected variant trained on every seed's split of every selected task."""

    command: ClassVar[str] = "routing"
    tasks: tuple[str, ...] | None = None  # None: every task whose data is here
    variants: tuple[str, ...] | None = None  # None: every variant
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    train: TrainConfig = TrainConfig(**ROUTING_DEFAULTS)
    samples: int = 600  # Two Moons and circles (60 / 20 / 20 split)
    mnist_samples: int = 700  # each MNIST task (500 / 100 / 100 split)
    data_dir: str | None = None  # holds mnist/ with its four IDX files
    quick: bool = False

    def __post_init__(self):
        check_seed_count(self.seeds, "the routing study")
        for seed in self.seeds:
            check_seed(seed)
        for what, given, valid in (("tasks", self.tasks, TASKS),
                                   ("variants", self.variants, VARIANTS)):
            if given is None:
                continue
            unknown = [g for g in given if g not in valid]
            if unknown or not given:
                raise ConfigError(f"unknown routing-study {what} {unknown or '(none given)'}; "
                                  f"valid {what}: {choices(valid)}")
        for what, value in (("samples", self.samples), ("mnist_samples", self.mnist_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 50:
                raise ConfigError(f"{what} must be an integer >= 50, got {value!r}")
        if self.data_dir is not None and not self.real():
            raise ConfigError(f"--data-dir {self.data_dir} holds no mnist/ folder with the four "
                              f"MNIST IDX files (train-images-idx3-ubyte[.gz], ...); give the "
                              f"folder that holds it, or leave --data-dir out to run "
                              f"{', '.join(self._local())}")
        need = [t for t in self.tasks or () if TASKS[t][3]]
        if need and self.data_dir is None:
            raise ConfigError(f"tasks {need} need the MNIST files: pass --data-dir (the folder "
                              f"holding mnist/), or choose among {', '.join(self._local())}")

    @staticmethod
    def _local() -> list[str]:
        return [t for t, spec in TASKS.items() if not spec[3]]

    def real(self) -> bool:
        """Whether --data-dir holds the MNIST files (as every command's --data-dir reads it)."""
        return self.data_dir is not None and idx_available(idx_folder(self.data_dir, "mnist"),
                                                           "mnist")

    def selected_tasks(self) -> list[str]:
        if self.tasks is not None:
            return list(self.tasks)
        return [t for t, spec in TASKS.items() if not spec[3] or self.real()]

    def selected_variants(self) -> list[str]:
        return list(self.variants) if self.variants is not None else list(VARIANTS)

    def data(self, task: str) -> DataSpec:
        """The data of ``task`` (seed 0; each cell sets its own)."""
        dataset, classes, features, mnist = TASKS[task]
        if mnist:
            return DataSpec(dataset=dataset, n_samples=self.mnist_samples, classes=classes,
                            n_features=features, val_fraction=1 / 7, test_fraction=1 / 7,
                            data_dir=self.data_dir)
        if dataset == "digits":  # every image of the two classes (about 360)
            return DataSpec(dataset=dataset, n_samples=2000, classes=classes,
                            n_features=features)
        return DataSpec(dataset=dataset, n_samples=self.samples, noise=0.1)

    def inputs(self) -> tuple[Path, ...]:
        """The IDX files read (a kept cell computed from other contents is not reused)."""
        if not any(TASKS[t][3] for t in self.selected_tasks()):
            return ()
        return idx_files(self.data_dir, "mnist")

    def protected(self) -> tuple[Path, ...]:
        """What --out must never be, hold or lie inside: the data folder."""
        return (Path(self.data_dir),) if self.data_dir else ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def plan(self) -> list[ModelCell]:
        cells = []
        for task in self.selected_tasks():
            data = self.data(task)
            features = data.n_features or 2
            classes = len(data.classes) if data.classes else 2
            for name in self.selected_variants():
                model = variant_model(name, features, classes)
                cells += [ModelCell(task, name, data, model, self.train, seed)
                          for seed in self.seeds]
        return cells

    def estimate(self, cells: list[ModelCell]) -> tuple[float, str]:
        """Seconds the cells will take at most (every epoch run): see
        :func:`~.reproduce.estimate_cells`."""
        return estimate_cells(cells, self.seeds[0], self.train)

    def aggregate(self, cells, results: list[ModelScore], seconds: float) -> Outcome:
        runs: dict[str, dict[str, list[ModelScore]]] = {}
        for r in results:
            runs.setdefault(r.task, {}).setdefault(r.name, []).append(r)
        tasks = {}
        for task, variants in runs.items():
            for scores in variants.values():
                scores.sort(key=lambda r: r.seed)
            first = next(iter(variants.values()))[0]
            tasks[task] = {
                "data": DataSpec.from_dict(first.data).label,
                "dataset": first.data["dataset"],
                "split_sizes": first.split_sizes,
                "variants": {name: _variant_row(name, scores)
                             for name, scores in variants.items()},
            }
        contrasts = _contrasts(runs)
        out = {"command": self.command, "quick": self.quick, "seeds": list(self.seeds),
               "scored_on": "held-out test split of each seed (never used for training or "
                            "early stopping)",
               "alpha": ALPHA,
               "test": "paired t-test over seeds (two-sided), Holm's procedure over every "
                       "contrast of the run at family-wise level alpha",
               "not_run": {t: "it needs the MNIST files: pass --data-dir" for t in TASKS
                           if t not in runs and TASKS[t][3] and self.tasks is None},
               "tasks": tasks, "contrasts": contrasts,
               "scaling": _scaling(tasks),
               "cell_seconds": float(sum(r.seconds for r in results)),
               "wall_seconds": seconds}
        return Outcome(results=out, report=_report(out, self), summary=_summary(out),
                       figures=_figures(out, self))


QUICK = dict(seeds=(0, 1), train=TrainConfig(epochs=3, lr=0.02, patience=None), samples=200,
             mnist_samples=210, quick=True)


def _variant_row(name: str, scores: list[ModelScore]) -> dict[str, Any]:
    accuracies = [s.test["accuracy"] for s in scores]
    loads = [s.load for s in scores if s.load is not None]
    return {
        "what": VARIANTS[name],
        "parameters": scores[0].parameters,
        "test_accuracy": accuracy_interval(accuracies, scores[0].split_sizes["test"]),
        "f1": summarize([s.test["f1"] for s in scores]),
        "load_entropy": summarize([ld["entropy"] for ld in loads]) if loads else None,
        "dead_fraction": summarize([ld["dead_fraction"] for ld in loads]) if loads else None,
        "train_seconds": summarize([s.seconds for s in scores]),
        "epochs_run": [len(s.val_accuracy) for s in scores],
        "per_seed": [{"seed": s.seed, "data": s.data, "test": s.test, "load": s.load}
                     for s in scores],
    }


def _contrasts(runs: dict[str, dict[str, list[ModelScore]]]) -> list[dict[str, Any]]:
    """Every contrast whose two variants ran, per task, with its paired difference and the
    Holm verdict over all of them."""
    rows = []
    for task, variants in runs.items():
        for a, b, what in CONTRASTS:
            if a not in variants or b not in variants:
                continue
            seeds = sorted({s.seed for s in variants[a]} & {s.seed for s in variants[b]})
            if len(seeds) < 2:
                continue
            acc = {v: {s.seed: s.test["accuracy"] for s in variants[v]} for v in (a, b)}
            diff = paired_difference([acc[a][s] for s in seeds], [acc[b][s] for s in seeds])
            rows.append({"task": task, "variant": a, "against": b, "what": what,
                         "difference": diff})
    for row, rejected in zip(rows, holm([r["difference"]["p"] for r in rows], alpha=ALPHA)):
        d = row["difference"]
        row["significant"] = rejected
        row["verdict"] = ("no detectable difference" if not rejected else
                          "helps" if d["mean"] > 0 else "hurts")
    return rows


def _scaling(tasks: dict[str, Any]) -> dict[str, Any]:
    """Per task, test accuracy against the number of experts at fixed parameters."""
    out = {}
    for task, t in tasks.items():
        points = [(experts, t["variants"][name]["test_accuracy"])
                  for name, experts in SCALING.items() if name in t["variants"]]
        if len(points) >= 2:
            out[task] = [{"experts": e, "mean": ci["mean"], "std": ci["std"],
                          "low": ci["low"], "high": ci["high"]} for e, ci in points]
    return out


def _points(ci: dict[str, Any]) -> str:
    return f"{100 * ci['mean']:+.1f} [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"


def _nominal(row: dict[str, Any], alpha: float = ALPHA) -> bool:
    """Below alpha before the correction for the family, but not after it."""
    return not row["significant"] and row["difference"]["p"] < alpha


def _mark(row: dict[str, Any]) -> str:
    return "*" if row["significant"] else "†" if _nominal(row) else ""


def _summary(out: dict[str, Any]) -> str:
    tasks = list(out["tasks"])
    lines = [f"{'contrast (difference in accuracy points, 95% CI)':<50} " +
             " ".join(f"{t:>22}" for t in tasks)]
    by = {(r["task"], r["what"]): r for r in out["contrasts"]}
    for _, _, what in CONTRASTS:
        if not any((t, what) in by for t in tasks):
            continue
        cells = []
        for t in tasks:
            r = by.get((t, what))
            cells.append(f"{_points(r['difference']) + _mark(r):>22}"
                         if r else f"{'—':>22}")
        lines.append(f"{what:<50} " + " ".join(cells))
    lines.append(f"* significant at family-wise level {out['alpha']:g} (Holm over "
                 f"{len(out['contrasts'])} paired t-tests); † p < {out['alpha']:g} before the "
                 f"correction only" + (" — quick run: indicative only" if out["quick"] else ""))
    return "\n".join(lines)


def _verdict_text(rows: list[dict[str, Any]]) -> str:
    """One sentence per contrast: where it helps, hurts or shows nothing, by how much."""
    helped = [r for r in rows if r["verdict"] == "helps"]
    hurt = [r for r in rows if r["verdict"] == "hurts"]
    parts = []
    for label, group in (("helps", helped), ("hurts", hurt)):
        if group:
            parts.append(f"{label} on " + ", ".join(
                f"{r['task']} ({_points(r['difference'])} points)" for r in group))
    nominal = [r for r in rows if _nominal(r)]
    if nominal:
        parts.append("p < 0.05 before the correction only on " + ", ".join(
            f"{r['task']} ({100 * r['difference']['mean']:+.1f})" for r in nominal))
    quiet = [r["task"] for r in rows if r["verdict"] == "no detectable difference"
             and not _nominal(r)]
    if quiet:
        parts.append("no detectable difference on " + ", ".join(quiet))
    return "; ".join(parts)


def _report(out: dict[str, Any], config: RoutingStudy) -> str:
    t = config.train
    lines = [
        "# Routing study" + (" (quick run: indicative only)" if out["quick"] else ""),
        "",
        "Which routing feature of a quantum mixture of experts helps, where, and by how much. "
        f"Every variant changes the plain mixture (a paper-ansatz router of {ROUTER_LAYERS} "
        f"layers on max(features, 3) qubits, {EXPERTS} paper-circuit experts of "
        f"{EXPERT_LAYERS} layers, dense gates) in one way, or is a baseline at matched "
        "parameters.",
        "",
        f"Protocol: seeds {', '.join(map(str, out['seeds']))}, each with its own stratified "
        "split, shared by every variant of the seed (a paired design). Adam lr "
        f"{t.lr}, batch {t.batch_size}, up to {t.epochs} epochs" +
        (f", early stopping on validation loss (patience {t.patience}), best weights kept"
         if t.patience else "") + ". Scores are on the **held-out test split**. Accuracy: "
        "mean ± std over seeds, with the 95% interval of the mean (t over seeds, cut to "
        "[0, 1], widened to the pooled Wilson interval).",
        "",
        f"Verdicts: {out['test']} (α = {out['alpha']:g}; {len(out['contrasts'])} contrasts). "
        "A difference is in accuracy points with the 95% t-interval of the mean paired "
        "difference (cut to [−100, 100]). 'No detectable difference' is not evidence of no "
        "effect: with few seeds only large effects can be seen.",
        "",
    ]
    if out["not_run"]:
        lines += ["Not run: " + "; ".join(f"{k} ({v})" for k, v in out["not_run"].items())
                  + ".", ""]
    lines += ["## Which feature helps", "",
              "| contrast | " + " | ".join(out["tasks"]) + " | verdict |",
              "|---|" + "---|" * len(out["tasks"]) + "---|"]
    by: dict[str, list] = {}
    for r in out["contrasts"]:
        by.setdefault(r["what"], []).append(r)
    for what, rows in by.items():
        cell = {r["task"]: f"{_points(r['difference'])} {_mark(r)}".rstrip() for r in rows}
        lines.append(f"| {what} | " + " | ".join(cell.get(task, "—") for task in out["tasks"])
                     + f" | {_verdict_text(rows)} |")
    lines += ["", "\\* significant after Holm's correction; † p < 0.05 before it only (by "
              "itself, one such result in 20 is expected by chance where nothing differs).", ""]
    for task, td in out["tasks"].items():
        sizes = td["split_sizes"]
        lines += [f"## {task}: {td['data']}", "",
                  f"Split train/val/test = {sizes['train']}/{sizes['val']}/{sizes['test']}.", "",
                  "| variant | what | router P | total P | test accuracy | 95% interval | "
                  "load entropy | dead | train s/seed |",
                  "|---|---|---:|---:|---|---|---|---:|---:|"]
        for name, v in td["variants"].items():
            acc, ent, dead = v["test_accuracy"], v["load_entropy"], v["dead_fraction"]
            lines.append(
                f"| {name} | {v['what']} | {v['parameters']['router']} | "
                f"{v['parameters']['total']} | {100 * acc['mean']:.1f} ± {100 * acc['std']:.1f}% | "
                f"[{100 * acc['low']:.1f}, {100 * acc['high']:.1f}]% | "
                + (f"{ent['mean']:.2f} ± {ent['std']:.2f} | {dead['mean']:.2f} | " if ent else
                   "— | — | ") + f"{v['train_seconds']['mean']:.1f} |")
        lines.append("")
    if out["scaling"]:
        lines += ["## Expert count at fixed parameters", "",
                  "2, 4 and 8 experts with experts × layers fixed (2 × 4, 4 × 2, 8 × 1): the "
                  "total parameter count is the same. Std over seeds is how much the result "
                  "depends on the initialisation and split.", "",
                  "| task | " + " | ".join(f"{p['experts']} experts" for p in
                                            next(iter(out["scaling"].values()))) + " |",
                  "|---|" + "---|" * len(next(iter(out["scaling"].values())))]
        for task, points in out["scaling"].items():
            lines.append(f"| {task} | " + " | ".join(
                f"{100 * p['mean']:.1f} ± {100 * p['std']:.1f}%" for p in points) + " |")
        lines.append("")
    lines += [f"Wall time: {out['wall_seconds']:.0f} s ({out['cell_seconds']:.0f} s of training "
              "summed over cells).", "",
              "![feature effects](feature_effects.png)", "",
              "![accuracy of every variant](variants.png)", ""]
    if out["scaling"]:
        lines += ["![expert scaling](expert_scaling.png)", ""]
    return "\n".join(lines)


def _figures(out: dict[str, Any], config: RoutingStudy) -> dict[str, Any]:
    quick = " — quick run, indicative only" if out["quick"] else ""
    seeds = len(out["seeds"])
    sources = "; ".join(f"{task}: {td['data']}" for task, td in out["tasks"].items())
    figures = {}
    by: dict[str, list] = {}
    for r in out["contrasts"]:
        by.setdefault(r["what"], []).append(r)
    if by:
        figures["feature_effects.png"] = forest_plot(
            [(what, [(r["task"], 100 * r["difference"]["mean"], 100 * r["difference"]["low"],
                      100 * r["difference"]["high"], r["significant"]) for r in rows])
             for what, rows in by.items()],
            xlabel="difference in held-out test accuracy (points), 95% t-interval over seeds",
            limits=(-100, 100),
            title=f"Routing features: paired difference against the variant each changes, "
                  f"{seeds} seeds, held-out test splits; filled: significant (Holm, α = "
                  f"{out['alpha']:g}){quick}. Data: {sources}")
    figures["variants.png"] = interval_panels(
        [(f"{task}: {td['data']}",
          [(name, 100 * v["test_accuracy"]["mean"], 100 * v["test_accuracy"]["low"],
            100 * v["test_accuracy"]["high"], None) for name, v in td["variants"].items()])
         for task, td in out["tasks"].items()],
        xlabel="test accuracy (%), mean and 95% interval over seeds",
        reference=None, limits=(0, 100),
        title=f"Every routing variant on every task ({seeds} seeds, held-out test splits)"
              f"{quick}")
    if out["scaling"]:
        figures["expert_scaling.png"] = scaling_curves(
            {f"{task}: {out['tasks'][task]['data']}": points
             for task, points in out["scaling"].items()},
            title=f"Test accuracy against the number of experts at fixed total parameters "
                  f"(experts × layers = {EXPERTS * EXPERT_LAYERS}), mean and 95% interval "
                  f"over {seeds} seeds{quick}")
    return figures
