"""Exported networks as data: tensors plus a description of the architecture, no pickled code.

A pruned network is its zoo model with some layers narrowed. So `pruned.pt` holds what
rebuilds it from the zoo, all of it readable by `torch.load(..., weights_only=True)`:

    format        FORMAT, so that a file of another layout is refused with a clear message
    architecture  the model config (name, width, options), the number of classes and the
                  input resolution: `build_model`'s arguments
    attributes    per module, its plain attributes (ints, floats, strings, booleans and tuples
                  of them: `out_channels`, `groups`, `num_features`, `normalized_shape`,
                  `num_heads`, an attention's `scale`, ...) as slimming left them
    tensors       every parameter and buffer, at its slimmed shape

`load_pruned` builds the dense zoo model on the meta device, sets the recorded attributes,
puts the saved tensors in place of its parameters and buffers, and checks that every one of
them was replaced: a file saved from another version of a model fails with the names that
differ instead of running with a silently wrong layer. Because only data is read, loading a
`pruned.pt` from a shared results folder runs no code from it, and renaming a class or a
module of the suite does not break old exports.

The whole pickled module (`pruned_module.pt`) is written only when a run asks for it
(`save_module=true`); it loads only with `weights_only=False`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from core.checkpoint import save_torch
from core.config import ModelConfig
from core.errors import ConfigError
from core.models import build_model

FORMAT = "s2hpruner-export/1"
_PLAIN = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(item) for item in value)
    return type(value) in _PLAIN  # exactly: a str-valued Enum (timm's Format) would need its class to load


def architecture(model: ModelConfig, num_classes: int, image_size: int) -> dict[str, Any]:
    """The data `load_pruned` rebuilds the dense network from (`build_model`'s arguments)."""
    return {"model": {"name": model.name, "width": model.width, "options": dict(model.options)},
            "num_classes": int(num_classes), "image_size": int(image_size)}


def describe(network: nn.Module, arch: dict[str, Any]) -> dict[str, Any]:
    """The weights-only form of `network` (see the module docstring)."""
    attributes = {
        name: {key: value for key, value in vars(module).items() if key != "training" and _plain(value)}
        for name, module in network.named_modules()
    }
    tensors = {name: tensor.detach().cpu() for name, tensor in network.named_parameters()}
    tensors.update((name, tensor.detach().cpu()) for name, tensor in network.named_buffers())
    return {"format": FORMAT, "architecture": arch, "attributes": attributes, "tensors": tensors}


def save_pruned(network: nn.Module, arch: dict[str, Any], path: str | Path) -> None:
    """Write `network` to `path` in the weights-only format, atomically."""
    save_torch(describe(network, arch), Path(path))


def rebuild(payload: dict[str, Any]) -> nn.Module:
    """The `nn.Module` a weights-only payload describes, in eval mode, on the CPU."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ConfigError(f"not an exported network of format {FORMAT} (found {found!r})")
    arch = payload["architecture"]
    model_cfg = ModelConfig(**arch["model"])
    with torch.device("meta"):
        network = build_model(model_cfg, arch["num_classes"], arch["image_size"])
    modules = dict(network.named_modules())
    missing = sorted(set(payload["attributes"]) - set(modules))
    if missing:
        raise ConfigError(f"exported network has modules the zoo's {model_cfg.name} lacks: {', '.join(missing[:5])}")
    for name, attrs in payload["attributes"].items():
        for key, value in attrs.items():
            setattr(modules[name], key, value)
    expected = {name for name, _ in network.named_parameters()} | {name for name, _ in network.named_buffers()}
    if expected != set(payload["tensors"]):
        diff = sorted(expected ^ set(payload["tensors"]))
        raise ConfigError(f"exported tensors do not match the zoo's {model_cfg.name}: {', '.join(diff[:5])}")
    for name, tensor in payload["tensors"].items():
        owner, _, attr = name.rpartition(".")
        module = modules[owner]
        if attr in module._parameters:
            requires_grad = module._parameters[attr].requires_grad
            module._parameters[attr] = nn.Parameter(tensor, requires_grad=requires_grad)
        else:
            module._buffers[attr] = tensor
    return network.eval()


def export_path(run_or_file: str | Path) -> Path:
    path = Path(run_or_file)
    return path / "pruned.pt" if path.is_dir() else path


def load_pruned(run_or_file: str | Path) -> nn.Module:
    """The exported network of a run folder (or of a `pruned.pt` path), rebuilt from data only."""
    path = export_path(run_or_file)
    if not path.is_file():
        raise ConfigError(f"no exported network at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an old pickled module, or a damaged file: one line, not an unpickler trace
        raise ConfigError(f"{path} is not a weights-only export ({type(exc).__name__}); rerun the run to export it again")
    return rebuild(payload)
