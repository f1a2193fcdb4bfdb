"""Run-folder leases: one trainer per folder, taken over only from a holder known to be dead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from core import runstate
from core.engine import run
from core.lease import LEASE_FILE, Holder, Lease, LeaseHeld, read_holder


def _write_lease(folder: Path, holder: Holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LEASE_FILE).write_text(json.dumps(asdict(holder)))


def _fake_squeue(tmp_path: Path, monkeypatch, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text("#!/bin/sh\n" + script + "\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_one_holder_at_a_time_and_release_only_ours(tmp_path):
    folder = tmp_path / "run"
    with Lease.acquire(folder) as held:
        assert read_holder(folder) == held.holder and held.holder.pid == os.getpid()
        with pytest.raises(LeaseHeld, match=f"pid {os.getpid()}") as info:
            Lease.acquire(folder)  # this very process, alive: held
        assert info.value.state == "alive"
    assert not (folder / LEASE_FILE).exists()
    stolen = Lease.acquire(folder)
    other = Holder("elsewhere", 1, "then")
    _write_lease(folder, other)  # replaced behind our back: releasing must not delete theirs
    stolen.release()
    assert read_holder(folder) == other


def test_a_dead_or_recycled_pid_on_this_host_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lease(folder, Holder(runstate.hostname(), dead.pid, "earlier"))
    with Lease.acquire(folder) as taken:
        assert read_holder(folder) == taken.holder
    assert "took over the lease of pid" in capsys.readouterr().out
    # our own pid, but a process started at another time: a recycled pid, not the holder
    me = Holder.me()
    _write_lease(folder, replace(me, pid=os.getpid(), process_start="1", started="long ago"))
    with Lease.acquire(folder):
        pass


def test_another_host_without_slurm_is_unknown_and_never_taken_over(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no squeue
    _write_lease(folder, Holder("node-17", 4242, "earlier"))
    with pytest.raises(LeaseHeld, match=f"unknown.*remove {folder / LEASE_FILE}"):
        Lease.acquire(folder)
    (folder / LEASE_FILE).write_text("{not json")  # damaged: unknown as well
    with pytest.raises(LeaseHeld, match="unknown"):
        Lease.acquire(folder)


@pytest.mark.parametrize("script, state", [
    ("echo RUNNING", "alive"),
    ("echo PENDING", "alive"),
    ("exit 0", "dead"),  # squeue answered and no longer lists it
    ("echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", "dead"),
    ("echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1", "unknown"),
    ("sleep 5", "unknown"),  # past the timeout
])
def test_a_slurm_holder_on_another_host_is_judged_by_squeue(tmp_path, monkeypatch, script, state):
    _fake_squeue(tmp_path, monkeypatch, script)
    monkeypatch.setattr(runstate, "SQUEUE_TIMEOUT_S", 0.5)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    folder = tmp_path / "run"
    _write_lease(folder, Holder("node-17", 4242, "earlier", job_id="991"))
    if state == "dead":
        Lease.acquire(folder).release()
    else:
        with pytest.raises(LeaseHeld) as info:
            Lease.acquire(folder)
        assert info.value.state == state and "SLURM job 991" in str(info.value)


def test_a_requeued_job_takes_over_its_own_earlier_lease(tmp_path, monkeypatch):
    _fake_squeue(tmp_path, monkeypatch, "echo RUNNING")  # the job is running: it is us, requeued
    monkeypatch.setenv("SLURM_JOB_ID", "991")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    folder = tmp_path / "run"
    _write_lease(folder, Holder("node-17", 4242, "earlier", job_id="991"))
    with Lease.acquire(folder) as taken:
        assert taken.holder.job_id == "991"


def test_the_engine_does_not_train_a_held_folder(tiny, capsys):
    cfg = tiny("train.epochs=1")
    from core.records import RunDir

    run_dir = RunDir.for_config(cfg)
    _write_lease(run_dir.path, Holder("node-17", 4242, "earlier", job_id=None))
    outcome = run(cfg)
    assert outcome.status == "held" and "pid 4242 on node-17" in outcome.record["error"]
    assert not run_dir.log.exists() and not run_dir.record.exists()
    assert capsys.readouterr().out.count("\n") == 1  # one line


# ----------------------------------------------------------------------------- real processes


def _core_run(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, S2H_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "core", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _losses(run_dir) -> list[float]:
    return [entry["train_loss"] for entry in run_dir.read_log()]


def test_a_second_process_reports_the_holder_and_the_first_finishes_alone(tiny, tiny_args):
    """Two `python -m core run` of one config: the second finds the first's lease (the first is
    frozen with SIGSTOP, so the overlap does not depend on timing), says who holds it in one line,
    exits 3 and touches nothing; the first then ends as one uninterrupted run does."""
    args = tiny_args("train.epochs=3")
    cfg = tiny("train.epochs=3")
    from core.records import RunDir

    run_dir = RunDir.for_config(cfg)
    first = _core_run(args)
    _wait_for(run_dir.lease, first)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = _core_run(args)
        out, _ = second.communicate(timeout=300)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 3, out
    held = [line for line in out.splitlines() if "being trained by" in line]
    assert len(held) == 1 and f"pid {first.pid} on" in held[0] and "alive" in held[0]
    assert first.wait(timeout=600) == 0, first.communicate()[0]
    assert not run_dir.lease.exists()
    reference = run(tiny("train.epochs=3", f"output_root={run_dir.path.parent.parent.parent / 'reference'}"))
    assert _losses(run_dir) == _losses(reference.run_dir) and len(run_dir.read_log()) == 3
    assert run_dir.read_record()["metrics"]["top1"] == reference.record["metrics"]["top1"]


def test_two_processes_started_together_train_the_run_once(tiny, tiny_args):
    args = tiny_args("train.epochs=2")
    from core.records import RunDir

    run_dir = RunDir.for_config(tiny("train.epochs=2"))
    procs = [_core_run(args) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 3]), outs  # the other found the lease (3) or the finished record (0)
    trained = [out for out in outs if ": done: top1" in out]
    assert len(trained) == 1, outs
    assert [e["epoch"] for e in run_dir.read_log()] == [1, 2]


def test_a_killed_holders_lease_is_taken_over_and_the_run_resumes(tiny, tiny_args):
    args = tiny_args("train.epochs=3")
    cfg = tiny("train.epochs=3")
    from core.records import RunDir

    run_dir = RunDir.for_config(cfg)
    first = _core_run(args)
    _wait_for(run_dir.checkpoint, first)  # after its first epoch
    first.kill()
    first.wait()
    assert run_dir.lease.exists()  # SIGKILL: no chance to release it
    second = _core_run(args)
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out
    assert f"took over the lease of pid {first.pid}" in out and "resuming at epoch" in out
    reference = run(tiny("train.epochs=3", f"output_root={run_dir.path.parent.parent.parent / 'reference'}"))
    assert _losses(run_dir) == _losses(reference.run_dir)
