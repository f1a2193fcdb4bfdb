"""The typed configuration of one run, and how it is built from files and `key=value` overrides.

A run is fully described by a `RunConfig`. It is assembled from the dataclass defaults below
(a dense ResNet-50 at the paper's full width trained for 8 epochs on scikit-learn's digits),
then YAML files, then command-line overrides, and checked in `core.resolve`: an unknown key, a
value of the wrong type, an unknown model/dataset/optimizer/schedule/pruner name or an
impossible value is a `ConfigError` with a one-line message, raised before anything is built
or queued.

The model's default is the paper's network (`model.width=1.0`); narrow copies are always asked
for by name: the smoke recipes set their widths, and so does `DEMO`, what a bare
`python -m core run` trains (the defaults at width 0.25, a couple of minutes on a laptop CPU).

Model, dataset and pruner options are typed too: each registry entry names a dataclass for
its options, and `core.resolve` merges the user's `*.options` into it, so `model.options.depht=9`
fails exactly like `train.epoch=3` does. The resolved config spells out every option, which
is what `config.yaml` records and what the run id hashes.

Each field says, through `result=False`, whether changing it can change a run's results;
those that cannot (paths, worker counts, the device, cosmetics) are left out of the run id so
that the same experiment on another machine or in another results folder is the same run.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

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
        merged = merge(merged, layer if isinstance(layer, DictConfig) else OmegaConf.create(layer), source=source)
    merged = merge(merged, _parse_overrides(list(overrides)), source="command line")
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


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


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The plain, YAML/JSON-ready form of a config."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))


def _parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not of the form key=value")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse overrides {' '.join(overrides)!r}: {_first_line(exc)}") from None


def merge(base: DictConfig, update: Any, *, source: str, prefix: str = "") -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        where = f"config key '{prefix}{key}'" if key else source
        raise ConfigError(f"{where}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
