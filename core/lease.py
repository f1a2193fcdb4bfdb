"""Who trains a run folder: an exclusive lease, created atomically, taken over only from the dead.

The engine holds `lease.json` in the run folder while it trains (`RunDir.lease`). The file
appears whole and only if there is none (written privately, then hard-linked into place, which
fails when the name exists), so of two processes asking for one run at once exactly one gets
it; the other is told, in one line, who holds it and trains nothing. It holds the holder's
host, pid (with the process's start time, so a recycled pid is not mistaken for the holder)
and SLURM job id, and it is removed when the holder ends, however it ends short of SIGKILL.

A lease left behind (SIGKILL, a node that died) is taken over when its holder is known dead:
- on this host: its pid is gone, or now belongs to another process;
- a SLURM job: `squeue` answered and no longer lists it; or the job is our own, requeued
  (same job id, a new incarnation of it);
- anything else (another host without SLURM, `squeue` failing or timing out) is `unknown`,
  and an unknown holder is never taken over: two trainings of one folder would corrupt it,
  while a wrongly kept lease costs one command (`rm lease.json`, named in the message).
Takeovers themselves go through a second marker file created the same way, so two processes
finding one dead holder do not both take it.

Standard library only: `experiments status` reads leases without loading torch. Whether a
process or a SLURM job is alive is `core.runstate`'s to say (the pid, `squeue`), as is where a
run stands as a whole (record, lease, submission).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import SuiteError
from core.runstate import LIVE_SLURM_STATES, hostname, pid_alive, process_start, slurm_job_id, slurm_job_state

LEASE_FILE = "lease.json"
TAKEOVER_STALE_S = 60.0  # a takeover marker older than this was left by a process that died mid-takeover


class LeaseHeld(SuiteError):
    """Another process trains this run (or may: its state is unknown)."""

    def __init__(self, folder: Path, holder: "Holder", state: str) -> None:
        self.holder, self.state = holder, state
        hint = "" if state == "alive" else f"; if it is gone, remove {folder / LEASE_FILE}"
        super().__init__(f"{folder}: being trained by {holder.describe()} ({state}){hint}; not training it here")


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: str
    job_id: str | None = None
    process_start: str | None = None

    @classmethod
    def me(cls) -> "Holder":
        pid = os.getpid()
        return cls(hostname(), pid, datetime.now(timezone.utc).isoformat(timespec="seconds"), slurm_job_id(),
                   process_start(pid))

    def describe(self) -> str:
        job = f", SLURM job {self.job_id}" if self.job_id else ""
        return f"pid {self.pid} on {self.host}{job}, since {self.started}"

    def state(self) -> str:
        """'alive' | 'dead' | 'unknown' (see the module docstring)."""
        if self.pid < 0:
            return "unknown"  # a damaged lease
        mine = slurm_job_id()
        if self.job_id and mine == self.job_id and (self.host, self.pid) != (hostname(), os.getpid()):
            return "dead"  # an earlier incarnation of this very job (requeued)
        if self.host == hostname():
            if not pid_alive(self.pid):
                return "dead"
            start = process_start(self.pid)
            return "dead" if start is not None and self.process_start is not None and start != self.process_start else "alive"
        if self.job_id:
            state = slurm_job_state(self.job_id)
            if state is None:
                return "unknown"
            return "alive" if state in LIVE_SLURM_STATES else "dead"
        return "unknown"


def read_holder(folder: Path) -> Holder | None:
    """The lease's holder, None when there is no lease (or it is being replaced this instant)."""
    try:
        data = json.loads((folder / LEASE_FILE).read_text())
        return Holder(**data)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
        # A lease appears whole (see `_create`): one that does not parse was damaged afterwards,
        # and its holder cannot be known.
        return Holder(host="?", pid=-1, started="? (lease.json does not parse)")


def _create(path: Path, holder: Holder) -> bool:
    """Create `path` holding `holder`, whole, only if it does not exist: written to a private
    file first, then hard-linked into place (atomic, and never seen half-written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(asdict(holder)))
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


class Lease:
    """The lease of one run folder, held by this process: `with Lease.acquire(folder): ...`."""

    def __init__(self, folder: Path, holder: Holder) -> None:
        self.folder, self.holder = folder, holder

    @classmethod
    def acquire(cls, folder: Path) -> "Lease":
        """Take the folder's lease, or raise `LeaseHeld` naming the live (or unknown) holder."""
        folder.mkdir(parents=True, exist_ok=True)
        me = Holder.me()
        path = folder / LEASE_FILE
        for _ in range(3):
            if _create(path, me):
                return cls(folder, me)
            holder = read_holder(folder)
            if holder is None:
                continue  # released between our attempt and the read: try again
            state = holder.state()
            if state != "dead":
                raise LeaseHeld(folder, holder, state)
            if _take_over(folder, holder, me):
                print(f"{folder}: took over the lease of {holder.describe()}, which is no longer running")
                return cls(folder, me)
        holder = read_holder(folder) or me
        raise LeaseHeld(folder, holder, "contended")

    def release(self) -> None:
        """Remove the lease if it is still ours (a takeover may have replaced it)."""
        if read_holder(self.folder) == self.holder:
            (self.folder / LEASE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _take_over(folder: Path, dead: Holder, me: Holder) -> bool:
    """Replace `dead`'s lease by ours, one taker at a time (a marker file created O_EXCL)."""
    marker = folder / (LEASE_FILE + ".takeover")
    if marker.exists() and time.time() - marker.stat().st_mtime > TAKEOVER_STALE_S:
        marker.unlink(missing_ok=True)
    if not _create(marker, me):
        return False
    try:
        if read_holder(folder) != dead:
            return False  # someone else took it over (and may be alive): ask again
        (folder / LEASE_FILE).unlink(missing_ok=True)
        return _create(folder / LEASE_FILE, me)
    finally:
        marker.unlink(missing_ok=True)


def lease_state(folder: Path) -> tuple[Holder, str] | None:
    """(holder, 'alive' | 'dead' | 'unknown') of a folder's lease, None without one (for status)."""
    holder = read_holder(folder)
    if holder is None:
        return None
    return holder, holder.state()
