"""Config-time checks shared by the baselines."""

from __future__ import annotations

from core.config import RunConfig
from core.errors import ConfigError


def require_cnn(cfg: RunConfig, method: str) -> None:
    """Refuse, at config time, a model with attention for a method implemented for CNNs."""
    from core.data import dataset_spec
    from core.groups.adapters import AttentionAdapter
    from core.models import meta_model

    info = dataset_spec(cfg.data).info
    model = meta_model(cfg.model, info.num_classes, cfg.data.image_size or info.image_size)
    if any(AttentionAdapter.matches(m) for m in model.modules()):
        raise ConfigError(f"prune.method={method} is implemented for CNNs (the paper runs it on CNNs), not {cfg.model.name}")
