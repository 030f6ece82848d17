"""Faults injected into what holds paid work and results: the ledger, the cache, run folders,
concurrent processes. Nothing recorded may be lost, and every failure is one clear line."""

import json

import pytest

from qmoe_qiskit.errors import QMoEError
from qmoe_qiskit.jobs import Ledger, LedgerEntry


def _entry(job_id="job-1", status="submitted", **fields):
    return LedgerEntry(job_id=job_id, backend="ibm_brisbane", key="k" * 64, status=status,
                       submitted="2026-11-22T10:00:00+00:00", updated="2026-11-22T10:00:00+00:00",
                       local=False, **fields)


# ------------------------------------------------------------------ the ledger
def test_a_record_after_a_line_cut_by_a_crash_starts_on_a_fresh_line(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.record(_entry("job-1"))
    with open(ledger.path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"job_id": "job-2", "backend": "ibm_b"})[:20])  # cut, no newline
    ledger.record(_entry("job-3"))
    assert [e.job_id for e in ledger.entries()] == ["job-1", "job-3"]


@pytest.mark.parametrize("bad_line", [
    b"\xff\xfe not utf-8 at all",
    json.dumps({**_entry().__dict__, "job_id": None}).encode(),
    json.dumps({**_entry().__dict__, "bindings": "many"}).encode(),
    json.dumps([1, 2, 3]).encode(),
    b'"just a string"',
    b"{not json",
])
def test_unreadable_ledger_lines_are_reported_and_skipped(tmp_path, caplog, bad_line):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.record(_entry("job-1"))
    with open(ledger.path, "ab") as handle:
        handle.write(bad_line + b"\n")
    ledger.record(_entry("job-2"))
    assert [e.job_id for e in ledger.entries()] == ["job-1", "job-2"]
    assert "skipping unreadable ledger line 2" in caplog.text


def test_a_ledger_path_that_is_a_directory_is_one_clear_error(tmp_path):
    (tmp_path / "ledger.jsonl").mkdir()
    ledger = Ledger(tmp_path / "ledger.jsonl")
    for call in (ledger.entries, lambda: ledger.record(_entry())):
        with pytest.raises(QMoEError, match="is a directory") as info:
            call()
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------ paid work is never lost
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small paper-router model (sampler-read) on 200 Two Moons samples."""
    from qmoe_qiskit.data import DataSpec
    from qmoe_qiskit.experiments import TrainRun, run_experiment
    from qmoe_qiskit.models import ModelSpec
    from qmoe_qiskit.training import TrainConfig

    out = tmp_path_factory.mktemp("model") / "run"
    run_experiment(TrainRun(data=DataSpec(n_samples=200),
                            model=ModelSpec(router="quantum", ansatz="paper", num_layers=2),
                            train=TrainConfig(epochs=2)), out, progress=False)
    return out


@pytest.fixture
def no_submission(monkeypatch):
    """Fails the test if anything reaches the runtime."""
    from qmoe_qiskit.jobs import sampler as sampler_module

    def refuse(self, *args, **kwargs):
        raise AssertionError("a job was submitted")

    monkeypatch.setattr(sampler_module.ExecutorSampler, "run", refuse)


@pytest.mark.parametrize("make_bad, message", [
    (lambda root: root.write_text("a file, not a folder"), "is a file"),
    (lambda root: (root.parent / "file").write_text("x") or None, "is a file"),
    (lambda root: (root.mkdir(), (root / "ledger.jsonl").mkdir()), "is a directory"),
])
def test_an_unwritable_cache_or_ledger_is_refused_before_anything_is_submitted(
        trained, tmp_path, capsys, no_submission, make_bad, message):
    from qmoe_qiskit.cli import main

    root = tmp_path / "cache"
    make_bad(root)
    if (root.parent / "file").exists():
        root = root.parent / "file" / "cache"  # under a file
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["run", "--model", str(trained), "--backend", "fake_manila", "--limit", "4",
                 "--cache", str(root), "--no-progress", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qmoe run: error:") and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_read_only_cache_is_refused_before_anything_is_submitted(trained, tmp_path, capsys,
                                                                   no_submission, monkeypatch):
    """A read-only disk, simulated: this suite runs as root, which writes through chmod."""
    import errno
    import tempfile

    from qmoe_qiskit.cli import main

    root = tmp_path / "cache"
    root.mkdir()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(["run", "--model", str(trained), "--backend", "fake_manila", "--limit", "4",
                 "--cache", str(root), "--no-progress", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and err.count("\n") == 1


def test_a_job_interrupted_right_after_submission_is_found_again_not_resubmitted(tmp_path,
                                                                                 monkeypatch):
    """Ctrl-C (or a crash) between the service accepting a job and the ledger recording its id:
    the next run finds the job by the tag recorded before submission."""
    from qmoe_qiskit.circuits import paper_ansatz
    from qmoe_qiskit.jobs import ResultCache, RuntimeSampler, connect
    from qmoe_qiskit.jobs import sampler as sampler_module
    from qmoe_qiskit.jobs import service as service_module

    circuit = paper_ansatz(2, 1, num_outputs=2).circuit
    values = [[0.1, 0.2, 0.3, 0.4]]
    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")
    submitted = []
    original = sampler_module.RuntimeSampler._submit

    def submit_then_die(self, *args, **kwargs):
        job = original(self, *args, **kwargs)
        submitted.append(job)
        raise KeyboardInterrupt  # the service has the job; the ledger has no id for it yet

    monkeypatch.setattr(sampler_module.RuntimeSampler, "_submit", submit_then_die)
    remote = connect("fake_manila")
    with pytest.raises(KeyboardInterrupt):
        RuntimeSampler(remote, cache=cache, ledger=ledger).run([(circuit, values)])
    monkeypatch.setattr(sampler_module.RuntimeSampler, "_submit", original)
    [job] = submitted
    [entry] = ledger.entries()
    assert entry.status == "submitting" and entry.tag and not entry.job_id

    class Service:  # IBM Quantum as a later process sees it: the job, found by its tag
        def jobs(self, *, job_tags, backend_name, limit):
            return [job] if job_tags == [entry.tag] and backend_name == "fake_manila" else []

        def job(self, job_id):
            return job

    later = service_module.Connection(remote.backend, Service())  # a remote connection
    resumed = RuntimeSampler(later, cache=cache, ledger=ledger)
    resumed.run([(circuit, values)])
    assert resumed.stats()["jobs_submitted"] == 0 and resumed.stats()["jobs_fetched"] == 1
    [entry] = ledger.entries()
    assert entry.status == "done" and entry.job_id == job.job_id()


def test_the_python_api_checks_each_store_before_submitting(tmp_path, no_submission):
    from qmoe_qiskit.errors import StorageError
    from qmoe_qiskit.jobs import ResultCache, RuntimeSampler, connect

    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="is a file"):
        RuntimeSampler(connect("fake_manila"), cache=ResultCache(tmp_path / "file"),
                       ledger=Ledger(tmp_path / "ok" / "ledger.jsonl"))
    RuntimeSampler(connect("fake_manila"), cache=ResultCache(tmp_path / "file"),
                   plan_only=True)  # a plan writes nothing, so it needs no writable store


# ------------------------------------------------------------------ concurrent processes
def _run_shared(root: str, go, out) -> None:
    """One process of two running the same PUB on one cache, started together; submitting
    takes a second, so both look in the cache before either result can be there."""
    import time

    from qmoe_qiskit.circuits import paper_ansatz
    from qmoe_qiskit.jobs import ResultCache, RuntimeSampler, connect
    from qmoe_qiskit.jobs import sampler as sampler_module

    submit = sampler_module.RuntimeSampler._submit

    def slow_submit(self, *args, **kwargs):
        time.sleep(1.0)
        return submit(self, *args, **kwargs)

    sampler_module.RuntimeSampler._submit = slow_submit

    circuit = paper_ansatz(2, 2, num_outputs=4).circuit
    values = [[0.1 * i for i in range(circuit.num_parameters)]] * 3
    sampler = RuntimeSampler(connect("fake_manila"), cache=ResultCache(root),
                             ledger=Ledger(f"{root}/ledger.jsonl"))
    go.wait()
    counts = sampler.run([(circuit, values)]).result()[0].data.meas.get_counts(0)
    out.put((sampler.stats(), counts))


def _estimate_shared(root: str, go, out) -> None:
    """As :func:`_run_shared`, for an estimator PUB with ZNE (the runtime Estimator's job)."""
    import time

    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp

    from qmoe_qiskit.jobs import ResultCache, RuntimeSampler, connect
    from qmoe_qiskit.jobs import estimator as estimator_module

    submit = estimator_module.RuntimeEstimator._submit

    def slow_submit(self, *args, **kwargs):
        time.sleep(1.0)
        return submit(self, *args, **kwargs)

    estimator_module.RuntimeEstimator._submit = slow_submit
    theta = Parameter("t")
    circuit = QuantumCircuit(2, name="pair")
    circuit.ry(theta, 0)
    circuit.cx(0, 1)
    sampler = RuntimeSampler(connect("fake_manila"), cache=ResultCache(root),
                             ledger=Ledger(f"{root}/ledger.jsonl"), seed=1)
    estimator = estimator_module.RuntimeEstimator(
        sampler, estimator_module.Resilience(zne=True))
    go.wait()
    evs = estimator.run([(circuit, SparsePauliOp("ZZ"), [[0.3], [1.2]])]).result()[0].data.evs
    out.put((sampler.stats(), [float(v) for v in evs]))


@pytest.mark.parametrize("worker", [_run_shared, _estimate_shared],
                         ids=["sampler", "estimator"])
def test_two_processes_on_one_cache_submit_the_pub_once(tmp_path, worker):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=worker, args=(str(tmp_path / "c"), go, out))
               for _ in range(2)]
    for w in workers:
        w.start()
    go.set()
    (stats_a, counts_a), (stats_b, counts_b) = out.get(timeout=300), out.get(timeout=300)
    for w in workers:
        w.join(timeout=60)
    assert stats_a["jobs_submitted"] + stats_b["jobs_submitted"] == 1
    assert stats_a["cache_hits"] + stats_b["cache_hits"] == 1
    assert counts_a == counts_b  # the waiting process read the other's result
    assert [e.status for e in Ledger(tmp_path / "c" / "ledger.jsonl").entries()] == ["done"]


def test_a_live_processs_local_job_is_never_marked_lost(tmp_path):
    import dataclasses
    import socket
    import subprocess
    import sys

    import numpy as np

    from qmoe_qiskit.circuits import paper_ansatz
    from qmoe_qiskit.jobs import RuntimeSampler, connect, pub_key

    circuit = paper_ansatz(2, 1, num_outputs=2).circuit
    values = [[0.1, 0.2, 0.3, 0.4]]

    def run_beside(pid: int, ledger: Ledger) -> RuntimeSampler:
        """Run the PUB with a ledger that holds another process's local job for it."""
        sampler = RuntimeSampler(connect("fake_manila"), ledger=ledger)
        o = sampler.options
        key = pub_key(sampler.compile(circuit).isa, np.asarray(values), shots=o.shots,
                      backend="fake_manila", calibration=sampler.connection.calibration,
                      options=dataclasses.asdict(o))
        ledger.record(LedgerEntry(job_id="its-own-job", backend="fake_manila", key=key,
                                  status="submitted", submitted="t", updated="t", local=True,
                                  tag="qmoe-other", pid=pid, host=socket.gethostname()))
        sampler.run([(circuit, values)])
        return sampler

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sampler = run_beside(other.pid, Ledger(tmp_path / "a.jsonl"))
        states = {e.tag: e.status for e in sampler.ledger.entries()}
        assert states.pop("qmoe-other") == "submitted"  # still the other process's
        assert list(states.values()) == ["done"] and sampler.stats()["jobs_submitted"] == 1
    finally:
        other.kill()
        other.wait()
    sampler = run_beside(other.pid, Ledger(tmp_path / "b.jsonl"))  # that process has ended
    assert {e.tag: e.status for e in sampler.ledger.entries()}["qmoe-other"] == "lost"


def test_jobs_commands_show_a_submission_that_has_no_id_yet(tmp_path, capsys):
    from qmoe_qiskit.cli import main

    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.record(_entry(job_id="", status="submitting", tag="qmoe-0123abcd"))
    assert main(["jobs", "list", "--cache", str(tmp_path)]) == 0
    assert "qmoe-0123abcd" in capsys.readouterr().out
    assert main(["jobs", "status", "qmoe-0123abcd", "--cache", str(tmp_path)]) == 0
    assert "finds the job by its tag" in capsys.readouterr().out


# ------------------------------------------------------------------ run folders
def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "1", "--samples", "100"],
    ["run", "--backend", "fake_manila", "--limit", "3", "--shots", "16"],
    ["sweep", "--levels", "0", "--no-baseline"],
])
def test_an_existing_run_folder_is_never_overwritten_without_asking(trained, tmp_path, capsys,
                                                                     monkeypatch, argv):
    from qmoe_qiskit.cli import main

    monkeypatch.setenv("QMOE_CACHE_DIR", str(tmp_path / "cache"))
    before = _snapshot(trained)
    model = [] if argv[0] == "train" else ["--model", str(trained)]
    assert main([*argv, *model, "--out", str(trained), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"qmoe {argv[0]}: error:") and err.count("\n") == 1
    if argv[0] == "train":  # a folder of files: --overwrite would replace it
        assert "already holds" in err and "--overwrite" in err
    else:  # the model's own folder: refused even with --overwrite, and said so
        assert f"is or holds {trained}, which this command reads; choose another --out" in err
    assert _snapshot(trained) == before


def test_overwrite_replaces_a_folder_whole_but_never_one_holding_the_input(trained, tmp_path,
                                                                          capsys):
    from qmoe_qiskit.cli import main

    out = tmp_path / "sweep"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    assert main(["sweep", "--model", str(trained), "--levels", "0", "--no-baseline",
                 "--no-progress", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "stale.txt").exists() and (out / "results.json").exists()
    before = _snapshot(trained)
    assert main(["sweep", "--model", str(trained / "model.pt"), "--levels", "0",
                 "--no-baseline", "--no-progress", "--out", str(trained), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "is or holds" in err and "which this command reads" in err
    assert _snapshot(trained) == before


def _idx_folder(folder):
    import gzip
    import struct

    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, shape in (("train-images-idx3-ubyte.gz", (30, 28, 28)),
                        ("train-labels-idx1-ubyte.gz", (30,)),
                        ("t10k-images-idx3-ubyte.gz", (10, 28, 28)),
                        ("t10k-labels-idx1-ubyte.gz", (10,))):
        data = (rng.integers(0, 256, shape) if len(shape) == 3 else np.arange(shape[0]) % 2)
        header = struct.pack(">BBBB", 0, 0, 0x08, len(shape)) + struct.pack(
            f">{len(shape)}I", *shape)
        (folder / name).write_bytes(gzip.compress(header + data.astype(np.uint8).tobytes()))


@pytest.mark.parametrize("where", ["is", "inside", "holds"])
def test_out_never_touches_the_data_folder_the_cache_or_the_ledger(trained, tmp_path, capsys,
                                                                   where):
    from qmoe_qiskit.cli import main

    data = tmp_path / "data"
    _idx_folder(data / "mnist")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ledger.jsonl").write_text('{"job": "paid for"}\n')
    out = {"is": lambda f: f, "inside": lambda f: f / "run", "holds": lambda f: f.parent}[where]
    before = (_snapshot(data), _snapshot(cache))
    train = ["train", "--dataset", "mnist", "--data-dir", str(data), "--router", "linear",
             "--samples", "20", "--epochs", "1", "--no-progress", "--overwrite"]
    run = ["run", "--model", str(trained), "--backend", "fake_manila", "--limit", "2",
           "--shots", "16", "--cache", str(cache), "--no-progress", "--overwrite"]
    for argv, folder in ((train, data), (run, cache), (run, cache / "ledger.jsonl")):
        target = out(folder)
        if where == "holds" and folder.name == "ledger.jsonl":
            continue  # the cache folder: the case before
        assert main([*argv, "--out", str(target)]) == 2, (argv[0], target)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "which this command reads; choose another --out" in err
        assert (_snapshot(data), _snapshot(cache)) == before


@pytest.mark.parametrize("out, message", [
    ("", "empty"),
    ("afile", "is a file"),
    ("afile/sub", "afile is a file"),
])
def test_a_bad_out_is_one_line_before_any_work(trained, tmp_path, capsys, monkeypatch, out,
                                               message):
    from qmoe_qiskit.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    before = _snapshot(tmp_path)
    assert main(["train", "--epochs", "1", "--samples", "100", "--no-progress",
                 "--out", out]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert _snapshot(tmp_path) == before


def test_a_folder_that_appears_during_the_run_keeps_both(tmp_path, caplog):
    """Finished work is never lost: results go beside a folder that turned up meanwhile."""
    from dataclasses import dataclass

    from qmoe_qiskit.experiments.base import Outcome, run_experiment

    target = tmp_path / "out"

    @dataclass(frozen=True)
    class Intruder:
        label: str = "intruder"

        def __call__(self, *, progress=False):
            target.mkdir()
            (target / "theirs.txt").write_text("another run's")
            return 1

    class Experiment:
        command = "demo"

        def to_dict(self):
            return {}

        def plan(self):
            return [Intruder()]

        def aggregate(self, cells, results, seconds):
            return Outcome(results={"n": results[0]}, report="r", summary="s")

    _, path = run_experiment(Experiment(), target, progress=False)
    assert path == tmp_path / "out-1" and (path / "results.json").exists()
    assert (target / "theirs.txt").read_text() == "another run's"
    assert "out-1" in caplog.text


# ------------------------------------------------------------------ the result cache
@pytest.fixture
def cached_entry(tmp_path):
    """A cache holding one real result; returns (cache, ledger, circuit, values, entry path)."""
    from qmoe_qiskit.circuits import paper_ansatz
    from qmoe_qiskit.jobs import ResultCache, RuntimeSampler, connect

    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")
    circuit = paper_ansatz(2, 1, num_outputs=2).circuit
    values = [[0.1, 0.2, 0.3, 0.4]]
    RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger).run([(circuit, values)])
    [path] = list((cache.root / "results").rglob("*.json"))
    return cache, ledger, circuit, values, path


@pytest.mark.parametrize("tamper", [
    lambda e: e["meta"].update(job_id="someone-else"),   # metadata re-signed by hand
    lambda e: e.update(key="0" * 64),                     # another key's entry
    lambda e: e.update(payload=123),                      # not even a string
    lambda e: e.pop("sha256"),
])
def test_a_tampered_cache_entry_is_caught_removed_and_recomputed(cached_entry, tamper):
    from qmoe_qiskit.jobs import RuntimeSampler, connect

    cache, ledger, circuit, values, path = cached_entry
    entry = json.loads(path.read_text())
    tamper(entry)
    path.write_text(json.dumps(entry))
    again = RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger)
    again.run([(circuit, values)])
    assert again.stats()["cache_hits"] == 0 and cache.corrupt == [path.stem]
    assert json.loads(path.read_text())["meta"]["job_id"] == again.records[0].job_id


def test_an_unreadable_cache_entry_is_reported_and_left_alone(cached_entry, monkeypatch,
                                                              no_submission):
    from pathlib import Path

    from qmoe_qiskit.errors import StorageError
    from qmoe_qiskit.jobs import RuntimeSampler, connect

    cache, ledger, circuit, values, path = cached_entry
    original = Path.read_bytes

    def denied(self):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(StorageError, match="cannot be read \\(Permission denied\\)") as info:
        RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger).run(
            [(circuit, values)])
    assert "\n" not in str(info.value) and path.exists() and cache.corrupt == []


def test_entries_of_the_first_cache_format_are_still_read(cached_entry):
    import hashlib

    from qmoe_qiskit.jobs import RuntimeSampler, connect

    cache, ledger, circuit, values, path = cached_entry
    entry = json.loads(path.read_text())
    entry.update(version=1, sha256=hashlib.sha256(entry["payload"].encode()).hexdigest())
    path.write_text(json.dumps(entry))
    again = RuntimeSampler(connect("fake_manila"), cache=cache, ledger=ledger)
    again.run([(circuit, values)])
    assert again.stats()["cache_hits"] == 1


# ------------------------------------------------------------------ the IBM Quantum account
ACCOUNT_FILES = {
    "not JSON": '{"default-ibm-quantum-platform": {"channel": ',
    "wrong types": '{"default-ibm-quantum-platform": {"channel": "ibm_quantum_platform", '
                   '"token": 5, "instance": 7}}',
}


@pytest.mark.parametrize("content", ACCOUNT_FILES.values(), ids=list(ACCOUNT_FILES))
def test_a_saved_account_the_runtime_cannot_parse_is_named(tmp_path, monkeypatch, capsys,
                                                           trained, content):
    from qiskit_ibm_runtime.accounts import management

    from qmoe_qiskit.cli import main

    (tmp_path / ".qiskit").mkdir()
    (tmp_path / ".qiskit" / "qiskit-ibm.json").write_text(content)
    monkeypatch.setattr(management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE",
                        str(tmp_path / ".qiskit" / "qiskit-ibm.json"))  # read at import
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(var, raising=False)
    assert main(["run", "--model", str(trained), "--backend", "ibm_brisbane", "--no-progress",
                 "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert "saved IBM Quantum account" in err and "qiskit-ibm.json" in err
    assert "save_account" in err and "did not accept" not in err


def test_an_offline_machine_is_not_blamed_on_the_token(tmp_path, monkeypatch, capsys, trained):
    """The runtime reports a failed connection as 'check that you are using a valid API token'."""
    from qmoe_qiskit.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "a-token-that-is-never-checked")
    monkeypatch.setenv("QISKIT_IBM_INSTANCE",
                       "crn:v1:bluemix:public:quantum-computing:us-east:a/abc:def::")
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens: offline, for sure
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert main(["run", "--model", str(trained), "--backend", "ibm_brisbane", "--no-progress",
                 "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "cannot reach IBM Quantum" in err and "token" not in err.lower(), err
    assert err.count("\n") == 1


# ------------------------------------------------------------------ long work shows progress
def test_waiting_on_a_job_reports_its_state_and_time(tmp_path):
    from qmoe_qiskit.circuits import paper_ansatz
    from qmoe_qiskit.jobs import RuntimeSampler, connect

    seen = []
    circuit = paper_ansatz(2, 2, num_outputs=4).circuit
    sampler = RuntimeSampler(connect("fake_manila"), ledger=Ledger(tmp_path / "l.jsonl"),
                             on_wait=lambda what, state, s: seen.append((what, state, s)))
    sampler.run([(circuit, [[0.1] * circuit.num_parameters] * 4)])
    assert seen, "no progress while the job ran"
    assert {name for name, _, _ in seen} == {circuit.name}
    assert {state for _, state, _ in seen} <= {"INITIALIZING", "QUEUED", "RUNNING", "DONE"}
    assert seen[-1][1] == "DONE"  # reported to the end, however fast the job
    assert [s for _, _, s in seen] == sorted(s for _, _, s in seen)


def test_the_sweep_baseline_trains_with_its_own_bar(trained, tmp_path, capsys):
    from qmoe_qiskit.experiments import SweepConfig
    from qmoe_qiskit.experiments.sweep import ReferenceCell

    ReferenceCell(SweepConfig(model=str(trained)))(progress=True)
    assert "classical baseline" in capsys.readouterr().err


def test_an_unreadable_model_is_not_called_corrupt(trained, monkeypatch):
    """Permissions, simulated: this suite runs as root."""
    import builtins

    from qmoe_qiskit.errors import ModelFileError
    from qmoe_qiskit.models import load_model
    from qmoe_qiskit.models import moe as moe_module

    target = str(trained / "model.pt")

    def denied(path, *args, **kwargs):
        if str(path) == target:
            raise PermissionError(13, "Permission denied")
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(moe_module, "open", denied, raising=False)
    with pytest.raises(ModelFileError, match=r"cannot be read \(Permission denied\)") as info:
        load_model(trained)
    assert "corrupt" not in str(info.value)


def test_a_recorded_remote_job_is_not_resubmitted_while_ibm_quantum_is_unreachable(
        tmp_path, no_submission):
    """Offline is not 'the job is gone': marking it lost would pay for it twice later."""
    import requests

    from qmoe_qiskit.circuits import paper_ansatz
    from qmoe_qiskit.errors import ServiceUnreachable
    from qmoe_qiskit.jobs import ResultCache, RuntimeSampler, connect
    from qmoe_qiskit.jobs import service as service_module

    circuit = paper_ansatz(2, 1, num_outputs=2).circuit
    values = [[0.1, 0.2, 0.3, 0.4]]
    cache, ledger = ResultCache(tmp_path / "c"), Ledger(tmp_path / "c" / "ledger.jsonl")

    class Offline:
        def job(self, job_id):
            raise requests.exceptions.ConnectionError("Failed to resolve 'quantum.cloud.ibm.com'")

    remote = service_module.Connection(connect("fake_manila").backend, Offline())
    sampler = RuntimeSampler(remote, cache=cache, ledger=ledger, plan_only=True)
    sampler.run([(circuit, values)])  # the PUB's key, as a real run computes it
    import dataclasses

    ledger.record(dataclasses.replace(_entry("d-remote-1"), key=sampler.records[0].key,
                                      backend="fake_manila"))
    with pytest.raises(ServiceUnreachable, match="cannot reach IBM Quantum"):
        RuntimeSampler(remote, cache=cache, ledger=ledger).run([(circuit, values)])
    assert [e.status for e in ledger.entries()] == ["submitted"]


# ------------------------------------------------------------------ full disks
def _disk_full(*args, **kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_under_out_is_one_line_and_the_finished_cells_are_reused(
        trained, tmp_path, capsys, monkeypatch):
    from qmoe_qiskit.cli import main
    from qmoe_qiskit.experiments import sweep

    calls = []
    real_call = sweep.LevelCell.__call__

    def counted(self, *, progress=False):
        calls.append(self.level)
        return real_call(self, progress=progress)

    monkeypatch.setattr(sweep.LevelCell, "__call__", counted)
    argv = ["sweep", "--model", str(trained), "--levels", "0,0.05", "--no-baseline",
            "--no-progress", "--out", str(tmp_path / "sweep")]
    with monkeypatch.context() as m:
        m.setattr("qmoe_qiskit.experiments.base._write_json", _disk_full)
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot be written (the disk is full)" in err, err
    assert "the 3 of 3 finished cells kept in" in err and "free space and run it again" in err
    assert not (tmp_path / "sweep").exists() and calls == [0.0, 0.05]
    calls.clear()
    assert main(argv) == 0  # space again: the same command reuses every finished cell
    assert calls == [] and (tmp_path / "sweep" / "results.json").is_file()


def test_a_full_disk_under_the_cell_store_warns_once_and_the_run_finishes(
        trained, tmp_path, caplog, monkeypatch):
    import logging

    from qmoe_qiskit.experiments import SweepConfig, run_experiment

    monkeypatch.setattr("pathlib.Path.write_bytes", _disk_full)  # only the store writes bytes
    with caplog.at_level(logging.WARNING):
        _, folder = run_experiment(SweepConfig(model=str(trained), levels=(0.0, 0.05),
                                               baseline=False), tmp_path / "sweep",
                                   progress=False)
    assert (folder / "results.json").is_file()
    assert caplog.text.count("cannot be kept for a resume") == 1 and "the disk is full" in \
        caplog.text
    assert not list(tmp_path.glob(".sweep.cells/*"))  # no partial entry left behind
