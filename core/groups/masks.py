"""Applying group masks to a live network.

`GroupMasks(model, groups)` installs one forward hook per mask point, once. The hooks do
nothing until masks are given (`with masker.use(masks): model(x)` or `masker.set(masks)`), so
the same network runs dense, soft (real-valued masks, differentiable with respect to them) and
hard (0/1 masks) passes. A 0/1 mask set gives exactly the outputs of the physically slimmed
network: producers are masked after their normalisation layer, so BatchNorm cannot refill a
removed channel, and LayerNorms over a masked width take their statistics over the kept
channels only (weighted by the mask, which for 0/1 masks is the slim LayerNorm).

A mask on a BatchNorm's output (its channel dimension, the only mask on that layer) is folded
into the BatchNorm's affine parameters for the call (`_FoldedNormHook`): the same values up to
rounding, without a full-size multiplication or an extra activation kept for the backward pass.

A mask on a block's output (S2HPruner's residual-stream masks, after a ResNet block's final
ReLU or a MobileNetV3 block's addition) is written over the block's output (`_ScaleInPlace`):
the masked and the unmasked tensor would otherwise both be kept for the backward pass, one
extra full-size activation per block (432 MB of 2,080 for full-width CIFAR ResNet-50 at batch
64), the largest tensors of the network.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from core.groups.structure import GroupSet, MaskPoint, expand_mask


def masked_layer_norm(x: torch.Tensor, mask: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the last dimension with statistics weighted by `mask`, output masked."""
    weight_sum = mask.sum()
    mean = (x * mask).sum(-1, keepdim=True) / weight_sum
    centred = x - mean
    var = (centred.square() * mask).sum(-1, keepdim=True) / weight_sum
    y = centred * torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        y = y * norm.weight
    if norm.bias is not None:
        y = y + norm.bias
    return y * mask


# Nodes that keep nothing of the tensor they produce but its sign: a ReLU's backward keeps its
# result and reads only where it is positive; an addition and a BatchNorm keep none of it.
_SIGN_ONLY_NODES = ("ReluBackward0", "AddBackward0", "NativeBatchNormBackward0")


class _ScaleInPlace(torch.autograd.Function):
    """y = x * s (s >= 0, broadcast over x), written over x's storage, x's graph kept.

    The storage is overwritten behind autograd's version counter (`x.data`): the node that made
    x is a ReLU (it reads the sign of what it kept: x * s > 0 exactly where x > 0 wherever
    s > 0, and where s = 0 the gradient it receives, g * s, is zero), an addition or a
    BatchNorm (they kept none of x); x is what a block returns, which no other node of the
    zoo's blocks keeps. The gradient of s is sum(g * y) / s, which needs s > 0 wherever it is
    asked for (it equals sum(g * x) up to rounding). `_MaskHook` checks these conditions
    before it takes this path.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x.data.mul_(scale)
        ctx.save_for_backward(x, scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        y, scale = ctx.saved_tensors
        grad_x = grad * scale if ctx.needs_input_grad[0] else None
        grad_scale = _channel_dot(grad, y, scale) / scale if ctx.needs_input_grad[1] else None
        return grad_x, grad_scale


def _channel_dot(grad: torch.Tensor, y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """sum(grad * y) over the dimensions `scale` is broadcast along, shaped like `scale`.

    A per-channel scale of contiguous (N, C, ...) tensors takes N * C dot products (`bmm`),
    a third of the time of the full-size product and its sum on a CPU, without the product.
    """
    n, c = grad.shape[0], grad.shape[1] if grad.dim() > 1 else 1
    per_channel = scale.dim() == grad.dim() > 1 and scale.numel() == c == scale.shape[1]
    if per_channel and grad.is_contiguous() and y.is_contiguous():
        dots = torch.bmm(grad.reshape(n * c, 1, -1), y.reshape(n * c, -1, 1))
        return dots.view(n, c).sum(0).view(scale.shape)
    dims = [d for d in range(grad.dim()) if scale.shape[d] == 1]
    return (grad * y).sum(dims, keepdim=True)


def _scales_in_place(module: nn.Module, inputs: tuple, output: torch.Tensor, scale: torch.Tensor) -> bool:
    """Whether a block's output may be masked by `_ScaleInPlace` (see there): a block (not a
    single layer, whose in-place ReLU may share its input's storage) whose output is a new
    tensor made by one of `_SIGN_ONLY_NODES`, and a mask that is >= 0 (> 0 if it needs a
    gradient)."""
    if not (torch.is_grad_enabled() and output.requires_grad) or next(module.children(), None) is None:
        return False
    if output._base is not None or type(output.grad_fn).__name__ not in _SIGN_ONLY_NODES:
        return False
    if any(isinstance(t, torch.Tensor) and t.data_ptr() == output.data_ptr() for t in inputs):
        return False
    with torch.no_grad():
        return bool((scale > 0).all() if scale.requires_grad else (scale >= 0).all())


class _MaskHook:
    """One mask point's hook; a marked class so that copies of a model can be stripped of it."""

    def __init__(self, owner: "GroupMasks", group: int, point: MaskPoint) -> None:
        self.owner, self.group, self.point = owner, group, point
        self._index: dict[torch.device, torch.Tensor] = {}

    def __deepcopy__(self, memo: dict) -> "_MaskHook":
        # Copies of the model share the hook object, which `strip_mask_hooks` then removes.
        return self

    def _channel_mask(self, channels: int, like: torch.Tensor) -> torch.Tensor | None:
        masks = self.owner.masks
        if masks is None:
            return None
        mask = masks[self.group].to(device=like.device, dtype=like.dtype)
        index = self._index.get(like.device)
        if index is None:  # copied to the activations' device once, not every forward pass
            index = self._index[like.device] = self.point.index.to(like.device)
        return expand_mask(mask, index, channels)

    def _view(self, full: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        dim = self.point.dim % x.dim()
        shape = [1] * x.dim()
        shape[dim] = full.numel()
        return full.view(shape)

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor | None = None):
        if self.point.where == "input":
            x = inputs[0]
            full = self._channel_mask(x.shape[self.point.dim], x)
            return None if full is None else (x * self._view(full, x),) + tuple(inputs[1:])
        full = self._channel_mask(output.shape[self.point.dim], output)
        if full is None:
            return None
        if self.point.where == "norm":
            return masked_layer_norm(inputs[0], full, module)
        scale = self._view(full, output)
        if _scales_in_place(module, inputs, output, scale):
            return _ScaleInPlace.apply(output, scale)
        return output * scale


class _FoldedNormHook(_MaskHook):
    """A mask on a BatchNorm's output folded into its affine parameters (a forward pre-hook).

    BN(x) * m = x_hat * (gamma * m) + beta * m: the values of the masked output up to rounding,
    with no full-size multiplication forward or backward and no extra activation kept for the
    backward pass (the mask's gradient comes out of BatchNorm's own per-channel reductions).
    The parameters are swapped for the products for the duration of the call; `_Restore`, a
    forward hook that runs even when the forward raises, puts them back.
    """

    def __init__(self, owner: "GroupMasks", group: int, point: MaskPoint) -> None:
        super().__init__(owner, group, point)
        self.saved: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor | None = None):
        full = self._channel_mask(module.num_features, inputs[0])
        if full is None:
            return None
        weight, bias = module._parameters["weight"], module._parameters["bias"]
        self.saved = (weight, bias)
        module._parameters["weight"] = weight * full
        module._parameters["bias"] = bias * full
        return None


class _Restore(_MaskHook):
    def __init__(self, fold: _FoldedNormHook) -> None:
        super().__init__(fold.owner, fold.group, fold.point)
        self.fold = fold

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor | None = None):
        if self.fold.saved is not None:
            module._parameters["weight"], module._parameters["bias"] = self.fold.saved
            self.fold.saved = None
        return None


def _foldable(module: nn.Module, point: MaskPoint, points_on_module: int) -> bool:
    """A BatchNorm's output masked on its channel dimension, by this mask point alone."""
    return (isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine and point.where == "output"
            and point.dim == 1 and points_on_module == 1)


class GroupMasks:
    """Mask hooks on `model` for the groups of `groups` (see module docstring)."""

    def __init__(self, model: nn.Module, groups: GroupSet) -> None:
        self.groups = groups
        self.masks: list[torch.Tensor] | None = None
        self._handles = []
        modules = dict(model.named_modules())
        count = Counter(point.layer for group in groups for point in group.mask_points)
        for g, group in enumerate(groups):
            for point in group.mask_points:
                module = modules[point.layer]
                if _foldable(module, point, count[point.layer]):
                    fold = _FoldedNormHook(self, g, point)
                    self._handles.append(module.register_forward_pre_hook(fold))
                    self._handles.append(module.register_forward_hook(_Restore(fold), always_call=True))
                    continue
                hook = _MaskHook(self, g, point)
                if point.where == "input":
                    self._handles.append(module.register_forward_pre_hook(hook))
                else:
                    self._handles.append(module.register_forward_hook(hook))

    def set(self, masks: Sequence[torch.Tensor] | None) -> None:
        """Masks for the following forward passes (one vector per group), or None for dense."""
        if masks is not None:
            masks = list(masks)
            self.groups.check_masks(masks)
        self.masks = masks

    @contextlib.contextmanager
    def use(self, masks: Sequence[torch.Tensor] | None) -> Iterator[None]:
        previous = self.masks
        self.set(masks)
        try:
            yield
        finally:
            self.masks = previous

    def remove(self) -> None:
        """Take the hooks off the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def strip_mask_hooks(model: nn.Module) -> None:
    """Remove every mask hook from `model` (a deep copy carries copies of them)."""
    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for key in [k for k, h in hooks.items() if isinstance(h, _MaskHook)]:
                del hooks[key]
