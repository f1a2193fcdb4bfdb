"""SLURM resources of submitted runs: defaults < a user file < the command line (or Makefile).

The user file is YAML with the keys of `SlurmSettings` (e.g. `partition: gpu`, `account: lab`,
`extra: {mail-type: FAIL}`); it is read from `$S2H_SLURM_CONFIG`, else `./slurm.yaml` when
present. The GPUs and tasks of a job are not settings: they come from each run's
`train.gpus` (one task per GPU).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from core.errors import ConfigError

USER_FILE_ENV = "S2H_SLURM_CONFIG"
USER_FILE = Path("slurm.yaml")


@dataclass
class SlurmSettings:
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    cpus_per_task: int = 8  # data-loading workers + the training process, per GPU
    mem_gb: Optional[int] = None  # per node; null: the partition's default
    time_min: int = 24 * 60  # a longer run checkpoints at the limit and is requeued
    constraint: Optional[str] = None
    gpus: bool = True  # ask for train.gpus GPUs per job (false on CPU-only partitions)
    parallelism: int = 64  # most array tasks running at once
    max_requeues: int = 1000  # time-outs a run may be requeued after (long paper runs need many)
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: time to checkpoint
    extra: dict[str, str] = field(default_factory=dict)  # any other sbatch flag, without the dashes

    def validate(self) -> None:
        for key in ("cpus_per_task", "time_min", "parallelism"):
            if getattr(self, key) < 1:
                raise ConfigError(f"slurm setting {key} must be >= 1, got {getattr(self, key)}")


def load_settings(cli: dict[str, Any], extra: list[str], path: str | None = None) -> SlurmSettings:
    """Defaults, then the user file, then the command line's values (None = not given)."""
    merged = OmegaConf.structured(SlurmSettings)
    file = Path(path) if path else Path(os.environ[USER_FILE_ENV]) if USER_FILE_ENV in os.environ else USER_FILE
    if path and not file.is_file():
        raise ConfigError(f"slurm settings file not found: {file}")
    try:
        if file.is_file():
            merged = OmegaConf.merge(merged, OmegaConf.load(file))
        merged = OmegaConf.merge(merged, {k: v for k, v in cli.items() if v is not None})
        for item in extra:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--sbatch {item!r} is not of the form flag=value")
            merged.extra[key.lstrip("-")] = value
    except OmegaConfBaseException as exc:
        raise ConfigError(f"slurm settings ({file}): {str(exc).splitlines()[0]}") from None
    settings: SlurmSettings = OmegaConf.to_object(merged)  # type: ignore[assignment]
    settings.validate()
    return settings


def executor_parameters(settings: SlurmSettings, gpus: int, name: str) -> dict[str, Any]:
    """submitit AutoExecutor parameters of a job running one config on `gpus` GPUs."""
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": settings.time_min,
        "tasks_per_node": gpus,
        "nodes": 1,
        "cpus_per_task": settings.cpus_per_task,
        "slurm_array_parallelism": settings.parallelism,
        "slurm_signal_delay_s": settings.signal_delay_s,
    }
    if settings.gpus:
        params["gpus_per_node"] = gpus
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(settings, key)
        if value:
            params[f"slurm_{key}"] = value
    if settings.mem_gb:
        params["mem_gb"] = settings.mem_gb
    additional = {k.replace("-", "_"): v for k, v in settings.extra.items()}
    if additional:
        params["slurm_additional_parameters"] = additional
    return params


def describe(settings: SlurmSettings) -> str:
    shown = {k: v for k, v in dataclasses.asdict(settings).items() if v not in (None, {}, [])}
    return ", ".join(f"{k}={v}" for k, v in shown.items())
