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
