"""Bad input across every command: each case must end with exit status 2, one line on stderr
that names the problem, no traceback, and no new or changed files anywhere.

The table is the regression suite of a hostile campaign; the count of cases is reported by
``test_the_campaign_is_large_enough`` and in ``benchmarks/README.md``.
"""

import gzip
import struct

import numpy as np
import pytest

from qmoe_qiskit.cli import main

WORLD = {}  # paths of the files the cases point at, filled by the fixture


def _idx(array: np.ndarray) -> bytes:
    return (struct.pack(">HBB", 0, 0x08, array.ndim)
            + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes())


def _idx_folder(folder, broken: str, blob: bytes):
    """The four MNIST files, small and valid except ``broken``, which holds ``blob``."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (12, 28, 28)),
              "train-labels-idx1-ubyte.gz": np.arange(12) % 3,
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": np.arange(6) % 3}
    for name, array in arrays.items():
        (folder / name).write_bytes(blob if name == broken else gzip.compress(_idx(array)))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Trained models, broken model files, broken data folders, files where folders belong."""
    import torch

    from qmoe_qiskit.data import DataSpec
    from qmoe_qiskit.experiments import TrainRun, run_experiment
    from qmoe_qiskit.jobs import Ledger, LedgerEntry
    from qmoe_qiskit.models import ModelSpec, build_model, save_model
    from qmoe_qiskit.training import TrainConfig

    root = tmp_path_factory.mktemp("world")
    small = dict(data=DataSpec(n_samples=100), train=TrainConfig(epochs=1))
    run_experiment(TrainRun(model=ModelSpec(router="quantum", ansatz="paper", num_layers=1),
                            **small), root / "model", progress=False)
    run_experiment(TrainRun(model=ModelSpec(router="linear"), **small), root / "linear",
                   progress=False)
    torch.manual_seed(0)
    spec = ModelSpec(num_features=2, num_classes=2, router="quantum")
    save_model(root / "noprov.pt", build_model(spec), spec)  # the Python API, no provenance
    blob = (root / "model" / "model.pt").read_bytes()
    (root / "trunc.pt").write_bytes(blob[: len(blob) // 2])
    (root / "empty.pt").write_bytes(b"")
    (root / "notes.txt").write_text("these are not the weights you are looking for\n")
    (root / "nomodel").mkdir()
    (root / "afile").write_text("a file where a folder belongs")
    (root / "ledgerdir").mkdir()
    (root / "ledgerdir" / "ledger.jsonl").mkdir()
    header = _idx(np.zeros((12, 28, 28)))
    _idx_folder(root / "idx_trunc", "train-images-idx3-ubyte.gz", gzip.compress(header[:-100]))
    _idx_folder(root / "idx_gzip", "t10k-labels-idx1-ubyte.gz", b"plain text, not gzip")
    _idx_folder(root / "idx_cut_gzip", "train-labels-idx1-ubyte.gz",
                gzip.compress(_idx(np.arange(12) % 3))[:-6])
    _idx_folder(root / "idx_header", "t10k-images-idx3-ubyte.gz",
                gzip.compress(b"\x00\x00\x08\x03\x00\x00"))
    _idx_folder(root / "idx_magic", "train-images-idx3-ubyte.gz",
                gzip.compress(b"\x01\x02\x0d\x03" + header[4:]))
    _idx_folder(root / "idx_dims", "t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(np.arange(5))))
    _idx_folder(root / "idx_flat", "t10k-images-idx3-ubyte.gz",
                gzip.compress(_idx(np.zeros((6, 784)))))
    cache = root / "cache"
    Ledger(cache / "ledger.jsonl").record(LedgerEntry(
        job_id="d1234", backend="ibm_brisbane", key="k" * 64, status="submitted",
        submitted="t", updated="t", local=False))
    WORLD.update({name.split(".")[0]: str(root / name) for name in (
        "model", "linear", "noprov.pt", "trunc.pt", "empty.pt", "notes.txt", "nomodel", "afile",
        "ledgerdir", "idx_trunc", "idx_gzip", "idx_cut_gzip", "idx_header", "idx_magic",
        "idx_dims", "idx_flat", "cache")})
    return root


def W(name: str) -> str:
    return "{" + name + "}"


M = ["--model", W("model")]
RUN = ["run", *M, "--backend", "fake_manila"]
SWEEP = ["sweep", *M]
TRAIN = ["train", "--epochs", "1", "--samples", "100"]
ABL = ["ablation", "--quick"]
STUDY = ["study", "routing", "--quick", "--dry-run"]

CASES = [
    # top level
    ([], "the following arguments are required: command"),
    (["nope"], "invalid choice: 'nope'"),
    # ablation
    ([*ABL, "--seeds", "1"], "the ablation needs from 2 to 100 seeds"),
    ([*ABL, "--seeds", "0"], "the ablation needs from 2 to 100 seeds"),
    ([*ABL, "--seeds", "-3"], "the ablation needs from 2 to 100 seeds"),
    ([*ABL, "--seeds", "100000000"], "needs from 2 to 100 seeds (at least 2 for a standard "
     "deviation; each trains every model again), got 100,000,000"),
    (["reproduce", "--quick", "--seeds", "100000000"], "reproduce needs from 2 to 100 seeds"),
    # study routing
    (["study"], "the following arguments are required: study"),
    (["study", "mixtures"], "invalid choice: 'mixtures'"),
    ([*STUDY, "--tasks", "spirals"], "unknown routing-study tasks ['spirals']; valid tasks: "
     "'moons', 'circles', 'digits38', 'mnist38', 'mnist4'"),
    ([*STUDY, "--variants", "top3"], "unknown routing-study variants ['top3']"),
    ([*STUDY, "--tasks", "mnist4"], "tasks ['mnist4'] need the MNIST files: pass --data-dir"),
    ([*STUDY, "--data-dir", W("afile")], "holds no mnist/ folder with the four MNIST IDX"),
    ([*STUDY, "--seeds", "1"], "the routing study needs from 2 to 100 seeds"),
    ([*STUDY, "--epochs", "0"], "epochs and batch_size must be >= 1"),
    ([*STUDY, "--lr", "nan"], "learning rate must be a finite number > 0"),
    ([*ABL, "--widths", "0"], "MLP widths must be >= 1"),
    ([*ABL, "--widths=-4,8"], "MLP widths must be >= 1"),
    ([*ABL, "--widths", "a,b"], "expected comma-separated integers"),
    ([*ABL, "--models", "A,Z"], "unknown ablation models ['Z']"),
    ([*ABL, "--models", ""], "expected at least one name"),
    ([*ABL, "--models", ",,"], "expected at least one name"),
    ([*ABL, "--layers", "0"], "num_layers must be an integer >= 1"),
    ([*ABL, "--epochs", "0"], "epochs and batch_size must be >= 1"),
    ([*ABL, "--lr", "nan"], "learning rate must be a finite number > 0"),
    ([*ABL, "--lr", "inf"], "learning rate must be a finite number > 0"),
    ([*ABL, "--lr", "-0.1"], "learning rate must be a finite number > 0"),
    ([*ABL, "--batch-size", "0"], "epochs and batch_size must be >= 1"),
    ([*ABL, "--patience", "-1"], "patience must be >= 1"),
    ([*ABL, "--samples", "5"], "n_samples must be an integer >= 10"),
    ([*ABL, "--data-noise", "-0.1"], "noise must be a finite number >= 0"),
    ([*ABL, "--data-noise", "nan"], "noise must be a finite number >= 0"),
    ([*ABL, "--dataset", "iris"], "invalid choice: 'iris'"),
    ([*ABL, "--threads", "0"], "threads must be an integer >= 1"),
    ([*ABL, "--classes", "0,1"], "classes apply only to"),
    ([*ABL, "--features", "0"], "n_features must be >= 1"),
    ([*ABL, "--samples", "10000000000"], "memory"),
    # train
    ([*TRAIN, "--layers", "0"], "num_layers must be an integer >= 1"),
    ([*TRAIN, "--qubits", "0"], "num_qubits must be an integer >= 1"),
    ([*TRAIN, "--qubits", "1"], "2 features but the circuit has 1 qubits"),
    ([*TRAIN, "--hidden", "0"], "router_hidden must be an integer >= 1"),
    ([*TRAIN, "--experts", "1"], "at least 2 experts"),
    ([*TRAIN, "--top-k", "0"], "top-k must be an integer from 1 to the number of experts (2)"),
    ([*TRAIN, "--top-k", "5"], "top-k must be an integer from 1 to the number of experts (2), "
     "got 5"),
    ([*TRAIN, "--balance-weight", "-1"], "balance weight must be a finite number from 0 to 100"),
    ([*TRAIN, "--balance-weight", "nan"], "balance weight must be a finite number from 0 to"),
    ([*TRAIN, "--balance-weight", "inf"], "balance weight must be a finite number from 0 to"),
    ([*TRAIN, "--capacity", "0"], "capacity (the expert capacity factor) must be a finite "
     "number > 0, got 0.0"),
    ([*TRAIN, "--capacity", "-1"], "capacity (the expert capacity factor) must be a finite"),
    ([*TRAIN, "--aggregation", "coherent"], "coherent aggregation combines the experts' "
     "amplitudes in one circuit, so it needs quantum experts"),
    ([*TRAIN, "--aggregation", "coherent", "--expert", "quantum", "--router", "linear"],
     "it needs --router quantum --ansatz paper; got --router linear"),
    ([*TRAIN, "--aggregation", "coherent", "--expert", "quantum", "--router", "quantum",
      "--ansatz", "paper", "--experts", "3"], "so it needs 2, 4, 8, ... experts; got 3"),
    ([*TRAIN, "--aggregation", "coherent", "--expert", "quantum", "--router", "quantum",
      "--ansatz", "paper", "--top-k", "1"], "leave --top-k and --capacity out"),
    ([*TRAIN, "--aggregation", "sum"], "invalid choice: 'sum'"),
    ([*TRAIN, "--seed", "-1"], "seed must be an integer >= 0"),
    ([*TRAIN, "--epochs", "x"], "invalid int value: 'x'"),
    ([*TRAIN, "--data-noise", "abc"], "invalid float value: 'abc'"),
    ([*TRAIN, "--ansatz", "nope"], "invalid choice: 'nope'"),
    ([*TRAIN, "--features", "5"], "PCA to 5 features"),
    ([*TRAIN, "--dataset", "mnist"], "needs data_dir"),
    ([*TRAIN, "--dataset", "mnist", "--data-dir", W("afile")], "is a file, not a folder"),
    ([*TRAIN, "--dataset", "digits", "--classes", "42,43"], "classes [42, 43] do not occur"),
    ([*TRAIN, "--dataset", "digits", "--classes", "3"], "at least 2 classes"),
    ([*TRAIN, "--dataset", "digits", "--features", "100"], "PCA to 100 features"),
    # circuits too wide for the exact simulator: refused before anything is built
    ([*TRAIN, "--dataset", "digits", "--classes", "0,1", "--router", "quantum", "--ansatz",
      "paper"], "a quantum router on 64 qubits (one per feature: the data has 64 features) is "
                "too wide for the exact simulator (at most 24); reduce the features with "
                "--features K"),
    ([*TRAIN, "--qubits", "30"], "a quantum router on 30 qubits (--qubits) is too wide"),
    ([*TRAIN, "--dataset", "digits", "--classes", "0,1", "--router", "linear", "--expert",
      "quantum"], "a quantum expert on 64 qubits (one per feature: the data has 64 features)"),
    ([*TRAIN, "--dataset", "mnist", "--data-dir", W("idx_trunc")], "truncated"),
    ([*TRAIN, "--dataset", "mnist", "--data-dir", W("idx_gzip")], "not a gzip file"),
    ([*TRAIN, "--dataset", "mnist", "--data-dir", W("idx_cut_gzip")], "cut short"),
    ([*TRAIN, "--dataset", "mnist", "--data-dir", W("idx_header")], "header"),
    ([*TRAIN, "--dataset", "mnist", "--data-dir", W("idx_magic")], "not an unsigned-byte IDX"),
    ([*TRAIN, "--dataset", "mnist", "--data-dir", W("idx_dims")], "images but"),
    ([*TRAIN, "--dataset", "mnist", "--data-dir", W("idx_flat")], "28 x 28"),
    ([*TRAIN, "--out", ""], "empty"),
    ([*TRAIN, "--out", W("afile")], "is a file"),
    ([*TRAIN, "--out", W("afile") + "/sub"], "is a file"),
    ([*TRAIN, "--out", W("model")], "already holds files"),
    ([*TRAIN, "--samples", "100000000000"], "memory"),
    ([*TRAIN, "--router", "mlp", "--hidden", "100000000"], "memory"),
    ([*TRAIN, "--layers", "100000000"], "memory"),
    ([*TRAIN, "--experts", "100000000", "--router", "linear"], "memory"),
    ([*TRAIN, "--lr", "1e300"], "learning rate must be a finite number > 0"),
    ([*TRAIN, "--noise-model", "junk"], "--noise-model chooses which fit --noise-from "
     "COMPARE_DIR trains under (valid: 'best', 'device_scaled_fit', 'depolarizing_fit')"),
    ([*TRAIN, "--noise-model", "depolarizing_fit"], "give --noise-from too"),
    ([*TRAIN, "--router", "mlp", "--expert", "mlp", "--lr", "1e20"], "training diverged"),
    # evaluate
    (["evaluate", "--model", "nowhere/model.pt"], "model file not found"),
    (["evaluate", "--model", W("notes")], "not a qmoe-qiskit model file"),
    (["evaluate", "--model", W("nomodel")], "model file not found"),
    (["evaluate", "--model", W("noprov")], "no record of the data"),
    (["evaluate", "--model", W("trunc")], "corrupt or truncated"),
    (["evaluate", "--model", W("empty")], "empty"),
    # sweep
    ([*SWEEP, "--noise-model", "fake_nowhere"], "offline fake backend; for example 'fake_manila'"),
    ([*SWEEP, "--noise-model", "fake_manilla"], "backend; closest: 'fake_manila' ("),
    ([*SWEEP, "--scales", "1"], "not scales"),
    ([*SWEEP, "--noise-model", "fake_manila", "--levels", "0.1"], "not levels"),
    ([*SWEEP, "--levels", "-0.1"], "must be finite and >= 0"),
    ([*SWEEP, "--levels", "1.5"], "must be a probability in [0, 1]"),
    ([*SWEEP, "--levels", "nan"], "must be finite and >= 0"),
    ([*SWEEP, "--levels", "inf"], "must be finite and >= 0"),
    ([*SWEEP, "--levels", ""], "expected at least one number"),
    ([*SWEEP, "--noise-model", "fake_manila", "--scales", "1000"], "use a scale <="),
    ([*SWEEP, "--noise-model", "fake_manila", "--scales", "1e6"], "must be at most 1000"),
    ([*SWEEP, "--shots", "0"], "shots must be >= 1"),
    ([*SWEEP, "--shots", "-5"], "shots must be >= 1"),
    ([*SWEEP, "--shots", "10", "--repetitions", "1"], "at least 2 repetitions"),
    ([*SWEEP, "--repetitions", "0"], "repetitions must be >= 1"),
    ([*SWEEP, "--seed", "-1"], "seed must be an integer >= 0"),
    ([*SWEEP, "--retrain", "--epochs", "0"], "epochs and batch_size must be >= 1"),
    ([*SWEEP, "--retrain", "--lr", "nan"], "learning rate must be a finite number > 0"),
    ([*SWEEP, "--shots", "100000000000000"], "memory"),
    (["sweep", "--model", W("linear")], "needs a quantum router"),
    (["sweep", "--model", "nowhere"], "model file not found"),
    (["sweep", "--model", W("noprov")], "no record of the data"),
    ([*SWEEP, "--out", W("model")], "which this command reads; choose another --out"),
    # run
    (["run", *M, "--backend", "fake_nowhere"], "unknown backend 'fake_nowhere'"),
    (["run", *M, "--backend", ""], "backend must be a backend name"),
    ([*RUN, "--limit", "0"], "samples must be >= 1"),
    ([*RUN, "--limit", "100000"], "test split has 20"),
    ([*RUN, "--shots", "0"], "shots must be a positive integer"),
    ([*RUN, "--shots", "-1"], "shots must be a positive integer"),
    ([*RUN, "--shots", "1000000000000"], "memory"),
    ([*RUN, "--shots", "1000000000000", "--dry-run"], "memory"),
    ([*RUN, "--noise-scale", "1e6"], "--noise-scale must be at most 1000, got 1e+06: by then"),
    ([*RUN, "--noise-scale", "1e6", "--dry-run"], "--noise-scale must be at most 1000"),
    (["compare", *M, "--backend", "fake_manila", "--noise-scale", "1e6"],
     "--noise-scale must be at most 1000"),
    ([*RUN, "--noise-scale", "2", "--readout-scale", "2000"], "--readout-scale must be at most"),
    ([*RUN, "--noise-scale", "2", "--noise-drift", "5"], "--noise-drift must be at most 1"),
    ([*RUN, "--layout", "0"], "give one per logical qubit"),
    ([*RUN, "--layout", "0,0"], "uses a physical qubit twice"),
    ([*RUN, "--layout", "0,99"], "are not on fake_manila"),
    ([*RUN, "--layout", "a"], "expected comma-separated integers"),
    ([*RUN, "--optimization-level", "5"], "invalid choice: 5"),
    ([*RUN, "--transpiler-seed", "-1"], "seed must be an integer >= 0"),
    (["run", *M, "--backend", "ibm_brisbane"], "no IBM Quantum account found"),
    (["run", *M, "--backend", "ibm_brisbane", "--channel", "nope"], "valid channels"),
    ([*RUN, "--cache", W("afile")], "is a file"),
    ([*RUN, "--cache", W("afile") + "/c"], "is a file"),
    ([*RUN, "--cache", W("ledgerdir")], "is a directory"),
    (["run", "--model", W("linear"), "--backend", "fake_manila"], "no quantum circuits"),
    ([*RUN, "--out", W("model")], "which this command reads; choose another --out"),
    (["run", "--model", W("noprov"), "--backend", "fake_manila"], "no record of the data"),
    # jobs
    (["jobs", "fetch", "no-such-job", "--cache", W("cache")], "not in the ledger"),
    (["jobs", "status", "no-such-job", "--cache", W("cache")], "not in the ledger"),
    (["jobs", "list", "--cache", W("afile")], "a part of its path is a file"),
    (["jobs", "list", "--cache", W("ledgerdir")], "it is a directory"),
    (["jobs", "nope"], "invalid choice: 'nope'"),
    (["jobs", "status", "--cache", W("cache"), "--channel", "nope"], "valid channels"),
]


def _tree(root):
    """Every file with its size and time of change, and every folder (folders' own times
    change when a write check creates and removes a probe file, which leaves nothing)."""
    return {str(p.relative_to(root)): None if p.is_dir() else (p.stat().st_size,
                                                              p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(world, tmp_path, monkeypatch, capsys,
                                                         argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no saved IBM Quantum account
    monkeypatch.setenv("QMOE_CACHE_DIR", str(tmp_path / "default-cache"))
    for var in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(var, raising=False)
    argv = [a.format(**WORLD) for a in argv]
    if argv and argv[0] in ("ablation", "train", "sweep", "run") and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    if argv and argv[0] in ("ablation", "train", "sweep", "run"):
        argv.append("--no-progress")
    before = (_tree(world), _tree(tmp_path))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert message in err, err
    assert (_tree(world), _tree(tmp_path)) == before


def test_the_campaign_is_large_enough():
    commands = {argv[0] if argv else "" for argv, _ in CASES}
    assert len(CASES) >= 60
    assert {"ablation", "train", "evaluate", "sweep", "run", "jobs"} <= commands


def test_noise_levels_are_sorted_and_duplicates_dropped():
    """Taken as given, repeated or unordered levels made repeated rows and a zig-zag plot."""
    from qmoe_qiskit.experiments import SweepConfig

    assert SweepConfig(model="m", levels=(0.02, 0.0, 0.02, 0.01)).level_values() == (0.0, 0.01,
                                                                                     0.02)
    assert SweepConfig(model="m", noise="fake_manila",
                       scales=(4, 1, 1)).level_values() == (1.0, 4.0)
