"""Pre-flight checks shared by the baselines."""

from __future__ import annotations

from core.config import RunConfig
from core.errors import ConfigError
from core.groups.adapters import AttentionAdapter
from core.pruner import Flight


def require_cnn(cfg: RunConfig, flight: Flight, method: str) -> None:
    """Refuse, before anything is queued, a model with attention for a method implemented for CNNs."""
    if any(AttentionAdapter.matches(m) for m in flight.network(cfg).modules()):
        raise ConfigError(f"prune.method={method} is implemented for CNNs (the paper runs it on CNNs), not {cfg.model.name}")
