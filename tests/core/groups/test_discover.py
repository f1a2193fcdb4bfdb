"""Group discovery: the paper's group inventories, exclusions, options and channel order."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from core.config import ModelConfig
from core.resolve import load
from core.errors import ConfigError
from core.groups import GroupMasks, channel_order, discover_groups, groups_for_run, slim
from core.models import build_model

# Paper Fig. 4 (Appendix D) counts at the paper's widths, by kind.
PAPER_MODELS = {
    ("resnet50", 32): (36, {"interior": 32, "residual": 4}),
    ("resnet50", 224): (36, {"interior": 32, "residual": 4}),
    ("mobilenetv3", 32): (29, {"interior": 23, "residual": 5, "mlp": 1}),
    ("wrn28_10", 32): (15, {"interior": 12, "residual": 3}),
    ("vit", 32): (19, {"residual": 1, "head": 9, "mlp": 9}),
    ("swin", 32): (27, {"residual": 3, "head-dim": 12, "mlp": 12}),
}


def _discover(name: str, size: int, width: float = 1.0, **kwargs):
    model = build_model(ModelConfig(name=name, width=width), 100, size).eval()
    return model, discover_groups(model, torch.zeros(1, 3, size, size), **kwargs)


@pytest.mark.parametrize(("name", "size"), list(PAPER_MODELS))
def test_paper_group_counts(name, size):
    count, kinds = PAPER_MODELS[(name, size)]
    _, groups = _discover(name, size)
    assert len(groups) == count
    assert Counter(g.kind for g in groups) == kinds
    assert all(g.size == g.members[0].index.shape[0] for g in groups)


def test_resnet_groups_and_exclusions():
    model, groups = _discover("resnet50", 32)
    excluded = {g.name for g in groups.excluded}
    assert excluded == {"conv1", "fc"}  # the stem and the classes
    interior = next(g for g in groups if g.name == "layer1.0.conv1")
    assert {(m.layer, m.role) for m in interior.members} == {
        ("layer1.0.conv1", "out"), ("layer1.0.bn1", "out"), ("layer1.0.conv2", "in")}
    assert [p.layer for p in interior.mask_points] == ["layer1.0.bn1"]  # after the norm, not the conv
    stage = next(g for g in groups if g.kind == "residual" and g.size == 256)
    assert {"layer1.0.downsample.0", "layer1.0.conv3", "layer1.2.conv3", "layer2.0.conv1", "layer2.0.downsample.0"} <= set(stage.layers())
    assert sorted(p.layer for p in stage.mask_points) == ["layer1.0.bn3", "layer1.0.downsample.1", "layer1.1.bn3", "layer1.2.bn3"]
    assert "fc" in stage.layers("in") or any(g.size == 2048 and "fc" in g.layers("in") for g in groups)


def test_mobilenet_squeeze_excite_and_classifier_hidden():
    _, groups = _discover("mobilenetv3", 32)
    se = [g for g in groups if g.name.endswith("fc1")]
    assert [g.size for g in se] == [18, 30, 30, 120, 168, 168, 240, 240]
    hidden = next(g for g in groups if g.kind == "mlp")
    assert (hidden.name, hidden.size) == ("classifier.0", 1280)
    expanded = next(g for g in groups if "features.4.block.2.fc2" in g.layers("out"))
    # The SE gate's output is not masked (the gated activations are), the depthwise BN is.
    assert "features.4.block.2.fc2" not in [p.layer for p in expanded.mask_points]
    assert "features.4.block.1.1" in [p.layer for p in expanded.mask_points]


def test_vit_groups():
    _, groups = _discover("vit", 32)
    residual = groups[0]
    assert residual.kind == "residual" and residual.size == 192
    layers = set(residual.layers())
    assert {"cls_token", "pos_embed", "patch_embed.proj", "norm", "head"} <= layers
    assert all(f"blocks.{i}.{n}" in layers for i in range(9) for n in ("norm1", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"))
    heads = [g for g in groups if g.kind == "head"]
    assert [g.size for g in heads] == [12] * 9 and heads[0].attention == "blocks.0.attn"
    qkv_rows = next(m for m in heads[0].members if m.layer == "blocks.0.attn.qkv").index
    assert qkv_rows.shape == (12, 48) and set(qkv_rows[1].tolist()) == {s * 192 + 16 + d for s in range(3) for d in range(16)}


def test_swin_groups():
    _, groups = _discover("swin", 32)
    residual = [g for g in groups if g.kind == "residual"]
    assert [g.size for g in residual] == [96, 192, 384]
    merging = next(m for m in residual[0].members if m.layer == "layers.1.downsample.norm")
    assert merging.index.shape == (96, 4) and merging.index[5].tolist() == [5, 101, 197, 293]
    head_dims = [g for g in groups if g.kind == "head-dim"]
    assert [g.size for g in head_dims] == [32] * 12


def test_stem_keep_and_attention_options():
    assert len(_discover("resnet50", 32, 0.25, include_stem=True)[1]) == 37
    model, groups = _discover("resnet50", 32, 0.25, keep=["layer1.0.conv1"])
    assert len(groups) == 35 and "layer1.0.conv1" in {g.name for g in groups.excluded}
    with pytest.raises(ValueError, match="keep names no layer"):
        _discover("resnet50", 32, 0.25, keep=["layer9"])
    assert Counter(g.kind for g in _discover("vit", 32, 0.5, attention="head_dims")[1])["head-dim"] == 9


@pytest.mark.parametrize(("name", "attention"), [("vit", "head_dims"), ("swin", "heads")])
def test_other_attention_units_slim_exactly(name, attention, masks_for):
    torch.manual_seed(0)
    model, groups = _discover(name, 32, 0.5, attention=attention)
    masks = masks_for(groups, 0.35, seed=1)
    x = torch.randn(2, 3, 32, 32)
    masker = GroupMasks(model, groups)
    with torch.no_grad(), masker.use(masks):
        masked = model(x)
    with torch.no_grad():
        out = slim(model, groups, masks)(x)
    assert float((masked - out).abs().max() / out.abs().max()) < 1e-4


def test_channel_order_follows_producer_l1():
    model, groups = _discover("resnet50", 32, 0.25)
    group = next(g for g in groups if g.name == "layer1.0.conv1")
    with torch.no_grad():
        model.get_submodule("layer1.0.conv1").weight[5] *= 100
        model.get_submodule("layer1.0.conv1").weight[2] = 0
    order = channel_order(model, groups)[groups.groups.index(group)]
    assert order[0] == 5 and order[-1] == 2
    assert sorted(order.tolist()) == list(range(group.size))
    # A residual stream averages over its producers: one strong producer row is not enough alone.
    stage = next(g for g in groups if g.kind == "residual")
    producers = stage.producers()
    assert len(producers) == 4
    with torch.no_grad():
        for m in producers:
            model.get_submodule(m.layer).weight[7] *= 50
    assert channel_order(model, groups)[groups.groups.index(stage)][0] == 7


def test_run_config_options(tmp_path):
    cfg = load(["model.name=resnet50", "model.width=0.25", "prune.keep=[layer1.0.conv1]", "prune.include_stem=true"])
    model = build_model(cfg.model, 10, 32)
    assert len(groups_for_run(model, cfg.prune, 32)) == 36  # +1 stem, -1 kept
    with pytest.raises(ConfigError, match="prune.keep: no layer named 'layer9'"):
        load(["prune.keep=[layer9]"])
    with pytest.raises(ConfigError, match="prune.attention"):
        load(["prune.attention=head"])


def test_torch_pruning_alone_misses_what_the_adapters_map():
    """Why adapters exist: the DependencyGraph's own index mapping of Swin's patch merging and
    of q/k/v (if torch-pruning learns these, the adapters can go)."""
    import warnings

    import torch_pruning as tp

    model = build_model(ModelConfig(name="swin", width=0.25), 10, 32).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(model, torch.zeros(1, 3, 32, 32), verbose=False)
    names = {m: n for n, m in model.named_modules()}
    stage = graph.get_pruning_group(model.patch_embed.proj, tp.prune_conv_out_channels, list(range(24)))
    merging = [len(i.idxs) for i in stage.items if names.get(i.dep.target.module) == "layers.1.downsample.norm"]
    assert merging == [24]  # the right answer is 96: every channel appears 4 times after the 2x2 merge
    attention = graph.get_pruning_group(model.layers[0].blocks[0].attn.qkv, tp.prune_linear_out_channels, list(range(72)))
    proj = [i for i in attention.items if names.get(i.dep.target.module) == "layers.0.blocks.0.attn.proj"]
    assert sorted(set(proj[0].root_idxs)) == list(range(48, 72))  # only v's rows reach proj
