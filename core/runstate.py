"""Where a run stands, in one place: its record, its lease, its submission and `squeue`.

`run_state` reads a run folder's `record.json`, its lease (`core.lease`: who trains it) and its
`job.json` (where `python -m experiments run` submitted it: executor, job id, the submitting
process for a local queue) and asks the one outside party there is, SLURM's `squeue`, about a
job; `experiments status`, the dispatcher (what to skip, what to queue) and the lease (whether
a holder is alive) all ask here. Standard library only: `status` loads no torch.

- done: a record says so (with why it is stale, if it is: `core.version`);
- running: a live lease; queued: a live submission with no lease yet;
- unknown: a lease or a SLURM job whose state cannot be known here (no `squeue` answer),
  never resubmitted;
- failed: a record says so; interrupted: a checkpoint and nothing alive; missing: nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.files import write_json
from core.version import staleness

JOB_FILE = "job.json"
SQUEUE_TIMEOUT_S = 20.0
LIVE_SLURM_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                     "REQUEUE_FED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}


# ----------------------------------------------------------------------------- processes and jobs


def hostname() -> str:
    return socket.gethostname()


def slurm_job_id() -> str | None:
    """This process's SLURM job id (array tasks as <array job>_<task>), None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def process_start(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot (Linux), to tell a recycled pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def slurm_job_state(job_id: str, timeout: float | None = None) -> str | None:
    """SLURM's state of a job: its state name while SLURM lists it, "" once SLURM says it is
    gone, None when that cannot be known (no squeue here, an error, a timeout)."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                             timeout=SQUEUE_TIMEOUT_S if timeout is None else timeout)
    except (subprocess.TimeoutExpired, OSError):
        return None
    if out.returncode != 0:
        return "" if "invalid job id" in out.stderr.lower() else None
    states = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return states[0] if states else ""


# ----------------------------------------------------------------------------- a run


@dataclass
class RunState:
    state: str  # done | failed | running | queued | unknown | interrupted | missing
    reason: str = ""
    job: dict[str, Any] = field(default_factory=dict)


def job_file(run_path: Path) -> Path:
    return run_path / JOB_FILE


def read_job(run_path: Path) -> dict[str, Any]:
    """The run's submission (`job.json`), {} without one or when it does not parse."""
    path = job_file(run_path)
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def job_liveness(job: dict[str, Any]) -> str | None:
    """'running' | 'queued' | 'unknown' for a submission that may still train the run, else None.

    SLURM jobs by `squeue` (with a timeout; an error or a timeout is 'unknown', never 'gone');
    local and inline submissions by their process on this host (the submitting process claims
    every cell it has queued, so a second submission does not start them too)."""
    if job.get("executor") == "slurm":
        state = slurm_job_state(str(job["job_id"]))
        if state is None:
            return "unknown"
        return None if state not in LIVE_SLURM_STATES else "running" if state == "RUNNING" else "queued"
    if job.get("executor") in ("local", "inline") and job.get("pid") and job.get("host") == hostname():
        if job.get("ended") or int(job["pid"]) == os.getpid():
            return None  # its turn came and went, or the claim is this very process's
        return "queued" if pid_alive(int(job["pid"])) else None
    return None


def write_job(run_path: Path, info: dict[str, Any]) -> None:
    """Say where the run was submitted (executor, job id, pid and host of a local claim, logs)."""
    write_json(job_file(run_path), info)


class RunFolder(Protocol):
    """What `run_state` reads of a run folder (`core.records.RunDir`, which sits above the lease
    and so above this module)."""

    path: Path
    checkpoint: Path
    lease: Path

    def read_record(self) -> dict[str, Any] | None: ...

    def lease_state(self) -> tuple[Any, str] | None: ...


def run_state(run_dir: RunFolder) -> RunState:
    """Where a run stands: its record, its lease (who trains it), its submission."""
    record = run_dir.read_record()
    job = read_job(run_dir.path)
    if record is not None and record.get("status") == "done":
        return RunState("done", staleness(record), job)
    lease = run_dir.lease_state()
    if lease is not None and lease[1] == "alive":
        return RunState("running", f"by {lease[0].describe()}", job)
    if lease is not None and lease[1] == "unknown":
        return RunState("unknown", f"lease held by {lease[0].describe()}, whose state cannot be known here; "
                                   f"not resubmitted (remove {run_dir.lease} if it is gone)", job)
    live = job_liveness(job)
    if live == "unknown":
        return RunState("unknown", f"SLURM job {job['job_id']}: squeue gave no answer; not resubmitted "
                                   f"(remove {job_file(run_dir.path)} to submit it anyway)", job)
    if live is not None:
        return RunState(live, f"{job['executor']} job {job['job_id']} {live}", job)
    if record is not None:
        return RunState("failed", str(record.get("error", "no reason recorded")), job)
    if run_dir.checkpoint.exists():
        where = f"; log: {job['stderr']}" if job.get("stderr") else ""
        return RunState("interrupted", f"checkpoint at hand, no live job{where}", job)
    if job:
        return RunState("missing", f"{job['executor']} job {job['job_id']} ended without a record; log: {job.get('stderr')}", job)
    return RunState("missing")
