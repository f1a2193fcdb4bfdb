"""The typed configuration of one run, and how it is built from files and `key=value` overrides.

A run is fully described by a `RunConfig`. It is assembled from the dataclass defaults below
(a dense ResNet-50 at the paper's full width trained for 8 epochs on scikit-learn's digits),
then YAML files, then command-line overrides, and checked in `resolve`: an unknown key, a
value of the wrong type, an unknown model/dataset/optimizer/schedule/pruner name or an
impossible value is a `ConfigError` with a one-line message, raised before anything is built
or queued.

The model's default is the paper's network (`model.width=1.0`); narrow copies are always asked
for by name: the smoke recipes set their widths, and so does `DEMO`, what a bare
`python -m core run` trains (the defaults at width 0.25, a couple of minutes on a laptop CPU).

Model, dataset and pruner options are typed too: each registry entry names a dataclass for
its options, and `resolve` merges the user's `*.options` into it, so `model.options.depht=9`
fails exactly like `train.epoch=3` does. The resolved config spells out every option, which
is what `config.yaml` records and what the run id hashes.

Each field says, through `result=False`, whether changing it can change a run's results;
those that cannot (paths, worker counts, the device, cosmetics) are left out of the run id so
that the same experiment on another machine or in another results folder is the same run.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from core.errors import ConfigError

PROFILES = ("paper", "mini", "smoke", "custom")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
FLOPS_SCOPES = ("network", "prunable")
ATTENTION_UNITS = ("auto", "heads", "head_dims")
DEVICES_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _field(default: Any = None, help: str = "", *, factory: Any = None, result: bool = True) -> Any:
    """A dataclass field with its help text and whether it changes results (for the run id)."""
    metadata = {"help": help, "result": result}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class ModelConfig:
    name: str = _field("resnet50", "resnet50 | mobilenetv3 | wrn28_10 | vit | swin")
    width: float = _field(
        1.0, "width multiplier on every layer's channels (1.0: the paper's model; smoke recipes and the demo use narrower copies)"
    )
    options: dict[str, Any] = _field(
        help="model-specific options, typed per model (listed below)", factory=dict
    )


@dataclass
class DataConfig:
    name: str = _field("digits", "cifar100 | tinyimagenet | imagenet | digits | synthetic")
    root: str = _field("data", "folder holding the datasets (see README: Datasets)", result=False)
    download: bool = _field(False, "download the dataset when missing (CIFAR-100, Tiny ImageNet)", result=False)
    image_size: Optional[int] = _field(None, "input resolution; null = the dataset's own (32, 64, 224)")
    train_limit: Optional[int] = _field(None, "use only this many training images (a fixed subset)")
    test_limit: Optional[int] = _field(None, "use only this many test images (a fixed subset)")
    workers: int = _field(0, "data-loading worker processes (results do not depend on it)", result=False)
    augment: str = _field(
        "auto", "auto | none | cifar | lee2021 | imagenet (auto: by model family and dataset)"
    )
    options: dict[str, Any] = _field(
        help="dataset-specific options, typed per dataset (listed below)", factory=dict
    )


@dataclass
class TrainConfig:
    epochs: int = _field(8, "training epochs (the whole budget of the run)")
    batch_size: int = _field(32, "training batch size")
    optimizer: str = _field("sgd", "sgd | adamw (for the network weights)")
    lr: float = _field(0.02, "initial learning rate")
    momentum: float = _field(0.9, "SGD momentum")
    nesterov: bool = _field(False, "SGD Nesterov momentum")
    weight_decay: float = _field(3e-4, "weight decay")
    betas: list[float] = _field(help="AdamW betas", factory=lambda: [0.9, 0.999])
    schedule: str = _field("cosine", "cosine | step | constant (updated every step)")
    milestones: list[int] = _field(help="epochs at which `step` multiplies the lr by gamma", factory=list)
    gamma: float = _field(0.1, "lr factor at each milestone of the step schedule")
    warmup_epochs: int = _field(0, "linear lr warm-up epochs")
    warmup_lr: float = _field(1e-6, "lr at the first warm-up step")
    min_lr: float = _field(0.0, "floor of the cosine schedule")
    label_smoothing: float = _field(0.0, "label smoothing of the cross-entropy")
    gpus: int = _field(
        1, "data-parallel processes, one per GPU (on a machine without GPUs: CPU processes over gloo); batch_size is the global batch"
    )
    eval_batch_size: int = _field(256, "evaluation batch size", result=False)
    eval_every: int = _field(1, "evaluate every N epochs (and always after the last)", result=False)
    device: str = _field("auto", "auto | cpu | cuda | cuda:N", result=False)
    deterministic: bool = _field(
        False, "deterministic CUDA kernels (slower); CPU runs are deterministic anyway", result=False
    )


@dataclass
class PruneConfig:
    method: str = _field("dense", "pruning method; the registered ones are listed with their options below")
    flops_target: float = _field(1.0, "fraction of the dense FLOPs to keep, in (0, 1]")
    flops_scope: str = _field("network", "network | prunable: what the FLOPs target counts")
    include_stem: bool = _field(False, "prune the stem's channels too (the paper keeps them)")
    keep: list[str] = _field(help="layer names whose output channels are never pruned", factory=list)
    attention: str = _field(
        "auto", "auto | heads | head_dims: the units attention is pruned in (auto: heads, or head dims for windowed attention as in Swin)"
    )
    decide_after_epochs: Optional[float] = _field(
        None, "no irreversible pruning decision before this many epochs of training (core/regime.py): what a dense "
              "network of the recipe needs to halve chance's train loss; each baseline stretches its own phase to it "
              "(OTOv2's warm-up, Group-SL's pre-training, IMP-Refill's rounds); null: the methods' schedules as they are"
    )
    options: dict[str, Any] = _field(
        help="method-specific options, typed per method (listed below)", factory=dict
    )


@dataclass
class RunConfig:
    experiment: str = _field("custom", "experiment name: runs live in <output_root>/runs/<experiment>/", result=False)
    # `custom` unless a grid (paper, mini, smoke) or the demo (smoke) says otherwise: `make clean`
    # removes smoke-profile runs only, so a user's own runs are never disposable by default
    profile: str = _field("custom", "paper | mini | smoke | custom: the label results carry")
    seed: int = _field(0, "seed of python, numpy and torch (0 is a valid seed)")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    output_root: str = _field("results", "where run folders are written", result=False)
    progress: bool = _field(True, "show progress bars", result=False)
    save_module: bool = _field(
        False, "also write pruned_module.pt, the whole pickled module (pruned.pt is weights only: core.export.load_pruned)",
        result=False,
    )


# The demo: what `python -m core run` trains when its command line sets nothing that changes
# results (no --config file; overrides, if any, only of paths, devices, workers or progress
# bars): the defaults with a quarter-width ResNet-50, a couple of minutes on a laptop CPU,
# labelled as the disposable demo (`make clean` removes it). Any other run starts from the
# defaults themselves, whose network is the paper's, as experiment and profile `custom`.
DEMO = ("model.width=0.25", "experiment=demo", "profile=smoke")


def demo_overrides(overrides: Iterable[str] = (), files: Iterable[str | Path] = ()) -> list[str]:
    """`DEMO` when a command line of `overrides` and config `files` is the bare demo, else []."""
    if list(files):
        return []
    if any(_changes_results(item.partition("=")[0]) for item in overrides):
        return []
    return list(DEMO)


def _changes_results(key: str) -> bool:
    """Whether the dotted config `key` can change a run's results (unknown keys count as yes)."""
    node: Any = RunConfig
    for part in key.split("."):
        found = {f.name: f for f in dataclasses.fields(node)}.get(part) if dataclasses.is_dataclass(node) else None
        if found is None or not found.metadata.get("result", True):
            return found is None
        node = found.default_factory if dataclasses.is_dataclass(found.default_factory) else None
        if node is None:
            return True
    return True


# ----------------------------------------------------------------------------- building


def compose(layers: Iterable[tuple[Any, str]] = (), overrides: Iterable[str] = ()) -> RunConfig:
    """Defaults, then each (nested dict or DictConfig, source name) layer, then `key=value`
    overrides; typed (an unknown key or a wrong type raises, naming the key), not yet resolved."""
    merged = OmegaConf.structured(RunConfig)
    for layer, source in layers:
        merged = _merge(merged, layer if isinstance(layer, DictConfig) else OmegaConf.create(layer), source=source)
    merged = _merge(merged, _parse_overrides(list(overrides)), source="command line")
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def load(overrides: Iterable[str] = (), files: Iterable[str | Path] = ()) -> RunConfig:
    """Defaults, then YAML `files`, then `key=value` overrides; typed, validated, resolved."""
    layers = []
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        layers.append((read_config_file(path), str(path)))
    return resolve(compose(layers, overrides))


def read_config_file(path: Path) -> DictConfig:
    """A YAML config file's mapping of keys; a file that does not parse, or whose top level is
    not a mapping, is a one-line ConfigError naming it."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds a mapping of keys (model:, train:, ...), not a "
                          f"{type(data).__name__}")
    return OmegaConf.create(data)


def from_dict(data: dict[str, Any]) -> RunConfig:
    """A config from its plain-dict form (a `config.yaml`, a record's `config`), re-validated."""
    return resolve(compose([(data, "config")]))


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The plain, YAML/JSON-ready form of a config."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))


def result_fields(cfg: RunConfig) -> dict[str, Any]:
    """The part of a config that can change results: what the run id is a hash of.

    A field changes results unless it says `result=False` in its metadata: the config's own
    fields (`_field`) and, the same way, the fields of each model's, dataset's and method's
    options dataclass (e.g. S2HPruner's `widths_every`, which only sets how often widths are
    logged). This is the one definition of "the same run": the run id hashes it, and records
    carry its hash without the seed (`setting_id`) for the analysis to group seeds by.
    """
    from core.data import DATASETS
    from core.models import MODELS
    from core.pruner import PRUNERS

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


def _parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not of the form key=value")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse overrides {' '.join(overrides)!r}: {_first_line(exc)}") from None


def _merge(base: DictConfig, update: Any, *, source: str, prefix: str = "") -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        where = f"config key '{prefix}{key}'" if key else source
        raise ConfigError(f"{where}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------- validation

_PENDING_RUNS: ContextVar[frozenset[str]] = ContextVar("pending_runs", default=frozenset())


@contextmanager
def pending_runs(folders: Iterable[str | Path]) -> Iterator[None]:
    """Run folders that are queued in the same submission and will exist before the runs that
    read them start (e.g. Table 7's fine-tuning reads a soft-only run). Methods that check a
    source run folder at validation (`init_from`, `architecture_from`) accept these unread."""
    token = _PENDING_RUNS.set(frozenset(os.path.normpath(str(f)) for f in folders))
    try:
        yield
    finally:
        _PENDING_RUNS.reset(token)


def is_pending_run(folder: str | Path) -> bool:
    return os.path.normpath(str(folder)) in _PENDING_RUNS.get()


def resolve(cfg: RunConfig) -> RunConfig:
    """Check every value and fill each `options` block with its typed defaults.

    Returns a new config; raises `ConfigError` with a one-line message on the first problem.
    """
    # Imported here: the registries import torch and the model/data code, which config
    # parsing alone (e.g. `--help`) should not pay for at import time.
    from core.data import DATASETS, AUGMENTATIONS
    from core.models import MODELS
    from core.pruner import PRUNERS

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
    _check_buildable(cfg)
    return cfg


def flops_target_problem(key: str, value: float, pruning: bool) -> str | None:
    """The one rule for a FLOPs target, as every entry point words it: the share of the dense
    FLOPs to keep, in (0, 1) for a pruning method (1 is the dense network itself) and in (0, 1]
    for dense training. None when `value` keeps it."""
    if pruning and not 0 < value < 1:
        return (f"{key} must be in (0, 1) for a pruning method, the share of the dense FLOPs to keep "
                f"(1 is the dense network: prune.method=dense), got {value}")
    if not 0 < value <= 1:
        return f"{key} must be in (0, 1], the share of the dense FLOPs to keep, got {value}"
    return None


def _check_buildable(cfg: RunConfig) -> None:
    """Build the model on the meta device (no memory, no data): shape errors surface now."""
    from core.data import dataset_spec
    from core.models import meta_model

    info = dataset_spec(cfg.data).info
    model = meta_model(cfg.model, info.num_classes, cfg.data.image_size or info.image_size)
    layers = {name for name, _ in model.named_modules()}
    unknown = [name for name in cfg.prune.keep if name not in layers]
    _check(not unknown, f"prune.keep: no layer named {', '.join(map(repr, unknown))} in {cfg.model.name}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_choice(key: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{key}: unknown value {value!r}{hint}; choose from {', '.join(choices)}")


def _typed_options(key: str, entry: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Merge `given` into the entry's options dataclass: unknown keys and bad types fail."""
    if entry.options is None:
        if given:
            raise ConfigError(f"{key}: {entry.name!r} takes no options, got {sorted(given)}")
        return {}
    schema = OmegaConf.structured(entry.options)
    merged = _merge(schema, OmegaConf.create(given), source=key, prefix=f"{key}.")
    options = OmegaConf.to_object(merged)
    validate = getattr(options, "validate", None)
    if validate is not None:
        validate()
    return dataclasses.asdict(options)


# ----------------------------------------------------------------------------- help


def describe_fields(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for every field, recursively, for `--help` listings."""
    rows: list[tuple[str, str, str, str]] = []
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe_fields(type(value), f"{prefix}{f.name}."))
            continue
        rows.append((f"{prefix}{f.name}", _type_name(f.type), _format_default(value), f.metadata.get("help", "")))
    return rows


def _type_name(annotation: Any) -> str:
    """'Optional[int]' -> 'int?'; annotations are strings here (postponed evaluation)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    match = re.fullmatch(r"Optional\[(.*)\]", text)
    return f"{match.group(1)}?" if match else text


def _format_default(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
