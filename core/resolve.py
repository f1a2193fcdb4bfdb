"""A composed config checked against the registries: `load`, `resolve`, the run id's fields.

`core.config` types a run's configuration and composes it from defaults, files and overrides
without knowing which models, datasets or methods exist; this module checks it against them
(`resolve`: every name known, every value possible, each `options` block typed by its entry's
dataclass; it builds nothing: what needs a network or the disk is `core.preflight`'s) and says which of its fields can change a
run's results (`result_fields`, what the run id hashes). It imports the registries, which
import `core.config` for their option types: the dependency points one way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

from omegaconf import OmegaConf

from core.config import (
    ATTENTION_UNITS,
    DEVICES_RE,
    FLOPS_SCOPES,
    NAME_RE,
    OPTIMIZERS,
    PROFILES,
    SCHEDULES,
    RunConfig,
    compose,
    flops_target_problem,
    merge,
    read_config_file,
)
from core.data import AUGMENTATIONS, DATASETS
from core.errors import ConfigError, did_you_mean
from core.models import MODELS
from core.preflight import preflight
from core.pruner import PRUNERS


def load(overrides: Iterable[str] = (), files: Iterable[str | Path] = ()) -> RunConfig:
    """Defaults, then YAML `files`, then `key=value` overrides; typed, validated, resolved, and
    through the pre-flight (`core.preflight`: its network built once, the method's checks)."""
    layers = []
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        layers.append((read_config_file(path), str(path)))
    cfg = resolve(compose(layers, overrides))
    preflight([cfg])
    return cfg


def from_dict(data: dict[str, Any]) -> RunConfig:
    """A config from its plain-dict form (a `config.yaml`, a record's `config`), re-validated."""
    return resolve(compose([(data, "config")]))


def result_fields(cfg: RunConfig) -> dict[str, Any]:
    """The part of a config that can change results: what the run id is a hash of.

    A field changes results unless it says `result=False` in its metadata: the config's own
    fields (`_field`) and, the same way, the fields of each model's, dataset's and method's
    options dataclass (e.g. S2HPruner's `widths_every`, which only sets how often widths are
    logged). This is the one definition of "the same run": the run id hashes it, and records
    carry its hash without the seed (`setting_id`) for the analysis to group seeds by.
    """
    def keep(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {
                f.name: keep(getattr(obj, f.name))
                for f in dataclasses.fields(obj)
                if f.metadata.get("result", True)
            }
        return obj

    fields = keep(cfg)
    for section, registry, name in (("model", MODELS, cfg.model.name), ("data", DATASETS, cfg.data.name),
                                    ("prune", PRUNERS, cfg.prune.method)):
        schema = registry.get(name).options if name in registry else None
        if schema is not None:
            cosmetic = {f.name for f in dataclasses.fields(schema) if not f.metadata.get("result", True)}
            fields[section]["options"] = {k: v for k, v in fields[section]["options"].items() if k not in cosmetic}
    return fields


def resolve(cfg: RunConfig) -> RunConfig:
    """Check every value and fill each `options` block with its typed defaults.

    Returns a new config; raises `ConfigError` with a one-line message on the first problem.
    """
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, options=dict(cfg.model.options)),
        data=dataclasses.replace(cfg.data, options=dict(cfg.data.options)),
        prune=dataclasses.replace(cfg.prune, options=dict(cfg.prune.options), keep=list(cfg.prune.keep)),
    )
    _check(NAME_RE.match(cfg.experiment) is not None,
           f"experiment name {cfg.experiment!r} must be letters, digits, '_', '-' or '.'")
    _check_choice("profile", cfg.profile, PROFILES)
    _check(cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed}")

    cfg.model.options = _typed_options("model.options", MODELS.get(cfg.model.name), cfg.model.options)
    _check(cfg.model.width > 0, f"model.width must be > 0, got {cfg.model.width}")

    d = cfg.data
    d.options = _typed_options("data.options", DATASETS.get(d.name), d.options)
    _check_choice("data.augment", d.augment, ("auto",) + tuple(AUGMENTATIONS))
    for key in ("image_size", "train_limit", "test_limit"):
        value = getattr(d, key)
        _check(value is None or value > 0, f"data.{key} must be a positive integer or null, got {value}")
    _check(d.workers >= 0, f"data.workers must be >= 0, got {d.workers}")

    t = cfg.train
    _check(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    _check(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    _check(t.gpus >= 1, f"train.gpus must be >= 1, got {t.gpus}")
    _check(t.batch_size % t.gpus == 0,
           f"train.batch_size={t.batch_size} must be divisible by train.gpus={t.gpus} (it is the global batch)")
    _check(t.eval_batch_size >= 1, f"train.eval_batch_size must be >= 1, got {t.eval_batch_size}")
    _check(t.eval_every >= 1, f"train.eval_every must be >= 1, got {t.eval_every}")
    _check_choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _check_choice("train.schedule", t.schedule, SCHEDULES)
    _check(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    _check(t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
    _check(0 <= t.momentum < 1, f"train.momentum must be in [0, 1), got {t.momentum}")
    _check(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas),
           f"train.betas must be two numbers in [0, 1), got {list(t.betas)}")
    _check(0 <= t.label_smoothing < 1, f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    _check(0 <= t.warmup_epochs < t.epochs,
           f"train.warmup_epochs must be in [0, train.epochs={t.epochs}), got {t.warmup_epochs}")
    _check(t.warmup_lr >= 0 and t.min_lr >= 0, "train.warmup_lr and train.min_lr must be >= 0")
    _check(0 < t.gamma <= 1, f"train.gamma must be in (0, 1], got {t.gamma}")
    if t.schedule == "step":
        _check(len(t.milestones) > 0, "train.schedule=step needs train.milestones, e.g. train.milestones=[250,375]")
        _check(list(t.milestones) == sorted(set(t.milestones)) and all(0 < m < t.epochs for m in t.milestones),
               f"train.milestones must be increasing epochs inside (0, {t.epochs}), got {list(t.milestones)}")
    _check(DEVICES_RE.match(t.device) is not None, f"train.device must be auto, cpu, cuda or cuda:N, got {t.device!r}")

    p = cfg.prune
    entry = PRUNERS.get(p.method)
    problem = flops_target_problem("prune.flops_target", p.flops_target, pruning=getattr(entry.factory, "prunes", False))
    _check(problem is None, problem or "")
    _check_choice("prune.flops_scope", p.flops_scope, FLOPS_SCOPES)
    _check_choice("prune.attention", p.attention, ATTENTION_UNITS)
    _check(p.decide_after_epochs is None or p.decide_after_epochs >= 0,
           f"prune.decide_after_epochs must be null or >= 0, got {p.decide_after_epochs}")
    p.options = _typed_options("prune.options", entry, p.options)
    check = getattr(entry.factory, "check_config", None)
    if check is not None:
        check(cfg)
    return cfg


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_choice(key: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}: unknown value {value!r}{did_you_mean(value, choices)}; "
                          f"choose from {', '.join(choices)}")


def _typed_options(key: str, entry: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Merge `given` into the entry's options dataclass: unknown keys and bad types fail."""
    if entry.options is None:
        if given:
            raise ConfigError(f"{key}: {entry.name!r} takes no options, got {sorted(given)}")
        return {}
    schema = OmegaConf.structured(entry.options)
    merged = merge(schema, OmegaConf.create(given), source=key, prefix=f"{key}.")
    options = OmegaConf.to_object(merged)
    validate = getattr(options, "validate", None)
    if validate is not None:
        validate()
    return dataclasses.asdict(options)
