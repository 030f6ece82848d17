"""The statistics ``qmoe compare`` judges by, and its hypotheses on counts with a known truth.

Units first (goodness of fit against scipy's own statistics, pooling, the likelihood-ratio
test, information criteria, the jackknife, quasi-likelihood widening, the tabulated families
against exact evaluation), then the hypotheses fitted to multinomial counts drawn from exact
truths on an ISA circuit of fake_manila: in-family truths pass, misspecified ones are rejected
and the two-scale model recovers both scales, drift between repeats is caught, idle-time
relaxation is told apart, and the per-qubit readout fit is tested against a calibration.
"""

import numpy as np
import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import ParameterVector
from qiskit.circuit.library import RZZGate
from qiskit_aer.noise import amplitude_damping_error, coherent_unitary_error
from qiskit_ibm_runtime.fake_provider import FakeManilaV2
from scipy import stats

from qmoe_qiskit.circuits import waiting_circuit
from qmoe_qiskit.experiments.compare import Snapshot
from qmoe_qiskit.experiments.compare_analysis import _readout_check
from qmoe_qiskit.experiments.hypotheses import FitData, drift, fit_and_test, hypothesis
from qmoe_qiskit.jobs.readout import ReadoutCalibration
from qmoe_qiskit.metrics import (
    goodness_of_fit,
    information_criteria,
    jackknife,
    likelihood_ratio,
    profile_fit,
)
from qmoe_qiskit.noise_models import IsaEvaluator, calibrated_readout, device
from qmoe_qiskit.noise_models.families import (
    GateTable,
    depolarizing_gates,
    device_gates,
)
from qmoe_qiskit.noise_models.relaxation import relaxation_excess
from qmoe_qiskit.transpile import measured_qubits

ALPHA = 0.01
SHOTS, ROWS = 2000, 100


# ------------------------------------------------------------------ units
def test_deviance_and_pearson_match_scipy_without_pooling():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4) * 5, size=30)
    counts = np.array([rng.multinomial(1000, row) for row in p])
    gof = goodness_of_fit([counts], [p], parameters=2)
    g2 = sum(stats.power_divergence(n, 1000 * q, lambda_="log-likelihood")[0]
             for n, q in zip(counts, p))
    x2 = sum(stats.chisquare(n, 1000 * q)[0] for n, q in zip(counts, p))
    assert gof.deviance == pytest.approx(g2, rel=1e-10)
    assert gof.pearson == pytest.approx(x2, rel=1e-10)
    assert gof.dof == 30 * 3 - 2 and gof.pooled == 0
    assert gof.p_value == pytest.approx(stats.chi2.sf(g2, 88), rel=1e-9)
    assert gof.dispersion == pytest.approx(x2 / 88)


def test_sparse_cells_are_pooled_to_five_expected_counts():
    p = np.array([[0.97, 0.02, 0.006, 0.004]])  # 1000 shots: expected 970, 20, 6, 4
    counts = np.array([[962, 25, 9, 4]])
    gof = goodness_of_fit([counts, counts], [p, p], parameters=0)
    # the 4 joins the 6 (the two smallest), then every cell expects at least 5
    assert gof.cells == 6 and gof.pooled == 2 and gof.dof == 4
    merged_n, merged_m = np.array([962, 25, 13]), np.array([970.0, 20.0, 10.0])
    g2 = stats.power_divergence(merged_n, merged_m, lambda_="log-likelihood")[0]
    assert gof.deviance == pytest.approx(2 * g2)


def test_a_row_pooled_to_one_cell_adds_no_freedom():
    p = np.array([[0.9, 0.05, 0.03, 0.02], [0.25, 0.25, 0.25, 0.25]])
    sparse = np.array([[18, 1, 1, 0]])  # 20 shots: expected 18, 1, 0.6, 0.4 -> one cell
    full = np.array([[25, 25, 25, 25]])
    gof = goodness_of_fit([sparse, full], [p[:1], p[1:]], parameters=0)
    assert gof.dof == 0 + 3 and gof.cells == 1 + 4
    with pytest.raises(ValueError, match="no degrees of freedom"):
        goodness_of_fit([sparse], [p[:1]], parameters=0)


def test_the_deviance_test_has_its_size_under_the_null():
    """Counts drawn from the very distributions tested: the rejection rate at 5% is 5%."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=50)
    p[:, 0] += 0.002  # some small cells, so pooling is exercised
    p /= p.sum(axis=1, keepdims=True)
    rejected = []
    for _ in range(400):
        counts = np.array([rng.multinomial(500, row) for row in p])
        rejected.append(goodness_of_fit([counts], [p], parameters=0).p_value < 0.05)
    rate = np.mean(rejected)
    assert 0.05 - 3 * np.sqrt(0.05 * 0.95 / 400) < rate < 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)


def test_likelihood_ratio_criteria_and_jackknife():
    statistic, p = likelihood_ratio(-100.0, -96.0, 1)
    assert statistic == 8.0 and p == pytest.approx(stats.chi2.sf(8.0, 1))
    assert likelihood_ratio(-100.0, -100.5, 2)[0] == 0.0  # a worse larger model: no evidence
    ic = information_criteria(-50.0, 3, 1000)
    assert ic == {"aic": 106.0, "bic": pytest.approx(100 + 3 * np.log(1000))}
    # the jackknife of a mean is the Student-t interval of the mean
    values = np.array([2.3, 2.6, 2.45, 2.8, 2.2])
    loo = [np.delete(values, i).mean() for i in range(5)]
    centre, se, (lo, hi) = jackknife(values.mean(), loo)
    assert centre == pytest.approx(values.mean())
    assert se == pytest.approx(values.std(ddof=1) / np.sqrt(5))
    assert hi - centre == pytest.approx(stats.t.ppf(0.975, 4) * se)


def test_quasi_likelihood_widens_the_interval_by_the_root_of_the_dispersion():
    loglik = lambda x: -(x - 2.0) ** 2 / (2 * 0.1 ** 2)  # noqa: E731
    plain = profile_fit(loglik, np.linspace(0, 5, 26))
    wide = profile_fit(loglik, np.linspace(0, 5, 26), dispersion=4.0)
    width = lambda f: f.interval[1] - f.interval[0]  # noqa: E731
    assert width(wide) == pytest.approx(2 * width(plain), rel=1e-3)


# ------------------------------------------------------------------ a circuit and its truths
@pytest.fixture(scope="module")
def setting():
    """An ISA circuit of fake_manila (2 used qubits, 3 entangling layers, a rotation per input),
    100 bindings, and the device and depolarizing tables every test shares."""
    backend = FakeManilaV2()
    x = ParameterVector("x", 2)
    w = ParameterVector("w", 12)
    qc = QuantumCircuit(2, 2)
    for layer in range(3):
        qc.ry(x[0] + w[4 * layer], 0)
        qc.ry(x[1] + w[4 * layer + 1], 1)
        qc.cx(0, 1)
        qc.rx(w[4 * layer + 2], 0)
        qc.rz(w[4 * layer + 3], 1)
        qc.cx(1, 0)
    qc.measure([0, 1], [0, 1])
    isa = transpile(qc, backend, initial_layout=[3, 4], optimization_level=1, seed_transpiler=0)
    rng = np.random.default_rng(7)
    weights = rng.uniform(0, np.pi, 12)
    values = np.column_stack([rng.uniform(0, np.pi, (ROWS, 2)), np.tile(weights, (ROWS, 1))])
    order = {p.name: i for i, p in enumerate(list(x) + list(w))}
    values = values[:, [order[p.name] for p in isa.parameters]]
    snap = Snapshot(backend.name, backend.target, backend.properties())
    evaluator = IsaEvaluator([(isa, values)])
    measured = evaluator.measured
    errors = calibrated_readout(snap, measured[0]).errors
    return {"backend": snap, "isa": isa, "values": values, "evaluator": evaluator,
            "data": FitData([], measured, errors),
            "device": GateTable.of(device_gates(snap, [3, 4]), evaluator),
            "depolarizing": GateTable.of(depolarizing_gates(["cx", "rz", "sx", "x"]), evaluator)}


def _draw(probabilities, seed, shots=SHOTS):
    rng = np.random.default_rng(seed)
    return [np.array([rng.multinomial(shots, row / row.sum()) for row in p])
            for p in probabilities]


def _fit(setting, name, counts):
    chosen = hypothesis(name)
    fit = fit_and_test(chosen, setting[chosen.family], setting["data"].with_counts(counts),
                       alpha=ALPHA)
    return fit, fit.gof


def test_the_tables_interpolate_to_the_exact_distributions(setting):
    for table, points in ((setting["device"], (0.37, 1.0, 2.61, 4.2, 11.3)),
                          (setting["depolarizing"], (0.0003, 0.0117, 0.0203))):
        for x in points:
            interpolated, exact = table(x), table.exact(x)
            assert max(np.abs(a - b).max() for a, b in zip(interpolated, exact)) < 1e-9
    node = setting["device"].snap(2.5)
    assert setting["device"](node)[0] is setting["device"].node(
        round(np.log(node) / np.log(1.02)) - setting["device"]._first + 1)[0]


def test_an_in_family_truth_passes_and_its_interval_covers(setting):
    truth = setting["evaluator"](device(setting["backend"], qubits=[3, 4], scale=2.5))
    counts = _draw(truth, 11)
    fit, gof = _fit(setting, "device_scaled_fit", counts)
    assert gof.p_value >= ALPHA
    lo, hi = fit.intervals["scale"]
    assert lo <= 2.5 <= hi and hi - lo < 0.5


@pytest.mark.parametrize("gates, readout", [(4.0, 1.0), (1.0, 3.0)])
def test_wrong_proportions_reject_one_k_and_two_scales_recover_both(setting, gates, readout):
    truth = setting["evaluator"](device(setting["backend"], qubits=[3, 4], scale=gates,
                                        readout_scale=readout))
    counts = _draw(truth, 12)
    single, single_gof = _fit(setting, "device_scaled_fit", counts)
    two, two_gof = _fit(setting, "device_two_scale_fit", counts)
    assert single_gof.p_value < ALPHA  # one k cannot describe gates x 4 with readout x 1
    assert two_gof.p_value >= ALPHA
    for key, value in (("gate_scale", gates), ("readout_scale", readout)):
        lo, hi = two.intervals[key]
        assert lo <= value <= hi, (key, two.intervals)
    assert likelihood_ratio(single.log_likelihood, two.log_likelihood, 1)[1] < ALPHA


def _rejects_every_model(setting, counts):
    for name in ("ideal", "device", "readout_only", "depolarizing_fit", "device_scaled_fit",
                 "device_two_scale_fit", "device_readout_fit"):
        _, gof = _fit(setting, name, counts)
        assert gof.p_value < ALPHA, name


def test_a_coherent_error_is_rejected_by_every_model(setting):
    noise = device(setting["backend"], qubits=[3, 4])
    noise.add_quantum_error(coherent_unitary_error(RZZGate(0.2).to_matrix()), "cx", [3, 4])
    _rejects_every_model(setting, _draw(setting["evaluator"](noise), 13))


def test_strong_extra_amplitude_damping_is_rejected_by_every_model(setting):
    noise = device(setting["backend"], qubits=[3, 4])
    for q in (3, 4):
        noise.add_quantum_error(amplitude_damping_error(0.08), "sx", [q])
    _rejects_every_model(setting, _draw(setting["evaluator"](noise), 14))


def test_drift_between_repeats_is_caught_and_the_jackknife_covers_the_long_run(setting):
    rng = np.random.default_rng(15)
    scales = rng.normal(2.5, 0.25, 5)
    repeats = [_draw(setting["evaluator"](device(setting["backend"], qubits=[3, 4], scale=k)),
                     20 + i) for i, k in enumerate(scales)]
    total = [sum(r[0] for r in repeats)]
    pooled, _ = _fit(setting, "device_scaled_fit", total)
    found = drift(hypothesis("device_scaled_fit"), setting["device"],
                  setting["data"].with_counts(total), repeats, pooled)
    assert found.p_value < ALPHA and found.dof == 4
    assert np.allclose(found.repeat_values, scales, rtol=0.05)
    lo, hi = found.jackknife_interval
    assert lo <= 2.5 <= hi
    # the pooled profile interval is far narrower than the spread it hides
    p_lo, p_hi = pooled.intervals["scale"]
    assert (p_hi - p_lo) < (hi - lo) / 3


def test_without_drift_the_drift_test_keeps_its_level(setting):
    """Twenty runs of four repeats of one truth: the test at 1% rejects at most two (the
    chance of three or more is 0.1%)."""
    truth = setting["evaluator"](device(setting["backend"], qubits=[3, 4], scale=2.5))
    rejected = 0
    for run in range(20):
        repeats = [_draw(truth, 100 + 10 * run + i) for i in range(4)]
        total = [sum(r[0] for r in repeats)]
        pooled, _ = _fit(setting, "device_scaled_fit", total)
        found = drift(hypothesis("device_scaled_fit"), setting["device"],
                      setting["data"].with_counts(total), repeats, pooled)
        rejected += found.p_value < ALPHA
    assert rejected <= 2


def test_the_readout_fit_is_tested_against_a_calibration(setting):
    truth = setting["evaluator"](device(setting["backend"], qubits=[3, 4], scale=2.0))
    counts = _draw(truth, 16)
    fit, gof = _fit(setting, "device_readout_fit", counts)
    assert fit.extra["identifiable"]

    class Score:  # what the check reads of a model score
        pass

    score = Score()
    score.fit = fit
    true = {q: (2.0 * p10, 2.0 * p01) for q, (p10, p01) in setting["data"].calibrated.items()}

    def calibration(errors):
        matrices = {q: np.array([[1 - a, b], [a, 1 - b]]) for q, (a, b) in errors.items()}
        return ReadoutCalibration(matrices, 4000)

    agreeing = _readout_check({"device_readout_fit": score}, [calibration(true)], ALPHA)
    assert not agreeing["differ"]
    off = {q: (3 * a + 0.05, b) for q, (a, b) in true.items()}  # a calibration far off
    disagreeing = _readout_check({"device_readout_fit": score}, [calibration(off)], ALPHA)
    assert disagreeing["differ"] and disagreeing["p_value"] < 1e-6


def test_idle_relaxation_is_told_apart_on_a_circuit_with_a_waiting_qubit():
    """Qubit 0 is entangled with qubit 1, then waits while qubits 1 and 2 run six CNOTs (a
    wait that scheduling as late as possible cannot move before the excitation): with
    idle-time relaxation in the truth, the scheduled device model fits and the unscheduled
    one does not."""
    backend = FakeManilaV2()
    snap = Snapshot(backend.name, backend.target, backend.properties())
    qc = waiting_circuit()
    isa = transpile(qc, backend, initial_layout=[0, 1, 2], optimization_level=0)
    values = np.column_stack([np.linspace(0.2, np.pi, 60), np.linspace(0, 2, 60)])
    scheduled = IsaEvaluator([(isa, values)], backend=snap)
    truth = scheduled(device(snap, qubits=[0, 1, 2], scale=2.0), idle_scale=2.0)
    counts = _draw(truth, 17)
    data = FitData(counts, scheduled.measured,
                   calibrated_readout(snap, measured_qubits(isa)).errors)
    fits = {}
    for idle in (True, False):
        table = GateTable.of(device_gates(snap, [0, 1, 2], idle=idle), scheduled)
        fit = hypothesis("device_scaled_fit").fit(table, data)
        fits[idle] = (fit, goodness_of_fit(counts, fit.probabilities, parameters=1))
    (with_idle, gof_idle), (without, gof_without) = fits[True], fits[False]
    assert with_idle.log_likelihood > without.log_likelihood + 10
    assert gof_idle.p_value >= ALPHA and gof_without.p_value < ALPHA
    lo, hi = with_idle.intervals["scale"]
    assert lo <= 2.0 <= hi


def test_the_device_model_states_where_relaxation_exceeds_the_calibration():
    rows = {(r.gate, r.qubits): r for r in relaxation_excess(FakeManilaV2(), [3, 4])}
    sx = rows[("sx", (3,))]
    assert sx.calibrated_error == pytest.approx(2.12e-4, rel=0.01)
    assert sx.relaxation_error == pytest.approx(2.51e-4, rel=0.01)
    cx = rows[("cx", (3, 4))]
    assert cx.relaxation_error == pytest.approx(6.57e-3, rel=0.01) and 0.1 < cx.excess < 0.2
    assert ("sx", (4,)) not in rows  # qubit 4's calibration leaves room for depolarizing


def test_the_wilson_interval_is_scipys_and_stays_inside_zero_one():
    from scipy.stats import binomtest

    from qmoe_qiskit.metrics import wilson_interval

    for k, n in [(0, 10), (3, 10), (10, 10), (47, 50), (1, 1)]:
        want = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_interval(k, n)
        assert abs(lo - want.low) < 1e-12 and abs(hi - want.high) < 1e-12, (k, n)
        assert 0 <= lo <= k / n <= hi <= 1
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_the_std_coverage_test_of_mitigated_values_has_its_size_and_power():
    """compare's test of whether reported stds cover the error left: with errors drawn from
    the stated stds it rejects at its level (measured over 1000 replicates), with stds half the
    true spread it rejects nearly always."""
    from qmoe_qiskit.experiments.compare import EstimatedReplay
    from qmoe_qiskit.experiments.compare_analysis import _mitigated_router

    rng = np.random.default_rng(11)
    ideal = rng.uniform(-0.9, 0.9, (40, 2))
    labels = np.zeros(40, dtype=int)
    results = {"router_circuit": {"ideal": ideal.tolist(), "raw": (ideal + 0.1).tolist()},
               "mitigated": {"zne": {"qpu_multiple": 3.0}}, "labels": labels.tolist(),
               "predictions": labels.tolist()}
    alpha, stds = 0.05, np.full_like(ideal, 0.02)

    def rejects(spread: float) -> bool:
        values = ideal + rng.normal(0, spread, ideal.shape)
        replay = EstimatedReplay("zne", "zne", None, labels, np.zeros((40, 2)), values, ideal,
                                 (values - ideal) / stds)
        row = _mitigated_router(results, [], [replay], alpha)["rows"]["zne"]
        assert row["dof"] == 80 and abs(row["z_rms"] - np.sqrt(row["chi2"] / 80)) < 1e-12
        return not row["stds_cover_error"]

    size = np.mean([rejects(0.02) for _ in range(1000)])
    assert abs(size - alpha) < 3 * np.sqrt(alpha * (1 - alpha) / 1000), size
    assert np.mean([rejects(0.04) for _ in range(200)]) > 0.99
