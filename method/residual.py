"""Where S2HPruner's mask of a CNN's residual stream multiplies activations.

The substrate (`core.groups`) masks every producer of a group once, after its normalisation
layer: on a residual stream that is each block's last BatchNorm and its projection shortcut's.
The official code instead multiplies each block's output, after the addition and the ReLU
(`big_resnet_ddp.py` 4592, 4982, 5051: the mask travels with the last convolution's output
and is applied in the ReLU that follows the addition). Along the identity path the soft mask
then compounds: a block's input already carries m, its output m * relu(branch + m * x), the
next m * relu(branch' + m * (...)), and so on.

For 0/1 masks both placements give the slimmed network (m^2 = m, and a removed channel is
zero either way), so hard passes, FLOPs and exports do not change; the soft network, its loss
and every mask gradient do.

`block_output_groups(model, groups)` rewrites the mask points of each CNN residual group: a
mask point inside a block (a module whose parent is an `nn.Sequential` stage, e.g.
`layer1.0` of a torchvision ResNet, `features.3` of MobileNetV3) is
replaced by one mask point on that block's output; a mask point outside every block (a stem
whose output starts the stream) stays. Only streams whose mask points are all BatchNorm
outputs are rewritten (ResNet-50, MobileNetV3, torchvision ResNets). The others keep the
substrate's placement: transformer streams mask LayerNorms, whose statistics must be taken
over the kept channels, and the pre-activation WRN masks its stream where each consumer's
BatchNorm makes it a feature; the official code has neither architecture, so there is nothing
to follow there.
"""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from core.groups import GroupSet
from core.groups.structure import Group, MaskPoint


def enclosing_block(name: str, modules: dict[str, nn.Module]) -> str | None:
    """The outermost ancestor of `name` that is an element of an `nn.Sequential`, if any."""
    parts = name.split(".")
    for depth in range(1, len(parts)):
        parent, candidate = ".".join(parts[:depth - 1]), ".".join(parts[:depth])
        if depth > 1 and isinstance(modules.get(parent), nn.Sequential) and candidate != name:
            return candidate
    return None


def _block_points(group: Group, modules: dict[str, nn.Module]) -> tuple[MaskPoint, ...]:
    points: list[MaskPoint] = []
    blocks: set[str] = set()
    for point in group.mask_points:
        block = enclosing_block(point.layer, modules)
        if block is None:
            points.append(point)
        elif block not in blocks:
            blocks.add(block)
            points.append(MaskPoint(block, "output", point.index, 1))
    return tuple(points)


def block_output_groups(model: nn.Module, groups: GroupSet) -> GroupSet:
    """`groups` with the residual streams of CNNs masked at block outputs (module docstring)."""
    modules = dict(model.named_modules())
    rewritten = []
    for group in groups:
        cnn_stream = group.kind == "residual" and all(
            p.where == "output" and isinstance(modules.get(p.layer), nn.modules.batchnorm._BatchNorm)
            for p in group.mask_points)
        rewritten.append(dataclasses.replace(group, mask_points=_block_points(group, modules)) if cnn_stream else group)
    return dataclasses.replace(groups, groups=rewritten)
