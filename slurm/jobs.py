"""The job every executor runs: one run config, as a submitit Checkpointable.

The job pickles the resolved config as a plain dict (never a model or a tensor) and types it
back without checking it again: it was resolved and through the pre-flight once, when the grid
was submitted. All of its state lives in the run folder. So a requeued job, whether SLURM requeued it after a
pre-emption, `scontrol requeue`, or submitit after a time-out, simply calls `core.engine.run`
again, which resumes from the run folder's checkpoint:

- time-out: SLURM sends SIGUSR2 ahead of the limit (`--signal`); the engine writes a
  checkpoint at the next step boundary, then hands the signal to submitit, which calls
  `checkpoint()` below and requeues the job;
- pre-emption and `scontrol requeue`: SLURM sends SIGTERM and requeues the job itself; the
  engine writes its checkpoint before the process is killed (`KillWait`).

A job with several tasks is a data-parallel run (one task per GPU): each task exports the
torch.distributed environment submitit derives from SLURM (or from the local executor).
"""

from __future__ import annotations

from typing import Any

import submitit

from core.config import compose


def run_config(config: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume, or skip) the run of `config` in this process; its summary as a dict."""
    from core.engine import run

    outcome = run(compose([(config, "config")]))
    metrics = outcome.record.get("metrics", {})
    return {
        "status": outcome.status,
        "run_dir": str(outcome.run_dir.path),
        "top1": metrics.get("top1"),
        "flops_ratio": metrics.get("flops_ratio"),
        "error": outcome.record.get("error"),
    }


class RunJob(submitit.helpers.Checkpointable):
    """`RunJob(config_dict)()` trains (or resumes, or skips) that run and returns its summary."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def __call__(self) -> dict[str, Any]:
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        from core.env import size_threads

        size_threads(env.num_tasks)  # this task's CPUs, not one thread per core of the node
        return run_config(self.config)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Requeue the same job: the run folder holds its state (the engine wrote it)."""
        return submitit.helpers.DelayedSubmission(RunJob(self.config))
