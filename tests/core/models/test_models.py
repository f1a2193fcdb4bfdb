from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer
from torchvision.ops.misc import SqueezeExcitation

from core.config import ModelConfig
from core.resolve import load
from core.errors import ConfigError
from core.models import MODELS, build_model


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _model(name: str, width: float = 1.0, classes: int = 100, size: int = 32, **options) -> nn.Module:
    cfg = load([f"model.name={name}", f"model.width={width}"] + [f"model.options.{k}={v}" for k, v in options.items()])
    return build_model(cfg.model, classes, size)


def test_registry_names_are_the_fixed_ones():
    assert MODELS.names() == ["mobilenetv3", "resnet50", "swin", "vit", "wrn28_10"]


# Each model at the resolutions the paper trains it at (CIFAR 32, Tiny ImageNet 64, ImageNet 224).
CASES = [
    ("resnet50", 32), ("resnet50", 64), ("resnet50", 224),
    ("mobilenetv3", 32), ("mobilenetv3", 64),
    ("wrn28_10", 32), ("wrn28_10", 64),
    ("vit", 32), ("vit", 64), ("swin", 32), ("swin", 64),
]


@pytest.mark.parametrize(("name", "size"), CASES)
def test_forward_and_backward_at_paper_resolution(name, size):
    torch.manual_seed(0)
    model = _model(name, size=size, classes=10)
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    out.logsumexp(dim=1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_cifar_resnet50_has_23_7m_parameters_and_a_small_stem():
    model = _model("resnet50")
    assert abs(_params(model) - 23.7e6) < 0.05e6
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)


def test_imagenet_resnet50_is_exactly_torchvisions():
    ours = _model("resnet50", classes=1000, size=224).state_dict()
    reference = torchvision.models.resnet50().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in reference.items()}


def test_wrn28_10_has_36_5m_parameters_and_wrn_widths():
    model = _model("wrn28_10")
    assert abs(_params(model) - 36.5e6) < 0.05e6
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 2 * 12  # stem + two per block, 4 blocks in each of 3 stages
    assert sorted({c.out_channels for c in convs}) == [16, 160, 320, 640]


def test_mobilenetv3_is_adapted_to_small_images():
    model = _model("mobilenetv3")
    features = model.features(torch.randn(1, 3, 32, 32))
    assert features.shape[-2:] == (4, 4)  # downsampled 8x, not 32x
    se_widths = [m.fc1.out_channels for m in model.modules() if isinstance(m, SqueezeExcitation)]
    assert se_widths[:3] == [18, 30, 30]  # expanded // 4, as in the paper's Fig. 4(b)
    assert model.classifier[0].out_features == 1280
    imagenet = _model("mobilenetv3", size=224)
    assert imagenet.features(torch.randn(1, 3, 224, 224)).shape[-2:] == (7, 7)


def test_mobilenetv3_batchnorm_momentum_is_torchvisions_unless_set():
    def momenta(options: dict) -> set[float]:
        model = build_model(ModelConfig("mobilenetv3", 0.25, options), 10, 16)
        return {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}

    assert momenta({}) == {0.01}
    assert momenta({"bn_momentum": 0.1}) == {0.1}
    with pytest.raises(ConfigError, match="bn_momentum"):
        load(["model.name=mobilenetv3", "model.options.bn_momentum=0"])


def test_vit_matches_the_small_dataset_configuration():
    model = _model("vit")
    assert isinstance(model, VisionTransformer)
    assert model.embed_dim == 192 and len(model.blocks) == 9
    assert model.blocks[0].attn.num_heads == 12
    assert model.blocks[0].mlp.fc1.out_features == 384
    assert model.patch_embed.patch_size == (4, 4)
    assert _model("vit", size=64).patch_embed.patch_size == (8, 8)


def test_swin_matches_the_small_dataset_configuration():
    model = _model("swin")
    assert isinstance(model, SwinTransformer)
    assert model.patch_embed.patch_size == (4, 4)
    dims = [stage.blocks[0].mlp.fc1.in_features for stage in model.layers]
    hidden = [stage.blocks[0].mlp.fc1.out_features for stage in model.layers]
    assert dims == [96, 192, 384] and hidden == [192, 384, 768]
    assert [len(stage.blocks) for stage in model.layers] == [2, 6, 4]


def test_width_multiplier_shrinks_every_model():
    for name in MODELS.names():
        assert _params(_model(name, width=0.25)) < 0.2 * _params(_model(name)), name
    assert _model("resnet50", width=0.25).conv1.out_channels == 16
    assert _model("vit", width=0.25).embed_dim == 48  # a multiple of the 12 heads


def test_impossible_geometry_is_a_config_error():
    with pytest.raises(ConfigError, match="patch"):
        build_model(ModelConfig(name="vit", options={"patch_size": 5}), 10, 32)


def test_meta_model_is_built_once_per_config_and_matches_the_real_one():
    from core.models import meta_model

    first = meta_model(ModelConfig(name="mobilenetv3", width=0.25), 10, 32)
    assert meta_model(ModelConfig(name="mobilenetv3", width=0.25), 10, 32) is first  # an equal config, not the object
    others = [meta_model(ModelConfig(name="mobilenetv3", width=0.5), 10, 32),
              meta_model(ModelConfig(name="mobilenetv3", width=0.25), 100, 32),
              meta_model(ModelConfig(name="mobilenetv3", width=0.25), 10, 224),
              meta_model(ModelConfig(name="mobilenetv3", width=0.25, options={"stem": "imagenet"}), 10, 32)]
    assert all(other is not first for other in others) and len({id(m) for m in others}) == len(others)
    real = build_model(ModelConfig(name="mobilenetv3", width=0.25), 10, 32)
    assert [(n, p.shape) for n, p in first.named_parameters()] == [(n, p.shape) for n, p in real.named_parameters()]
    assert all(p.device.type == "meta" for p in first.parameters())
