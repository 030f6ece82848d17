"""Datasets, splits and preprocessing.

Every dataset comes back as features ``X`` and integer labels ``y``. :func:`prepare` makes the
stratified train / validation / test split and fits the preprocessing (optional PCA, then
min-max scaling into ``[0, π]``) on the training split only, so nothing is ever scored on data
that shaped the model.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import shutil
import struct
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits, make_circles, make_moons
from sklearn.model_selection import train_test_split

from .errors import ConfigError, DataError, check_seed, choices
from .names import DATASETS
from .resources import check_memory

__all__ = [
    "DATASETS",
    "DataSpec",
    "PreparedData",
    "Preprocessor",
    "idx_folder",
    "load_dataset",
    "load_idx_dataset",
    "idx_available",
    "prepare",
    "read_idx",
    "restore",
]

GENERATED = ("moons", "circles")  # drawn by scikit-learn, as many samples as asked for
# Peak bytes per generated sample through loading, splitting and scaling (NumPy's traced peak
# measured about 90; rounded up for torch's copies).
BYTES_PER_GENERATED_SAMPLE = 256

# Standard IDX file names with their published MD5 checksums, and the mirrors to fetch them from.
IDX_FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
IDX_MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}


@dataclass(frozen=True)
class DataSpec:
    """What to load and how to split it; stored with trained models so the split can be rebuilt."""

    dataset: str = "moons"
    n_samples: int = 1000
    noise: float = 0.1
    classes: tuple[int, ...] | None = None  # digits / MNIST: keep these labels (e.g. (0, 1))
    n_features: int | None = None  # PCA to this many features (None: keep all)
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    data_dir: str | None = None  # the data folder: holds mnist/, fashion_mnist/ (idx_folder)

    @property
    def label(self) -> str:
        """The data in a few words, for figure titles and reports: ``Two Moons (noise 0.1)``,
        ``scikit-learn digits 0,1, PCA-4 (8×8 stand-in, not MNIST)``, ``MNIST 3,8, PCA-8``."""
        names = {"moons": "Two Moons", "circles": "circles", "digits": "scikit-learn digits",
                 "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
        text = names[self.dataset]
        if self.dataset in GENERATED:
            return f"{text} (noise {self.noise:g})"
        if self.classes is not None:
            text += " " + ",".join(map(str, self.classes))
        if self.n_features is not None:
            text += f", PCA-{self.n_features}"
        return text + (" (8×8 stand-in, not MNIST)" if self.dataset == "digits" else "")

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; valid datasets: {choices(DATASETS)}")
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) \
                or self.n_samples < 10:
            raise ConfigError(f"n_samples must be an integer >= 10, got {self.n_samples!r}")
        if not (isinstance(self.noise, (int, float)) and math.isfinite(self.noise)
                and self.noise >= 0):
            raise ConfigError(f"noise must be a finite number >= 0, got {self.noise!r}")
        check_seed(self.seed)
        if self.dataset in GENERATED:
            check_memory(self.n_samples * BYTES_PER_GENERATED_SAMPLE,
                         f"{self.n_samples:,} {self.dataset} samples", "use fewer samples")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ConfigError("val_fraction and test_fraction must be in (0, 1) and sum below 1")
        if self.n_features is not None and self.n_features < 1:
            raise ConfigError(f"n_features must be >= 1, got {self.n_features}")
        if self.classes is not None:
            if self.dataset in GENERATED:
                raise ConfigError(f"classes apply only to {choices(set(DATASETS) - set(GENERATED))}"
                                  f"; {self.dataset} has two classes, always both used")
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
            if len(set(self.classes)) < 2:
                raise ConfigError(f"give at least 2 classes to tell apart, got {self.classes}")
        if self.data_dir is not None and not str(self.data_dir).strip():
            raise ConfigError("data_dir is empty; give the folder of the IDX files")

    def input_files(self) -> tuple[Path, ...]:
        """The files this data is read from (the IDX files of MNIST or Fashion-MNIST; none
        for the generated and scikit-learn datasets)."""
        if self.dataset in IDX_FILES and self.data_dir is not None:
            return idx_files(self.data_dir, self.dataset)
        return ()

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["classes"] = list(self.classes) if self.classes is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataSpec":
        return cls(**data)


# --------------------------------------------------------------------------- loading
def load_dataset(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Raw features and labels for ``spec`` (labels re-indexed to 0..C-1)."""
    if spec.dataset == "moons":
        x, y = make_moons(n_samples=spec.n_samples, noise=spec.noise, random_state=spec.seed)
    elif spec.dataset == "circles":
        x, y = make_circles(n_samples=spec.n_samples, noise=spec.noise, factor=0.5,
                            random_state=spec.seed)
    elif spec.dataset == "digits":
        bunch = load_digits()
        x, y = _subsample(*_select(bunch.data, bunch.target, spec.classes), spec)
    else:
        if spec.data_dir is None:
            raise DataError(f"dataset {spec.dataset!r} needs data_dir (the data folder, which "
                            f"holds {spec.dataset}/ with its IDX files)")
        x, y = load_idx_dataset(idx_folder(spec.data_dir, spec.dataset), spec.dataset)
        x, y = _subsample(*_select(x.reshape(len(x), -1), y, spec.classes), spec)
    return np.asarray(x, dtype=float), _reindex(np.asarray(y))


def _select(x, y, classes):
    if classes is None:
        return x, y
    keep = np.isin(y, classes)
    missing = sorted(set(classes) - set(np.unique(y).tolist()))
    if missing:
        raise DataError(f"classes {missing} do not occur; labels present: {sorted(set(y.tolist()))}")
    return x[keep], y[keep]


def _subsample(x, y, spec: DataSpec):
    if len(x) <= spec.n_samples:
        return x, y
    x, _, y, _ = train_test_split(x, y, train_size=spec.n_samples, stratify=y,
                                  random_state=spec.seed)
    return x, y


def _reindex(y: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.unique(y), y)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into an array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except gzip.BadGzipFile:
        raise DataError(f"{path} is not a gzip file; replace it with the published one "
                        f"(or its unzipped form without .gz)") from None
    except EOFError:
        raise DataError(f"{path} is cut short (the gzip stream ends early); download it "
                        f"again") from None
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc.strerror or exc}") from None
    if len(raw) < 4:
        raise DataError(f"{path} is not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} has a broken header: {ndim} dimensions need {header} bytes, "
                        f"the file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path} is truncated: expected {expected} values for shape {shape}, "
                        f"found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_dataset(folder: str | Path, name: str, *, download: bool = True,
                     mirrors: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` and labels of MNIST or Fashion-MNIST (train and test files pooled).

    Files are looked up in ``folder`` by their standard names, gzipped or not. A missing file is
    downloaded from ``mirrors`` (default: the official ones) and checked against its published
    MD5; if that fails, the error names the folder and the missing file.
    """
    if name not in IDX_FILES:
        raise ConfigError(f"unknown IDX dataset {name!r}; valid: {choices(IDX_FILES)}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"the data folder {folder} is a file, not a folder")
    paths = {}
    for filename, md5 in IDX_FILES[name].items():
        path = _find_idx(folder, filename)
        if path is None:
            if not download:
                raise DataError(f"{filename} (or its unzipped form) is missing from {folder}")
            path = _download(folder, filename, md5, mirrors or IDX_MIRRORS[name])
        paths[filename.split("-idx")[0]] = path
    key = (name, _files_stamp(paths.values()))
    if key not in _IDX_LOADED:
        _IDX_LOADED.clear()  # one dataset at a time: 70,000 MNIST images are 55 MB
        _IDX_LOADED[key] = _read_idx_set(folder, paths)
    return _IDX_LOADED[key]


# Read once per process: the images and labels of the last IDX set loaded, read-only, keyed
# on each file's path, inode, size and times (a replaced or rewritten file is read again).
_IDX_LOADED: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _files_stamp(paths) -> tuple:
    stamps = []
    for path in paths:
        st = Path(path).stat()  # ctime and inode change with any write, even one whose
        # modification time was set back
        stamps.append((str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns,
                       st.st_ctime_ns))
    return tuple(stamps)


def _read_idx_set(folder: Path, paths: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    arrays = {part: read_idx(path) for part, path in paths.items()}
    for part in ("train", "t10k"):
        images, labels = arrays[f"{part}-images"], arrays[f"{part}-labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise DataError(f"{folder}: {part} images must be N x 28 x 28 and labels N long, "
                            f"found {' x '.join(map(str, images.shape))} and "
                            f"{' x '.join(map(str, labels.shape))}")
        if len(images) != len(labels):
            raise DataError(f"{folder}: {len(images)} {part} images but {len(labels)} labels")
    images = np.concatenate([arrays["train-images"], arrays["t10k-images"]])
    labels = np.concatenate([arrays["train-labels"], arrays["t10k-labels"]])
    images.flags.writeable = labels.flags.writeable = False  # shared by every later call
    return images, labels


def idx_folder(data_dir: str | Path, name: str) -> Path:
    """Where the IDX files of ``name`` are under ``data_dir``, the data folder every command's
    ``--data-dir`` names: ``data_dir/name/`` (``../shared/data/mnist/``), or ``data_dir``
    itself where it holds the files directly. Missing files go to ``data_dir/name/``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir() and data_dir.exists():
        return data_dir  # a file: load_idx_dataset says so
    if not idx_available(data_dir / name, name) and idx_available(data_dir, name):
        return data_dir
    return data_dir / name


def idx_files(data_dir: str | Path, name: str) -> tuple[Path, ...]:
    """The IDX files of ``name`` found under ``data_dir`` (as :func:`idx_folder` reads it):
    what a result computed from them depends on."""
    folder = idx_folder(data_dir, name)
    return tuple(p for p in (_find_idx(folder, f) for f in IDX_FILES[name]) if p is not None)


def idx_available(folder: str | Path, name: str) -> bool:
    """Whether ``folder`` holds every IDX file of ``name`` (gzipped or not); never downloads."""
    return all(_find_idx(Path(folder), f) is not None for f in IDX_FILES[name])


def _find_idx(folder: Path, filename: str) -> Path | None:
    for candidate in (folder / filename, folder / filename.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _download(folder: Path, filename: str, md5: str, mirrors: tuple[str, ...]) -> Path:
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for base in mirrors:
        url = base + filename
        tmp = None
        try:
            with urllib.request.urlopen(url, timeout=30) as response, \
                    tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
                shutil.copyfileobj(response, tmp)
            got = hashlib.md5(Path(tmp.name).read_bytes()).hexdigest()
            if got != md5:
                Path(tmp.name).unlink()
                errors.append(f"{url}: checksum {got} != published {md5}")
                continue
            target = folder / filename
            Path(tmp.name).replace(target)
            return target
        except OSError as exc:
            if tmp is not None:
                Path(tmp.name).unlink(missing_ok=True)
            errors.append(f"{url}: {exc}")
    for path in created:  # leave no empty folders behind (the deepest first)
        try:
            path.rmdir()
        except OSError:
            break
    raise DataError(f"{filename} is missing from {folder} and could not be downloaded "
                    f"({'; '.join(errors)}); the data folder (--data-dir) must hold "
                    f"{folder.name}/ with its four IDX files, or the files themselves")


# --------------------------------------------------------------------------- preprocessing
@dataclass
class Preprocessor:
    """Optional PCA to ``n_components``, then min-max scaling of each feature into ``[0, π]``.

    Fitted on training data only; data outside the training range maps outside ``[0, π]``.
    """

    n_components: int | None = None
    mean: np.ndarray | None = None
    components: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> "Preprocessor":
        x = check_features(x)
        if self.n_components is not None:
            if self.n_components > min(x.shape):
                raise ConfigError(f"PCA to {self.n_components} features needs at least that many "
                                  f"samples and features; data has shape {x.shape}")
            self.mean = x.mean(axis=0)
            _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
            self.components = vt[: self.n_components]
            x = (x - self.mean) @ self.components.T
        self.low, self.high = x.min(axis=0), x.max(axis=0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.low is None:
            raise RuntimeError("Preprocessor.transform called before fit")
        x = check_features(x)
        if self.components is not None:
            x = (x - self.mean) @ self.components.T
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        return np.pi * (x - self.low) / span

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessor":
        return cls(**{k: (np.asarray(v) if isinstance(v, list) else v) for k, v in data.items()})


def check_features(x) -> np.ndarray:
    """``x`` as a 2-D float array; NaN or infinite values are an error."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise DataError(f"features must be a 2-D array (samples, features), got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(f"features contain NaN or infinite values in {len(rows)} sample(s), "
                        f"first at row {rows[0]}")
    return x


@dataclass
class PreparedData:
    """Preprocessed splits plus what produced them."""

    spec: DataSpec
    preprocessor: Preprocessor
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = field(init=False)

    def __post_init__(self):
        self.num_classes = int(max(self.y_train.max(), self.y_val.max(), self.y_test.max()) + 1)

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]

    def copy(self) -> "PreparedData":
        """The same splits in arrays of their own."""
        return PreparedData(self.spec, self.preprocessor, self.x_train.copy(),
                            self.y_train.copy(), self.x_val.copy(), self.y_val.copy(),
                            self.x_test.copy(), self.y_test.copy())

    def provenance(self) -> dict[str, Any]:
        """What rebuilds these splits exactly: stored with a trained model, read by :func:`restore`."""
        return {"data": self.spec.to_dict(), "preprocessor": self.preprocessor.to_dict()}


def prepare(spec: DataSpec, preprocessor: Preprocessor | None = None) -> PreparedData:
    """Load, split (stratified, seeded) and preprocess ``spec``.

    With ``preprocessor`` given (e.g. from a saved model) it is applied as is, not refitted.
    MNIST and Fashion-MNIST splits are kept per process (for each spec: its seed, classes,
    sizes and PCA; a replaced IDX file is read again), and each call gets its own copies.
    """
    if preprocessor is None and spec.dataset in IDX_FILES and spec.data_dir is not None:
        stamp = _files_stamp(idx_files(spec.data_dir, spec.dataset))
        kept = _PREPARED.get((spec, stamp))
        if kept is None:
            kept = _prepare(spec, None)
            _PREPARED[(spec, stamp)] = kept
            while len(_PREPARED) > MAX_PREPARED:
                del _PREPARED[next(iter(_PREPARED))]
        return kept.copy()
    return _prepare(spec, preprocessor)


MAX_PREPARED = 64  # splits of the IDX datasets kept per process (a reproduce run needs ~30)
_PREPARED: dict[tuple, PreparedData] = {}


def _prepare(spec: DataSpec, preprocessor: Preprocessor | None) -> PreparedData:
    x, y = load_dataset(spec)
    x = check_features(x)
    holdout = spec.val_fraction + spec.test_fraction
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=holdout, stratify=y, random_state=spec.seed)
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=spec.test_fraction / holdout, stratify=y_rest,
        random_state=spec.seed)
    if preprocessor is None:
        preprocessor = Preprocessor(spec.n_features).fit(x_train)
    return PreparedData(spec, preprocessor, preprocessor.transform(x_train), y_train,
                        preprocessor.transform(x_val), y_val, preprocessor.transform(x_test), y_test)


def restore(provenance: dict[str, Any]) -> PreparedData:
    """The splits a model was trained on, from :meth:`PreparedData.provenance` (not refitted)."""
    return prepare(DataSpec.from_dict(provenance["data"]),
                   Preprocessor.from_dict(provenance["preprocessor"]))
