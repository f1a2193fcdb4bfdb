"""How many torch threads a process gives itself."""

from __future__ import annotations

import os

import pytest
import torch

from core.env import cpus_available, size_threads
from core.errors import ConfigError


def test_threads_follow_the_variable_then_slurm_then_the_affinity_mask(monkeypatch):
    monkeypatch.delenv("S2H_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    mask = len(os.sched_getaffinity(0))
    assert cpus_available() == mask and cpus_available(tasks=2) == max(1, mask // 2)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert cpus_available(tasks=2) == 3  # already per task
    monkeypatch.setenv("S2H_THREADS", "1")
    assert size_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("S2H_THREADS", "two")
    with pytest.raises(ConfigError, match="S2H_THREADS must be a positive integer"):
        cpus_available()


def test_a_pinned_process_sizes_itself_to_its_cpus():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("S2H_THREADS", "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS")}
    code = "from core.env import size_threads; import torch; size_threads(); print(torch.get_num_threads())"
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.strip() == "1"
