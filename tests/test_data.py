"""Datasets, splits, preprocessing and the IDX loaders (on small files the tests write)."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from qmoe_qiskit import data as data_module
from qmoe_qiskit.data import DataSpec, Preprocessor, load_dataset, load_idx_dataset, prepare, read_idx
from qmoe_qiskit.errors import ConfigError, DataError


def test_moons_repeat_with_the_seed_and_change_without_it():
    a, _ = load_dataset(DataSpec(seed=3))
    b, _ = load_dataset(DataSpec(seed=3))
    c, _ = load_dataset(DataSpec(seed=4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_split_is_stratified_disjoint_and_scaled_on_train_only():
    d = prepare(DataSpec(n_samples=500, seed=1))
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (300, 100, 100)
    for y in (d.y_train, d.y_val, d.y_test):
        assert abs(y.mean() - 0.5) < 0.02
    rows = {tuple(r) for r in d.x_train}
    assert not rows & {tuple(r) for r in d.x_test} and not rows & {tuple(r) for r in d.x_val}
    np.testing.assert_allclose(d.x_train.min(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(d.x_train.max(axis=0), np.pi, atol=1e-12)
    # Fitted on the test split, the test features would span exactly [0, π].
    fitted_on_test = np.allclose(d.x_test.min(axis=0), 0) and np.allclose(d.x_test.max(axis=0), np.pi)
    assert not fitted_on_test


def test_digits_pair_with_pca():
    d = prepare(DataSpec(dataset="digits", classes=(3, 8), n_features=4, n_samples=200))
    assert d.num_features == 4 and d.num_classes == 2
    assert set(np.unique(d.y_train)) == {0, 1}


def test_preprocessor_round_trips_through_a_dict():
    x = np.random.default_rng(0).normal(size=(50, 6))
    p = Preprocessor(3).fit(x)
    q = Preprocessor.from_dict(p.to_dict())
    np.testing.assert_allclose(q.transform(x), p.transform(x))


def test_bad_features_and_names():
    with pytest.raises(DataError, match="NaN or infinite values in 1 sample"):
        Preprocessor().fit(np.array([[0.0, 1.0], [np.inf, 2.0]]))
    with pytest.raises(ConfigError, match="unknown dataset 'iris'; valid datasets: 'moons'"):
        DataSpec(dataset="iris")
    with pytest.raises(DataError, match=r"classes \[11\] do not occur"):
        load_dataset(DataSpec(dataset="digits", classes=(0, 11)))


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_set(folder, n_train=12, n_test=6):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 3,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test) % 3,
    }
    checksums = {}
    for name, array in arrays.items():
        blob = gzip.compress(_idx_bytes(array))
        (folder / name).write_bytes(blob)
        checksums[name] = hashlib.md5(blob).hexdigest()
    return arrays, checksums


def test_idx_reader_and_loader(tmp_path):
    arrays, _ = _write_idx_set(tmp_path)
    images, labels = load_idx_dataset(tmp_path, "mnist", download=False)
    assert images.shape == (18, 28, 28) and labels.shape == (18,)
    np.testing.assert_array_equal(images[:12], arrays["train-images-idx3-ubyte.gz"])
    raw = tmp_path / "plain-labels"
    raw.write_bytes(_idx_bytes(np.arange(5)))
    np.testing.assert_array_equal(read_idx(raw), np.arange(5))


def test_mnist_dataset_through_prepare(tmp_path):
    _write_idx_set(tmp_path, n_train=60, n_test=30)
    d = prepare(DataSpec(dataset="mnist", data_dir=str(tmp_path), classes=(0, 2), n_features=3,
                         n_samples=40))
    assert d.num_features == 3 and d.num_classes == 2
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 40


def test_the_data_folder_holds_one_folder_per_dataset_or_the_files_themselves(tmp_path):
    from qmoe_qiskit.data import idx_folder

    (tmp_path / "mnist").mkdir()
    _write_idx_set(tmp_path / "mnist", n_train=60, n_test=30)
    assert idx_folder(tmp_path, "mnist") == tmp_path / "mnist"  # what --data-dir names
    assert idx_folder(tmp_path / "mnist", "mnist") == tmp_path / "mnist"  # the files themselves
    assert idx_folder(tmp_path, "fashion_mnist") == tmp_path / "fashion_mnist"  # downloads go here
    parent = prepare(DataSpec(dataset="mnist", data_dir=str(tmp_path), n_samples=40, seed=1))
    itself = prepare(DataSpec(dataset="mnist", data_dir=str(tmp_path / "mnist"), n_samples=40,
                              seed=1))
    np.testing.assert_array_equal(parent.x_test, itself.x_test)


def test_missing_file_names_folder_and_file(tmp_path):
    with pytest.raises(DataError, match=rf"train-images-idx3-ubyte.gz .*missing from {tmp_path}"):
        load_idx_dataset(tmp_path, "fashion_mnist", download=False)


def test_truncated_idx_file_is_detected(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(_idx_bytes(np.zeros((4, 28, 28)))[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_download_verifies_checksums(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _, checksums = _write_idx_set(mirror)
    monkeypatch.setitem(data_module.IDX_FILES, "mnist", checksums)
    target = tmp_path / "data"
    images, _ = load_idx_dataset(target, "mnist", mirrors=(mirror.as_uri() + "/",))
    assert images.shape[0] == 18 and (target / "t10k-images-idx3-ubyte.gz").exists()

    wrong = dict(checksums, **{"train-labels-idx1-ubyte.gz": "0" * 32})
    monkeypatch.setitem(data_module.IDX_FILES, "mnist", wrong)
    fresh = tmp_path / "fresh"
    with pytest.raises(DataError, match=rf"train-labels-idx1-ubyte.gz is missing from {fresh}.*checksum"):
        load_idx_dataset(fresh, "mnist", mirrors=(mirror.as_uri() + "/",))
    assert not (fresh / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in fresh.iterdir() if p.name.startswith("tmp")]


def test_a_failed_download_leaves_no_empty_folders_behind(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    unreachable = ((tmp_path / "no-mirror").as_uri() + "/",)  # every file: not found
    with pytest.raises(DataError, match="could not be downloaded"):
        load_idx_dataset(home / "data" / "mnist", "mnist", mirrors=unreachable)
    assert list(home.iterdir()) == []  # neither data/ nor data/mnist/ was left


def test_restore_rebuilds_the_same_splits_without_refitting():
    d = prepare(DataSpec(dataset="digits", classes=(1, 7), n_features=3, n_samples=150, seed=5))
    again = data_module.restore(d.provenance())
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, name), getattr(d, name))
    assert again.preprocessor is not d.preprocessor


def test_idx_files_are_read_once_per_process_and_again_when_replaced(tmp_path, monkeypatch):
    """60,000 images must not be read for every cell of a study: the IDX set is read once
    (then served read-only), a replaced file is read again, and each prepare() gets arrays of
    its own, equal to a fresh computation."""
    import dataclasses
    import os

    from qmoe_qiskit import data as data_module

    (tmp_path / "mnist").mkdir()
    _write_idx_set(tmp_path / "mnist", n_train=120, n_test=40)
    reads = []
    real_read = data_module.read_idx
    monkeypatch.setattr(data_module, "read_idx", lambda path: reads.append(path) or
                        real_read(path))
    monkeypatch.setattr(data_module, "_IDX_LOADED", {})
    monkeypatch.setattr(data_module, "_PREPARED", {})
    spec = DataSpec(dataset="mnist", n_samples=100, classes=(0, 1), n_features=3,
                    data_dir=str(tmp_path))
    first = prepare(spec)
    assert len(reads) == 4
    again = prepare(spec)
    other_seed = prepare(dataclasses.replace(spec, seed=1))
    assert len(reads) == 4  # neither the same split nor another seed reads the files again
    np.testing.assert_array_equal(first.x_train, again.x_train)
    again.x_train[:] = -1.0  # a caller's change stays its own
    np.testing.assert_array_equal(prepare(spec).x_train, first.x_train)
    fresh = data_module._prepare(dataclasses.replace(spec, seed=1), None)
    np.testing.assert_array_equal(other_seed.x_test, fresh.x_test)
    images, _ = load_idx_dataset(tmp_path / "mnist", "mnist", download=False)
    assert not images.flags.writeable
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    stat = labels.stat()
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # replaced
    prepare(spec)
    assert len(reads) == 8


# --------------------------------------------------------------------------- the real MNIST files
REAL_DATA = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "data"
real_mnist = pytest.mark.skipif(not data_module.idx_available(REAL_DATA / "mnist", "mnist"),
                                reason="no real MNIST files at ../shared/data/mnist")
# MNIST's published label counts, train + test (the data README lists both)
MNIST_COUNTS = np.array([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]) + \
    np.array([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


@real_mnist
def test_the_real_mnist_files_load_with_their_published_label_counts():
    x, y = load_idx_dataset(REAL_DATA / "mnist", "mnist", download=False)
    assert x.shape == (70000, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y, minlength=10), MNIST_COUNTS)
    d = prepare(DataSpec(dataset="mnist", data_dir=str(REAL_DATA), classes=(3, 8), n_samples=700,
                         n_features=4, val_fraction=1 / 7, test_fraction=1 / 7, seed=0))
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (500, 100, 100)
    assert d.x_train.shape[1] == 4 and set(np.unique(d.y_test)) == {0, 1}
    assert d.spec.label == "MNIST 3,8, PCA-4"


@real_mnist
@pytest.mark.parametrize("classes", [(3, 12), (-1, 8)])
def test_an_mnist_pair_with_a_digit_outside_0_to_9_is_refused(classes):
    with pytest.raises((DataError, ConfigError), match=r"do not occur; labels present: \[0, 1"):
        prepare(DataSpec(dataset="mnist", data_dir=str(REAL_DATA), classes=classes))
