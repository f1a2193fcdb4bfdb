"""Where a run stands (core/runstate.py): record, lease, submission and `squeue`, read in one place."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from core.lease import LEASE_FILE, Holder, Lease
from core.records import RunDir
from core.runstate import hostname, read_job, run_state, write_job


def _state(folder) -> tuple[str, str]:
    found = run_state(RunDir(folder))
    return found.state, found.reason


def test_each_state_from_the_files_of_a_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-squeue"))
    folder = tmp_path / "run"
    assert _state(folder) == ("missing", "")
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"")
    assert _state(folder)[0] == "interrupted"
    write_job(folder, {"executor": "slurm", "job_id": "77", "stderr": "log.err"})
    assert read_job(folder)["job_id"] == "77"
    state, reason = _state(folder)  # no squeue here: the job's fate cannot be known, never resubmitted
    assert state == "unknown" and "squeue gave no answer" in reason
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # a local queue claimed by a live process on this host
        write_job(folder, {"executor": "local", "job_id": "queued-in-1", "pid": sleeper.pid, "host": hostname()})
        assert _state(folder)[0] == "queued"
        with Lease.acquire(folder):  # our own lease: alive
            assert _state(folder)[0] == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _state(folder)[0] == "interrupted"  # the claimant is gone, the checkpoint stays
    (folder / "record.json").write_text(json.dumps({"status": "failed", "error": "loss is nan"}))
    assert _state(folder) == ("failed", "loss is nan")
    (folder / "record.json").write_text(json.dumps({"status": "done"}))
    assert _state(folder)[0] == "done"


def test_a_holder_on_another_host_without_squeue_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-squeue"))
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LEASE_FILE).write_text(json.dumps({"host": "elsewhere", "pid": os.getpid(), "started": "now",
                                                 "job_id": "12"}))
    state, reason = _state(folder)
    assert state == "unknown" and "cannot be known here" in reason and str(folder / LEASE_FILE) in reason
    assert Holder(**json.loads((folder / LEASE_FILE).read_text())).state() == "unknown"
