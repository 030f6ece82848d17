"""qmoe reproduce: the claims as data, the verdict rule, held-out scoring, resuming."""

from __future__ import annotations

import dataclasses
import json
import math
import numpy as np
import re

import pytest
from test_data import _write_idx_set  # the data tests' IDX writer (tests/ is on sys.path)

from qmoe_qiskit.cli import main
from qmoe_qiskit.data import DataSpec, prepare
from qmoe_qiskit.errors import ConfigError
from qmoe_qiskit.experiments import reproduce as rp
from qmoe_qiskit.experiments.base import run_experiment
from qmoe_qiskit.experiments.claims import (
    Claim,
    eta_arithmetic,
    interval,
    judge,
    load_claims,
)
from qmoe_qiskit.training import TrainConfig

VERDICTS = ("reproduced", "not reproduced", "not run")
TINY = dict(seeds=(0, 1), train=TrainConfig(epochs=1, patience=None), layers=(1,), qubits=(2,),
            widths=(2,), quick=True)


def without_timings(results: dict) -> dict:
    """A reproduce run's results without what depends on the machine's speed."""
    results = json.loads(json.dumps(results))
    results.pop("wall_seconds"), results.pop("cell_seconds")
    for models in results["models"].values():
        for model in models.values():
            for record in model["per_seed"]:
                record.pop("seconds")
    return results


def check_held_out(results: dict) -> int:
    """Every score in ``results`` was computed on its seed's held-out test split: the
    fingerprint of the rows scored equals that of the test split rebuilt from the recorded data
    spec, and differs from the training and validation splits'. Returns the scores checked."""
    checked = 0
    for task, models in results["models"].items():
        for name, model in models.items():
            for record in model["per_seed"]:
                data = prepare(DataSpec.from_dict(record["data"]))
                test, train, val = (rp.fingerprint(x) for x in
                                    (data.x_test, data.x_train, data.x_val))
                for score in [record["test"], *record.get("noisy", {}).values()]:
                    where = f"{task}/{name} seed {record['seed']}"
                    assert score["split"] not in (train, val), f"{where} scored a fitted split"
                    assert score["split"] == test, f"{where} scored rows not of its test split"
                    assert score["rows"] == len(data.y_test)
                    checked += 1
    return checked


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "run"
    outcome, path = run_experiment(rp.ReproduceConfig(**TINY), out, progress=False)
    return outcome, path


# --------------------------------------------------------------------------- the claims as data
def test_claims_are_package_data_with_source_and_wording():
    claims = load_claims()
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids))
    assert {c.group for c in claims} == set(range(1, 9))
    for c in claims:
        assert c.paper in ("hybrid", "qmoe") and c.source.startswith("arXiv ")
        assert c.claim and c.paper_value and c.test["kind"]
    by_id = {c.id: c for c in claims}
    assert by_id["2a"].test["values"] == [0.94, 0.92, 0.89, 0.82, 0.73]
    assert by_id["3a"].test["value"] == 0.965 and by_id["3b"].test["value"] == 0.958


def test_every_claim_appears_in_the_report_with_a_verdict(tiny_run):
    outcome, path = tiny_run
    results = json.loads((path / "results.json").read_text())
    report = (path / "report.md").read_text()
    listed = {c["id"]: c for c in results["claims"]}
    assert set(listed) == {c.id for c in load_claims()}
    for claim in load_claims():
        row = re.search(rf"^\| {re.escape(claim.id)} \|.*\| \*\*(.+?)\*\* \|", report, re.M)
        assert row, f"claim {claim.id} has no row in the report"
        # the tiny run is quick: verdicts are marked indicative, or "not run (quick)"
        shown, verdict = row.group(1), listed[claim.id]["verdict"]
        assert verdict in VERDICTS
        assert shown in (f"{verdict} (indicative)", "not run (quick)", "not run"), shown
        assert shown.startswith(verdict) and listed[claim.id]["indicative"] == (
            verdict != "not run")
        assert set(listed[claim.id]) >= {"id", "source", "claim", "measured", "verdict", "notes"}
    fashion = listed["7"]
    assert fashion["verdict"] == "not run" and "data not available" in fashion["notes"]
    assert "stand-in" in report and "not MNIST" in report
    for figure in ("claims_accuracy.png", "table2_noise.png", "parameter_efficiency.png",
                   "training_dynamics.png", "expert_load.png"):
        assert (path / figure).stat().st_size > 0 and f"]({figure})" in report
    assert "## The η question, worked out" in report


def test_nothing_is_scored_on_training_data(tiny_run):
    _, path = tiny_run
    results = json.loads((path / "results.json").read_text())
    assert check_held_out(results) >= 40


def test_the_held_out_check_fails_when_a_cell_scores_the_training_split(monkeypatch, tmp_path):
    real = rp.prepare

    def leaky(spec, *args):  # a cell that scores the data it was trained on
        data = real(spec, *args)
        return dataclasses.replace(data, x_test=data.x_train, y_test=data.y_train)

    monkeypatch.setattr(rp, "prepare", leaky)
    _, path = run_experiment(rp.ReproduceConfig(claims=(3,), **TINY), tmp_path / "run",
                             progress=False)
    results = json.loads((path / "results.json").read_text())
    with pytest.raises(AssertionError, match="scored a fitted split"):
        check_held_out(results)


# --------------------------------------------------------------------------- the verdict rule
class Fake:
    """Measurements made up for the rule: accuracies by (task, model)."""

    def __init__(self, accuracies, parameters=None, levels=None, epochs=None, missing=()):
        self.acc, self.params = accuracies, parameters or {}
        self._levels, self._epochs, self.missing = levels or {}, epochs or {}, missing

    def ran(self, task):
        return "data not available" if task in self.missing else None

    def accuracies(self, task, model):
        return self.acc[(task, model)]

    def test_samples(self, task):
        return None  # unknown: the t-interval cut to [0, 1] alone

    def router_parameters(self, task, model):
        return self.params.get((task, model), 10)

    def family(self, task, prefix):
        return [(m, self.router_parameters(t, m), a) for (t, m), a in self.acc.items()
                if t == task and m.startswith(prefix)]

    def levels(self, protocol):
        return self._levels[protocol]

    def epochs_to(self, task, model, threshold):
        return self._epochs[model]


def _claim(**test):
    return Claim("x", "hybrid", "arXiv test", "a claim", "p", test)


def test_value_claims_are_judged_by_the_95_percent_interval():
    m = Fake({("moons", "quantum"): [0.90, 0.92, 0.94, 0.91, 0.93]})
    ci = interval(m.accuracies("moons", "quantum"))
    assert ci["low"] < 0.92 < ci["high"]
    assert math.isclose(ci["high"] - ci["mean"], 2.776445 * ci["std"] / math.sqrt(5), rel_tol=1e-5)
    inside = judge(_claim(kind="value", task="moons", model="quantum", value=0.93), m)
    assert inside.verdict == "reproduced"
    outside = judge(_claim(kind="value", task="moons", model="quantum", value=0.65,
                           parameters=12), m)
    assert outside.verdict == "not reproduced"
    assert "below the 95% interval" in outside.notes and "paper counts 12" in outside.notes
    assert judge(_claim(kind="value", task="fashion01", model="quantum", value=0.9),
                 Fake({}, missing=("fashion01",))).verdict == "not run"
    assert judge(_claim(kind="value", task="moons", model="quantum", value=0.9), m,
                 selected=False).notes == "not selected (--claims)"


def test_accuracy_intervals_stay_in_range_and_stay_open_where_seeds_agree():
    from qmoe_qiskit.experiments.claims import accuracy_interval

    high = accuracy_interval([0.97, 1.0, 1.0, 0.95, 1.0])
    assert interval([0.97, 1.0, 1.0, 0.95, 1.0])["high"] > 1  # the plain t-interval leaves
    assert 0 <= high["low"] < high["high"] == 1.0              # [0, 1]; this one does not
    perfect = accuracy_interval([1.0, 1.0, 1.0], test_samples=40)
    assert perfect["high"] == 1.0 and perfect["low"] < 0.975  # Wilson: 120 of 120, not [1, 1]
    from qmoe_qiskit.metrics import wilson_interval
    assert perfect["low"] == pytest.approx(wilson_interval(120, 120)[0])
    assert accuracy_interval([0.8]) == {**accuracy_interval([0.8]), "low": 0.0, "high": 1.0}


@pytest.mark.parametrize("p, spread", [(0.9, 0.03), (0.97, 0.02), (0.995, 0.005), (0.6, 0.05)])
def test_the_accuracy_interval_covers_the_mean_accuracy_at_least_95_percent(p, spread):
    # seeds draw a true accuracy around p (split and training vary), then score it on 60
    # held-out samples; the interval is for the mean accuracy over seeds' draws
    from qmoe_qiskit.experiments.claims import accuracy_interval

    rng = np.random.default_rng(7)
    n_test, seeds, trials, covered = 60, 5, 2000, 0
    for _ in range(trials):
        truth = np.clip(rng.normal(p, spread, seeds), 0, 1)
        scores = rng.binomial(n_test, truth) / n_test
        ci = accuracy_interval(list(scores), test_samples=n_test)
        covered += ci["low"] <= _mean_truth(p, spread) <= ci["high"]
    assert covered / trials >= 0.93, covered / trials


def _mean_truth(p, spread):
    from scipy import stats

    # E[clip(N(p, s), 0, 1)]
    a, b = (0 - p) / spread, (1 - p) / spread
    return float(p * (stats.norm.cdf(b) - stats.norm.cdf(a))
                 + spread * (stats.norm.pdf(a) - stats.norm.pdf(b)) + (1 - stats.norm.cdf(b)))


def test_a_gap_at_the_boundary_reads_right():
    m = Fake({("moons", "quantum"): [0.85, 0.90, 0.94, 0.88, 0.93]})
    ci = interval(m.accuracies("moons", "quantum"))
    v = judge(_claim(kind="value", task="moons", model="quantum", value=ci["high"] + 1e-5), m)
    assert v.verdict == "not reproduced"
    assert "lies above the 95% interval" in v.notes and "by less than 0.05 points" in v.notes
    assert "0.0 points" not in v.notes


def test_quick_runs_mark_verdicts_indicative_and_skip_what_they_cannot_test():
    from qmoe_qiskit.experiments.reproduce_report import summary

    six = judge(_claim(kind="epochs_to", task="moons", threshold=0.9, quantum_within=20,
                       deep_epochs=50), Fake({}), epochs=6)
    assert six.verdict == "not run" and six.notes.startswith("not run (quick)")
    value = judge(_claim(kind="value", task="moons", model="quantum", value=0.9),
                  Fake({("moons", "quantum"): [0.9, 0.91]}), epochs=6)
    assert value.verdict == "reproduced"
    rows = [{"id": "1a", "verdict": value.verdict, "measured": "m", "notes": "",
             "indicative": True},
            {"id": "6", "verdict": six.verdict, "measured": "—", "notes": six.notes,
             "indicative": False}]
    text = summary({"quick": True, "claims": rows})
    assert text.splitlines()[0].startswith("quick run: indicative only")
    assert "reproduced (indicative)" in text and "not run (quick)" in text
    assert text.splitlines()[-1].endswith("(indicative: quick run)")


def test_ordering_claims_must_hold_in_every_seed():
    m = Fake({("t", "a"): [0.9, 0.8, 0.7], ("t", "b"): [0.8, 0.7, 0.75]})
    one_loss = judge(_claim(kind="ordering", task="t", better="a", worse="b"), m)
    assert one_loss.verdict == "not reproduced" and "2 of 3 seeds" in one_loss.notes
    m.acc[("t", "a")] = [0.9, 0.8, 0.76]
    assert judge(_claim(kind="ordering", task="t", better="a", worse="b"), m).verdict == \
        "reproduced"


def test_noise_claims_interpolate_the_crossing_and_check_both_protocols():
    levels = {"evaluated": {0.0: [0.95, 0.93], 0.02: [0.91, 0.89], 0.03: [0.79, 0.81]},
              "retrained": {0.0: [0.95, 0.93], 0.02: [0.90, 0.92], 0.03: [0.83, 0.85]}}
    m = Fake({("moons", "linear"): [0.84, 0.86]}, levels=levels)
    v = judge(_claim(kind="breakdown", task="moons", value=0.025, within=[0.02, 0.03]), m)
    # the linear router's 0.85: evaluated 0.90 -> 0.80 crosses it halfway, at 0.025;
    # retrained 0.91 -> 0.84 six sevenths of the way
    assert v.values["crossing"]["evaluated"] == pytest.approx(0.025)
    assert v.values["crossing"]["retrained"] == pytest.approx(0.02 + 0.01 * 6 / 7)
    assert v.verdict == "reproduced"
    up_to = judge(_claim(kind="advantage_up_to", task="moons", levels=[0.0, 0.02]), m)
    assert up_to.verdict == "reproduced"
    levels["retrained"][0.02] = [0.90, 0.85]  # one seed ties the linear router
    assert judge(_claim(kind="advantage_up_to", task="moons", levels=[0.0, 0.02]), m).verdict \
        == "not reproduced"


def test_table_levels_and_training_dynamics():
    levels = {"evaluated": {0.0: [0.93, 0.94, 0.95], 0.01: [0.80, 0.81, 0.82]}}
    m = Fake({}, levels=levels, epochs={"quantum": [12, 18], "deep": [30, None]})
    v = judge(_claim(kind="levels", task="moons", protocol="evaluated", levels=[0.0, 0.01],
                     values=[0.94, 0.89]), m)
    assert v.verdict == "not reproduced" and "1 of 2 levels" in v.notes and "ε = 0.01" in v.notes
    fast = judge(_claim(kind="epochs_to", task="moons", threshold=0.9, quantum_within=20,
                        deep_epochs=50), m)
    assert fast.verdict == "reproduced" and "never" in fast.measured
    m._epochs["quantum"] = [12, 25]
    assert judge(_claim(kind="epochs_to", task="moons", threshold=0.9, quantum_within=20,
                        deep_epochs=50), m).verdict == "not reproduced"


def test_frontier_and_parameters_to_match():
    acc = {("moons", "quantum_L1"): [0.85, 0.87], ("moons", "quantum_L3"): [0.95, 0.93],
           ("moons", "mlp_h1"): [0.80, 0.82], ("moons", "mlp_h48"): [0.96, 0.96],
           ("moons", "quantum"): [0.95, 0.93]}
    params = {("moons", "quantum_L1"): 12, ("moons", "quantum_L3"): 24, ("moons", "quantum"): 24,
              ("moons", "mlp_h1"): 5, ("moons", "mlp_h48"): 242}
    m = Fake(acc, params)
    assert judge(_claim(kind="frontier", tasks=["moons"]), m).verdict == "reproduced"
    assert judge(_claim(kind="parameters_to_match", task="moons", model="quantum", factor=10),
                 m).verdict == "reproduced"  # the first MLP as accurate has 242 = 10.1 x 24
    acc[("moons", "mlp_h2")], params[("moons", "mlp_h2")] = [0.95, 0.95], 12
    frontier = judge(_claim(kind="frontier", tasks=["moons"]), m)
    assert frontier.verdict == "not reproduced" and "≤ 12 params" in frontier.notes
    assert judge(_claim(kind="parameters_to_match", task="moons", model="quantum", factor=10),
                 m).verdict == "not reproduced"


def test_eta_arithmetic_of_the_papers_table():
    rows = next(c for c in load_claims() if c.id == "4a").test["rows"]
    result = eta_arithmetic(rows)
    assert result["matches"] == [] and not result["monotone_in_parameters"]
    assert result["accuracy_over_eta"] == pytest.approx([94 / 7.14, 65 / 2.79, 93 / 3.82])
    ratio = {r["pair"]: r for r in result["ratios"]}["quantum/linear"]
    assert ratio["formula"] == pytest.approx(94 / 65 * math.log(13) / math.log(25))
    assert ratio["paper"] == pytest.approx(7.14 / 2.79)
    # the check can succeed: η values made with percent / log10 are recognised as such
    made = [dict(r, eta=round(r["accuracy"] / math.log10(1 + r["parameters"]), 2)) for r in rows]
    assert eta_arithmetic(made)["matches"] == ["percent/log10"]
    assert judge(next(c for c in load_claims() if c.id == "4a"), Fake({})).verdict == \
        "not reproduced"


# --------------------------------------------------------------------------- runs and resuming
def test_a_killed_run_resumes_without_redoing_finished_cells(monkeypatch, tmp_path):
    config = rp.ReproduceConfig(claims=(3,), **TINY)
    calls, real_call = [], rp.ModelCell.__call__

    def counted(self, *, progress=False):
        calls.append(self.label)
        if len(calls) == 3 and fail:
            raise KeyboardInterrupt  # the run is killed in its third cell
        return real_call(self, progress=progress)

    monkeypatch.setattr(rp.ModelCell, "__call__", counted)
    fail = True
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    assert len(list((tmp_path / ".run.cells").glob("*.pkl"))) == 2
    fail, calls[:] = False, []
    _, path = run_experiment(config, tmp_path / "run", progress=False)
    assert len(calls) == len(config.plan()) - 2  # only the missing cells ran
    assert not (tmp_path / ".run.cells").exists()  # the store goes once the folder is whole
    calls[:] = []
    _, again = run_experiment(config, tmp_path / "fresh", progress=False)
    assert len(calls) == len(config.plan())
    first = json.loads((path / "results.json").read_text())
    second = json.loads((again / "results.json").read_text())
    assert without_timings(first) == without_timings(second)  # resumed and uninterrupted agree


def test_real_idx_files_are_used_and_labelled(tmp_path):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    _write_idx_set(folder, n_train=120, n_test=40)
    config = rp.ReproduceConfig(claims=(3,), data_dir=str(tmp_path / "data"), **TINY)
    assert not config.real("fashion_mnist") and config.real("mnist")
    spec = rp.task_data("mnist01", 8, config.data_dir)
    assert spec.dataset == "mnist" and spec.val_fraction == pytest.approx(1 / 7)
    _, path = run_experiment(config, tmp_path / "run", progress=False)
    report = (path / "report.md").read_text()
    assert "`mnist01`: MNIST" in report and "stand-in" not in report.split("## Verdicts")[0]


def test_kept_cells_are_not_reused_once_the_data_changed(monkeypatch, tmp_path):
    """The cell store is keyed on the IDX files' content: one changed pixel, with the file's
    size and modification time kept, makes every cell run again on the resume."""
    import gzip
    import os

    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    _write_idx_set(folder, n_train=120, n_test=40)
    config = rp.ReproduceConfig(claims=(3,), data_dir=str(tmp_path / "data"), **TINY)
    calls, real_call = [], rp.ModelCell.__call__

    def counted(self, *, progress=False):
        calls.append(self.label)
        if len(calls) == 3 and fail:
            raise KeyboardInterrupt
        return real_call(self, progress=progress)

    monkeypatch.setattr(rp.ModelCell, "__call__", counted)
    fail = True
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, tmp_path / "run", progress=False)
    assert len(list((tmp_path / ".run.cells").glob("*.pkl"))) == 2
    images = folder / "t10k-images-idx3-ubyte.gz"
    before = images.stat()
    raw = bytearray(gzip.decompress(images.read_bytes()))
    raw[-1] ^= 0xFF  # one pixel of the last test image
    images.write_bytes(gzip.compress(bytes(raw), mtime=0))
    os.utime(images, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert images.stat().st_size == before.st_size  # random pixels: gzip stores them as they are
    assert images.stat().st_mtime_ns == before.st_mtime_ns
    fail, calls[:] = False, []
    run_experiment(config, tmp_path / "run", progress=False)
    assert len(calls) == len(config.plan())  # nothing computed from the old file was reused


def test_bad_reproduce_input_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown claims \[9\]; valid claims: 1, 2, .*8"):
        rp.ReproduceConfig(claims=(9,))
    with pytest.raises(ConfigError, match="needs from 2 to 100 seeds"):
        rp.ReproduceConfig(seeds=(0,))
    assert main(["reproduce", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds neither mnist/ nor fashion_mnist/" in err
    assert main(["reproduce", "--claims", "0", "--out", str(tmp_path / "r")]) == 2
    assert "valid claims" in capsys.readouterr().err
