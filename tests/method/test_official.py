"""The official code's behaviour (items a-g of method/README.md), each against a hand computation.

The toy network has a stem and one stage of two residual blocks (a `nn.Sequential`, as in
torchvision's ResNets), so its residual stream has a stem output and two block outputs.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from core.config import ModelConfig
from core.groups import discover_groups, slim
from core.models import build_model
from method.algorithm import S2HState, balance
from method.buckets import auto_divisor, bucket_divisors, reduce_to_factor
from method.evaluation import recalibrate_bn
from method.options import PAPER_TEXT, S2HOptions
from method.prefix import PrefixMasks


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)


class TwoBlocks(nn.Module):
    def __init__(self, c: int = 6, classes: int = 5) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.stage = nn.Sequential(Block(c), Block(c))
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage(torch.relu(self.bn(self.conv(x)))).mean((2, 3)))


def _toy_state(**options) -> S2HState:
    """S2HPruner on the toy network, one logit per channel (6-channel groups would otherwise be
    one bucket each), random mask logits."""
    options.setdefault("divisor", 1)
    torch.manual_seed(0)
    model = TwoBlocks().double().train()
    groups = discover_groups(model, torch.zeros(1, 3, 6, 6, dtype=torch.float64), include_stem=True)
    state = S2HState(model, groups, S2HOptions(**options), flops_target=0.4).double()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for logits in state.masks.logits:
            logits.copy_(torch.randn(logits.shape, dtype=torch.float64, generator=generator))
    return state


def _group(state: S2HState, layer: str) -> int:
    return next(i for i, g in enumerate(state.groups) if layer in g.layers("out"))


# ------------------------------------------------------------------------------- a. buckets

def test_expected_width_rule_rounds_up_to_the_bucket():
    masks = PrefixMasks([24, 30], divisor=[4, 6], rule="expected_width")
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        with torch.no_grad():
            for logits in masks.logits:
                logits.copy_(2 * torch.randn(logits.shape, generator=generator))
        for logits, size, divisor, kept in zip(masks.logits, (24, 30), (4, 6), masks.hard_widths()):
            p = torch.softmax(logits.detach().double(), 0)
            expected = sum(float(p[b]) * divisor * (b + 1) for b in range(size // divisor))
            assert kept == min(size, divisor * math.ceil(math.ceil(expected - 1e-6) / divisor))
            assert kept % divisor == 0


def test_bucket_sizes_per_architecture():
    vit = build_model(ModelConfig(name="vit", width=0.25, options={"depth": 2}), 10, 32)
    groups = discover_groups(vit, torch.zeros(1, 3, 32, 32))
    divisors = bucket_divisors(groups, None, "vit", 0.25)
    for group, divisor in zip(groups, divisors):
        want = 1 if group.size <= 16 else reduce_to_factor(2, group.size)  # 8 x width 0.25
        assert divisor == want and group.size % divisor == 0, group.name
    assert [auto_divisor(n) for n in (24, 72, 120, 184, 480, 1280)] == [2, 6, 8, 23, 30, 80]
    assert reduce_to_factor(8, 12) == 6 and reduce_to_factor(8, 64) == 8 and reduce_to_factor(8, 7) == 7
    assert bucket_divisors(groups, 1, "vit", 0.25) == [1] * len(groups)


# ------------------------------------------------------------------------------- b. residual stream

def _hand_forward(model: TwoBlocks, x: torch.Tensor, m_stream: torch.Tensor, m1: list[torch.Tensor],
                  compound: bool) -> torch.Tensor:
    """The toy network with soft masks, written out: block-output masks compound along the
    identity path (official) or each BN output is masked once (paper text)."""
    view = lambda m: m.view(1, -1, 1, 1)  # noqa: E731
    h = torch.relu(model.bn(model.conv(x)) * view(m_stream))
    for block, m in zip(model.stage, m1):
        inner = torch.relu(block.bn1(block.conv1(h)) * view(m))
        branch = block.bn2(block.conv2(inner))
        h = torch.relu(branch + h) * view(m_stream) if compound else torch.relu(branch * view(m_stream) + h)
    return model.fc(h.mean((2, 3)))


@pytest.mark.parametrize("placement", ["block_output", "norm_output"])
def test_soft_residual_masks(placement):
    state = _toy_state(soft_residual=placement, order="fixed")
    soft = state.soft_masks()
    stream = _group(state, "conv")
    interior = [_group(state, f"stage.{i}.conv1") for i in range(2)]
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    got = state.forward_masked(x, soft)
    want = _hand_forward(state.model, x, soft[stream], [soft[i] for i in interior], placement == "block_output")
    assert torch.allclose(got, want, atol=1e-10)
    other = _hand_forward(state.model, x, soft[stream], [soft[i] for i in interior], placement != "block_output")
    assert not torch.allclose(got, other, atol=1e-4)  # the two placements differ on soft masks


@pytest.mark.parametrize("zero", [False, True])
def test_block_output_mask_gradients_match_the_hand_computation(zero):
    """Block-output masks are written over the block's output (core.groups.masks._ScaleInPlace);
    the gradients of the weights and of the masks must be those of the plain products. With a
    zero in a mask that needs a gradient the hook multiplies out of place instead."""
    state = _toy_state(order="fixed")
    soft = [m.clone().requires_grad_() for m in state.soft_masks()]
    stream = _group(state, "conv")
    if zero:
        with torch.no_grad():
            soft[stream][0] = 0.0
    interior = [_group(state, f"stage.{i}.conv1") for i in range(2)]
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    weights = torch.randn(4, 5, dtype=torch.float64)
    params = list(state.model.parameters())
    got = torch.autograd.grad((state.forward_masked(x, soft) * weights).sum(), params + soft, allow_unused=True)
    hand = _hand_forward(state.model, x, soft[stream], [soft[i] for i in interior], compound=True)
    want = torch.autograd.grad((hand * weights).sum(), params + soft, allow_unused=True)
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            assert torch.isfinite(g).all() and torch.allclose(g, w, atol=1e-10), float((g - w).abs().max())
    assert float(got[len(params) + stream].abs().max()) > 1e-6


def _saved_bytes(forward) -> int:
    """Bytes of the distinct storages a forward pass keeps for its backward pass."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return sum(storages.values())


@pytest.mark.parametrize("name,width", [("resnet50", 0.25), ("mobilenetv3", 0.5)])
def test_block_output_masks_keep_no_extra_activation(name, width):
    """The soft pass keeps what the dense pass keeps, up to the mask vectors (well under 1 %):
    a block-output mask does not keep the unmasked output beside the masked one (which would
    add every block's output, a sixth of the dense pass's bytes on ResNet-50)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, width=width), 10, 32).train()
    groups = discover_groups(model, torch.zeros(1, 3, 32, 32))
    state = S2HState(model, groups, S2HOptions(), flops_target=0.3, model_name=name, width=width)
    assert state.options.soft_residual == "block_output"
    x = torch.randn(8, 3, 32, 32)
    dense = _saved_bytes(lambda: state.forward_masked(x, None))
    soft = _saved_bytes(lambda: state.forward_masked(x, [m.requires_grad_() for m in state.soft_masks()]))
    assert dense <= soft <= 1.01 * dense, (dense, soft)


def test_block_output_hard_masks_give_the_slimmed_network():
    state = _toy_state()
    hard = state.hard_masks()
    assert all(0 < float(m.sum()) < m.numel() for m in hard)  # every group is pruned
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    state.model.eval()
    slimmed = slim(state.model, state.groups, hard).eval()
    assert torch.allclose(state.forward_masked(x, hard), slimmed(x), atol=1e-10)


# ------------------------------------------------------------------------------- c. resource loss

def test_resource_loss_on_hard_prunable_flops_straight_through():
    state = _toy_state(order="fixed")
    flops = state.flops
    hard = state.masks.hard_widths()
    # the target in the network scope, moved to the prunable layers: fixed FLOPs do not change
    fixed = flops.dense("network") - flops.dense("prunable")
    target = (0.4 * flops.dense("network") - fixed) / flops.dense("prunable")
    ratio = flops.measure(slim(state.model, state.groups, state.hard_masks()), "prunable") / flops.dense("prunable")
    r = state.resource_loss()
    assert float(r.detach()) == pytest.approx((ratio - target) ** 2, rel=1e-9)
    # backward: d ratio / d width at the hard widths, then d E / d u = p_b (kept_b - E)
    widths = [torch.tensor(float(k), dtype=torch.float64, requires_grad=True) for k in hard]
    d_ratio = torch.autograd.grad(flops.count(widths, "prunable") / flops.dense("prunable"), widths)
    got = torch.autograd.grad(r, list(state.masks.logits))
    assert all(float(g.abs().max()) > 1e-8 for g in got)
    for g, logits, size, slope in zip(got, state.masks.logits, state.masks.sizes, d_ratio):
        p = torch.softmax(logits.detach(), 0)
        kept = torch.arange(1, size + 1, dtype=torch.float64)
        expected = (p * kept).sum()
        want = 2 * (ratio - target) * slope * p * (kept - expected)
        assert torch.allclose(g, want, atol=1e-12)


# ------------------------------------------------------------------------------- d. importance order

def test_order_is_resorted_by_l1_norm_every_step():
    state = _toy_state(order="l1_step")
    with torch.no_grad():  # new weights: the order must follow them at the next step
        for p in state.model.parameters():
            p.copy_(torch.randn_like(p))
    state.gradients(torch.randn(4, 3, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3]))
    for group, order in zip(state.groups, state.masks.orders):
        scores = []
        for unit in range(group.size):
            per_layer = [float(state.model.get_submodule(m.layer).weight.detach()[m.index[unit]].abs().sum())
                         for m in group.producers()]
            scores.append(sum(per_layer) / len(per_layer))
        assert [scores[i] for i in order.tolist()] == sorted(scores, reverse=True), group.name
    fixed = _toy_state(order="fixed")
    before = [o.clone() for o in fixed.masks.orders]
    with torch.no_grad():
        for p in fixed.model.parameters():
            p.copy_(torch.randn_like(p))
    fixed.gradients(torch.randn(4, 3, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3]))
    assert all(torch.equal(a, b) for a, b in zip(before, fixed.masks.orders))


# ------------------------------------------------------------------------------- e. A4's balance

def _official_default(dis: torch.Tensor, fp: torch.Tensor, scale: float, dy: float) -> torch.Tensor:
    """`default` fuse of the official mask optimizer, written out for one group."""
    dn, fn = dis.norm(), fp.norm()
    if dy != 0:
        factor = scale / dy
        if dn > fn * factor and fn > 0:
            fp = fp * (dn / fn / factor)
        elif dn < fn * factor and dn > 0:
            dis = dis * (fn / dn * factor)
    return dis + fp


@pytest.mark.parametrize("dy", [1.0, 0.3, 0.01, 0.0])
def test_default_fuse_is_the_official_mode(dy):
    generator = torch.Generator().manual_seed(0)
    g_l = [torch.randn(5, generator=generator, dtype=torch.float64) for _ in range(3)]
    g_g = [torch.randn(5, generator=generator, dtype=torch.float64) for _ in range(3)]
    g_r = [s * torch.randn(5, generator=generator, dtype=torch.float64) for s in (0.01, 1.0, 100.0)]
    got = balance(g_l, g_g, g_r, 5.0, "per_group", "default", dy)
    got_bal = balance(g_l, g_g, g_r, 5.0, "per_group", "bal_only", dy)
    for a, b, r, out, out_bal in zip(g_l, g_g, g_r, got, got_bal):
        dis = a / a.norm() + b / b.norm()
        assert torch.allclose(out, 5.0 * _official_default(dis, r, 0.2, dy), atol=1e-10)
        # bal_only (the official mode of that name): dis scaled to 0.2 |R|, plus R; times coef_r
        assert torch.allclose(out_bal, 5.0 * (r + dis * (0.2 * r.norm() / dis.norm())), atol=1e-10)
        if dy == 1.0:  # same direction as bal_only while R is above the relax threshold
            assert torch.allclose(out / out.norm(), out_bal / out_bal.norm(), atol=1e-10)


# ------------------------------------------------------------------------------- g. BatchNorm

def test_recalibration_is_the_official_bn_reset():
    """The official masked BN keeps no running statistics and the hard network is evaluated
    after a reset that recomputes them on training batches: a cumulative average over them."""
    state = _toy_state()
    net = slim(state.model, state.groups, state.hard_masks())
    batches = [(torch.randn(8, 3, 6, 6, dtype=torch.float64), None) for _ in range(3)]
    recalibrate_bn(net, batches)
    with torch.no_grad():  # the first BN's inputs, batch by batch
        firsts = [net.conv(x) for x, _ in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in firsts]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in firsts]).mean(0)
    assert torch.allclose(net.bn.running_mean, mean, atol=1e-10)
    assert torch.allclose(net.bn.running_var, var, atol=1e-10)


def test_paper_text_options_are_the_previous_defaults():
    """Each paper-text value differs from the official default it replaces (so each is a real
    switch), and the routing test (test_algorithm.py) checks them against the paper's text."""
    default = S2HOptions()
    for key, value in PAPER_TEXT.items():
        assert getattr(default, key) != value, key
