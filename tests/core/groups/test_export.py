"""A slimmed network saved as data (`core.export`) comes back as the same network."""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError
from core.export import FORMAT, architecture, load_pruned, save_pruned
from core.groups import slim


def test_weights_only_export_rebuilds_the_slimmed_network(arch, masks_for, tmp_path):
    """Every zoo architecture (CNNs, ViT heads, Swin head dims): the file loads with
    weights_only=True, and the rebuilt module has the slimmed one's shapes and outputs."""
    slimmed = slim(arch.model, arch.groups, masks_for(arch.groups, 0.35, seed=5)).eval()
    path = tmp_path / "pruned.pt"
    save_pruned(slimmed, architecture(arch.config, 10, arch.size), path)

    payload = torch.load(path, weights_only=True)  # data only: no class is unpickled
    assert payload["format"] == FORMAT
    rebuilt = load_pruned(tmp_path)  # a run folder works as well as the file
    assert not rebuilt.training
    shapes = {name: tuple(t.shape) for name, t in slimmed.state_dict().items()}
    assert {name: tuple(t.shape) for name, t in rebuilt.state_dict().items()} == shapes
    x = torch.randn(3, 3, arch.size, arch.size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), slimmed(x))
    assert sum(p.numel() for p in rebuilt.parameters()) < sum(p.numel() for p in arch.model.parameters())


def test_a_pickled_module_or_a_foreign_file_is_refused_in_one_line(arch_builder, tmp_path):
    arch = arch_builder("mobilenetv3")
    torch.save(arch.model, tmp_path / "pruned.pt")  # the old format: a pickled module
    with pytest.raises(ConfigError, match="not a weights-only export"):
        load_pruned(tmp_path)
    torch.save({"format": "other/1"}, tmp_path / "pruned.pt")
    with pytest.raises(ConfigError, match="not an exported network"):
        load_pruned(tmp_path)
    with pytest.raises(ConfigError, match="no exported network"):
        load_pruned(tmp_path / "missing")


def test_a_file_that_does_not_fit_the_zoo_model_names_the_difference(arch_builder, tmp_path):
    arch = arch_builder("mobilenetv3")
    path = tmp_path / "pruned.pt"
    save_pruned(arch.model, architecture(arch.config, 10, arch.size), path)
    payload = torch.load(path, weights_only=True)
    payload["tensors"]["extra.weight"] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(ConfigError, match="extra.weight"):
        load_pruned(path)
