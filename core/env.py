"""The environment a run executes in: the CPUs it may use, and, for its record, versions,
device, code revision and host."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

from core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
THREADS_VARIABLE = "S2H_THREADS"


def cpus_available(tasks: int = 1) -> int:
    """CPUs each of `tasks` processes started here may use: $S2H_THREADS if set; else SLURM's
    allocation per task; else this process's affinity mask (`taskset`, cgroups) shared by the
    tasks. torch's own default is one thread per core of the machine, whoever else runs on it:
    two runs side by side on 2 cores then spin against each other (measured: 0.48 s per step
    alone, 20.9 s with a second run beside it)."""
    explicit = os.environ.get(THREADS_VARIABLE)
    if explicit:
        if not explicit.isdigit() or int(explicit) < 1:
            raise ConfigError(f"${THREADS_VARIABLE} must be a positive integer, got {explicit!r}")
        return int(explicit)
    allocated = os.environ.get("SLURM_CPUS_PER_TASK")
    if allocated and allocated.isdigit():
        return max(1, int(allocated))
    mask = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, mask // max(1, tasks))


def size_threads(tasks: int = 1) -> int:
    """Give torch as many intra-op threads as `cpus_available` says; the number set."""
    threads = cpus_available(tasks)
    torch.set_num_threads(threads)
    return threads


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def environment(device: torch.device) -> dict[str, Any]:
    sha = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        # a CPU run's numbers depend on it: the summation order of torch's parallel kernels
        "threads": torch.get_num_threads(),
        # and on the instruction set torch picked its CPU kernels for (AVX2, AVX512, ...): the
        # mini ResNet-50 S2HPruner run at 15 % ends at 61.28 % top-1 with AVX512 kernels and
        # at 82.17 % with AVX2 ones forced ($ATEN_CPU_CAPABILITY=avx2), same code, one thread
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "git_sha": sha,
        "git_dirty": None if dirty is None else bool(dirty),
        "hostname": socket.gethostname(),
    }
