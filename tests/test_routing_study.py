"""qmoe study routing: the variants' parameter counts, the paired test and Holm's procedure
against hand computations (and the interval's coverage measured), held-out scoring, the
verdicts read from the cells, and one-line errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import stats

from qmoe_qiskit.cli import main
from qmoe_qiskit.data import DataSpec, prepare
from qmoe_qiskit.errors import ConfigError
from qmoe_qiskit.experiments import routing as rs
from qmoe_qiskit.experiments.base import run_experiment
from qmoe_qiskit.experiments.reproduce import SinglePQC, fingerprint
from qmoe_qiskit.metrics import holm, paired_difference
from qmoe_qiskit.models import build_model
from qmoe_qiskit.names import ROUTING_TASKS
from qmoe_qiskit.training import TrainConfig


def _total(model) -> int:
    built = model.build() if isinstance(model, SinglePQC) else build_model(model)
    return sum(p.numel() for p in built.parameters() if p.requires_grad)


@pytest.mark.parametrize("features,classes", [(2, 2), (4, 2), (4, 4)])
def test_the_variants_match_parameters_where_they_say_they_do(features, classes):
    models = {n: rs.variant_model(n, features, classes) for n in rs.VARIANTS}
    totals = {n: _total(m) for n, m in models.items()}
    # the scaling variants keep experts x layers, so the plain mixture's parameters
    assert totals["experts2"] == totals["dense"] == totals["experts8"]
    # re-uploading experts of 2 layers have the angles and the input scales of 4 plain layers
    assert totals["reupload"] == totals["plain_L4"] > totals["dense"]
    # one circuit with at least the plain mixture's parameters, less than one layer more
    assert totals["dense"] <= totals["single_pqc"] < totals["dense"] + features
    # the MLP router is the width closest to the quantum router's parameter count
    quantum = build_model(models["dense"]).parameter_counts()["router"]
    mlp = build_model(models["mlp_router"]).parameter_counts()["router"]
    wider = rs._mlp_width(features, rs.EXPERTS, quantum) + 1
    assert abs(mlp - quantum) <= abs(features * wider + wider + wider * rs.EXPERTS
                                     + rs.EXPERTS - quantum)
    # every mixture variant has the same router circuit
    assert {m.num_qubits for n, m in models.items() if n not in ("single_pqc", "mlp_router")} \
        == {max(features, 3)}
    assert models["coherent"].aggregation == "coherent" and models["top1"].top_k == 1
    assert tuple(rs.TASKS) == ROUTING_TASKS


def test_the_paired_difference_is_the_paired_t_test():
    a = [0.91, 0.88, 0.93, 0.90, 0.87]
    b = [0.85, 0.86, 0.90, 0.84, 0.88]
    d = paired_difference(a, b)
    diff = np.subtract(a, b)
    assert d["mean"] == pytest.approx(diff.mean())
    assert d["std"] == pytest.approx(diff.std(ddof=1))
    assert d["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    half = stats.t.ppf(0.975, 4) * diff.std(ddof=1) / np.sqrt(5)
    assert (d["low"], d["high"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    # every seed the same difference: the exact sign-flip test, 2 / 2^n
    same = paired_difference([0.9] * 5, [0.8] * 5)
    assert same["p"] == pytest.approx(2 / 32) and same["std"] == 0
    assert paired_difference([0.5, 0.6], [0.5, 0.6])["p"] == 1.0
    # the interval stays inside [-1, 1]
    wide = paired_difference([1.0, 0.0], [0.0, 1.0])
    assert -1.0 <= wide["low"] and wide["high"] <= 1.0
    with pytest.raises(ValueError, match="two equal-length samples"):
        paired_difference([0.5, 0.6, 0.7], [0.5, 0.6])


def test_the_paired_interval_covers_at_its_level():
    """Coverage measured: differences drawn around a known mean, 4000 studies of 5 seeds."""
    rng = np.random.default_rng(0)
    truth, hits, rejections = 0.03, 0, 0
    for _ in range(4000):
        b = rng.uniform(0.7, 0.9, 5)
        a = b + truth + rng.normal(0, 0.04, 5)
        d = paired_difference(a, b)
        hits += d["low"] <= truth <= d["high"]
        null = paired_difference(b + rng.normal(0, 0.04, 5), b)
        rejections += null["p"] < 0.05
    assert 0.94 <= hits / 4000 <= 0.96
    assert 0.04 <= rejections / 4000 <= 0.06  # the test's size under no difference


def test_holm_against_a_hand_computation():
    # sorted: 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2: stop there
    assert holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]
    assert holm([0.2, 0.01]) == [False, True]
    assert holm([0.04, 0.02]) == [True, True]  # 0.02 <= 0.05/2, then 0.04 <= 0.05
    assert holm([0.03, 0.026]) == [False, False]  # 0.026 > 0.05/2: nothing rejected
    assert holm([]) == []


def test_holm_bounds_the_family_wise_error():
    rng = np.random.default_rng(1)
    false = sum(any(holm(list(rng.uniform(size=10)))) for _ in range(4000))
    assert false / 4000 <= 0.06


TINY = dict(seeds=(0, 1), train=TrainConfig(epochs=1, lr=0.02, patience=None), samples=60,
            quick=True)


def test_a_small_study_scores_held_out_and_judges_from_its_cells(tmp_path):
    config = rs.RoutingStudy(tasks=("moons",), variants=("dense", "top1", "single_pqc"), **TINY)
    outcome, folder = run_experiment(config, tmp_path / "run", progress=False)
    results = json.loads((folder / "results.json").read_text())
    variants = results["tasks"]["moons"]["variants"]
    assert list(variants) == ["dense", "top1", "single_pqc"]
    for name, v in variants.items():
        for record in v["per_seed"]:
            data = prepare(DataSpec.from_dict(record["data"]))
            assert record["test"]["split"] == fingerprint(data.x_test)
            assert record["test"]["split"] not in (fingerprint(data.x_train),
                                                   fingerprint(data.x_val))
        acc = v["test_accuracy"]
        assert 0 <= acc["low"] <= acc["mean"] <= acc["high"] <= 1
    # the contrasts whose two variants ran, each the paired difference of the seeds' scores
    contrasts = {(c["variant"], c["against"]): c for c in results["contrasts"]}
    assert set(contrasts) == {("top1", "dense"), ("dense", "single_pqc")}
    for (a, b), c in contrasts.items():
        per = [x["test"]["accuracy"] for x in variants[a]["per_seed"]]
        base = [x["test"]["accuracy"] for x in variants[b]["per_seed"]]
        assert c["difference"]["per_seed"] == pytest.approx(np.subtract(per, base).tolist())
        assert c["verdict"] in ("helps", "hurts", "no detectable difference")
        assert c["significant"] == (c["verdict"] != "no detectable difference")
    assert variants["single_pqc"]["load_entropy"] is None  # no router, no load
    assert variants["dense"]["load_entropy"] is not None
    assert results["not_run"] == {}  # tasks were given: none is reported "not run"
    for f in ("report.md", "feature_effects.png", "variants.png"):
        assert (folder / f).stat().st_size > 0
    assert not (folder / "expert_scaling.png").exists()  # one expert count only
    assert "Holm" in (folder / "report.md").read_text()


def test_without_data_dir_the_mnist_tasks_are_reported_not_run():
    config = rs.RoutingStudy(**TINY)
    assert config.selected_tasks() == ["moons", "circles", "digits38"]
    assert len(config.plan()) == 3 * len(rs.VARIANTS) * 2


@pytest.mark.parametrize("fields,message", [
    (dict(tasks=("spirals",)), "unknown routing-study tasks ['spirals']; valid tasks: "),
    (dict(variants=("top3",)), "unknown routing-study variants ['top3']; valid variants: "),
    (dict(tasks=()), "unknown routing-study tasks (none given)"),
    (dict(tasks=("mnist38",)), "tasks ['mnist38'] need the MNIST files: pass --data-dir"),
    (dict(seeds=(0,)), "needs from 2 to"),
    (dict(samples=10), "samples must be an integer >= 50, got 10"),
])
def test_bad_study_configs_are_refused_in_one_line(fields, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        rs.RoutingStudy(**fields)
    with pytest.raises(ConfigError, match="unknown routing variant 'x'"):
        rs.variant_model("x", 2, 2)


def test_the_cli_refuses_a_data_dir_without_mnist(tmp_path, capsys):
    assert main(["study", "routing", "--quick", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qmoe study: error: --data-dir") and "holds no mnist/" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_the_cli_dry_run_plans_every_variant(capsys):
    assert main(["study", "routing", "--quick", "--tasks", "moons", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(rs.VARIANTS) * 2} cells" in out and "nothing was run" in out


def test_contrasts_are_marked_significant_nominal_or_not():
    def row(significant, p):
        return {"significant": significant, "difference": {"p": p}}

    assert rs._mark(row(True, 0.001)) == "*"
    assert rs._mark(row(False, 0.01)) == "†"  # below 0.05 only before Holm's correction
    assert rs._mark(row(False, 0.2)) == ""
