"""The hard network at its kept widths, trained through the full network's own parameters.

A hard (0/1) group mask set defines a smaller network: `slim` builds it as a separate copy.
Training needs more: the hard network's gradients must land in the full network's weights,
which the soft network shares. `SlicedNetwork(model, groups)` runs the hard network at its
kept widths and does exactly that:

- every call gathers each parameter and buffer of `model` at the kept indices
  (`index_select` per sliced dimension), so autograd scatters the gradients back into the full
  tensors (zeros at the removed indices) and the optimizer of the full model trains the kept
  slices: the same gradients as the masked full-width pass, at the hard network's FLOPs;
- the module structure (shapes, depthwise groups, head counts, softmax scales) is a `slim` of a
  copy of the model on the meta device, which holds no data; it is rebuilt only when the kept
  widths change, and indices (which units are kept) may change every call at no rebuild;
- BatchNorm running statistics: a training-mode pass updates the gathered copies, which are
  written back into the kept channels of the full buffers. The removed channels' statistics
  are left as they were, where the masked full-width pass would also have folded this batch
  into them (the removed channels' pre-mask values). Nothing evaluated or exported reads
  them: hard and soft networks are evaluated after BatchNorm recalibration, and the hard
  network, exported, has no removed channels.

Which tensor dimensions a group member indexes follows from its layer kind, as in torch-pruning's
pruning functions: a conv or linear producer its weight's rows (and bias), a consumer its
weight's columns, a depthwise conv its rows either way, BatchNorm its affine parameters and
running statistics, LayerNorm its last dimension, a free parameter its `dim`, and the heads of
an attention module with a relative position bias its table's last dimension. Whether that
reading is right for a model is checked once, at construction: the gathered tensors must equal
those of a real `slim` exactly and the outputs must agree. A model that fails the check (a
layer kind not covered, a module holding tensors outside its parameters and buffers) keeps the
masked full-width pass: `usable` is False and `reason` says why, in one line.

Random layers: a pass draws the same random numbers as the masked one where the draw does not
depend on the width (drop-path draws one number per sample); element-wise dropout on a pruned
width draws fewer numbers, so the two passes differ in their random draws there.
"""

from __future__ import annotations

import copy
import itertools
from collections import defaultdict
from typing import Sequence

import torch
import torch.nn as nn
from torch.func import functional_call

from core.groups.slim import slim
from core.groups.structure import GroupSet, Member
from core.measure import eval_mode

# (tensor attribute, dimension) indexed by a member, per layer kind and role
_DIMS: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {
    ("conv", "out"): (("weight", 0), ("bias", 0)),
    ("conv", "in"): (("weight", 1),),
    ("linear", "out"): (("weight", 0), ("bias", 0)),
    ("linear", "in"): (("weight", 1),),
    ("depthwise", "out"): (("weight", 0), ("bias", 0)),
    ("depthwise", "in"): (("weight", 0), ("bias", 0)),
    ("batchnorm", "out"): (("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)),
    ("batchnorm", "in"): (("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)),
    ("layernorm", "out"): (("weight", -1), ("bias", -1)),
    ("layernorm", "in"): (("weight", -1), ("bias", -1)),
}

Slices = dict[str, list[tuple[int, torch.Tensor]]]  # tensor name -> [(dim, kept indices)]


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters and buffers live on the meta device (no data)."""
    memo: dict[int, object] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


class SlicedNetwork:
    """`model` under 0/1 masks of `groups`, run at the kept widths (see the module docstring)."""

    def __init__(self, model: nn.Module, groups: GroupSet, check: bool = True) -> None:
        self.model, self.groups = model, groups
        self._targets = self._member_targets()
        self._meta = _meta_copy(model)
        self._skeleton: nn.Module | None = None
        self._widths: tuple[int, ...] | None = None
        self._slices: tuple[tuple[bytes, ...], Slices] | None = None
        self.usable, self.reason = True, ""
        if check:
            self.usable, self.reason = self._check()

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """The model's parameters and buffers by name, read afresh (`.to()` and `.double()`
        replace buffer tensors)."""
        return dict(itertools.chain(self.model.named_parameters(), self.model.named_buffers()))

    # ----------------------------------------------------------------------------- indices

    def _member_targets(self) -> list[list[tuple[Member | None, str, int]]]:
        """Per group, (member, tensor name, dim) of every tensor dimension it indexes; the
        member None stands for a per-unit table (heads' relative position bias)."""
        tensors = self.tensors
        targets: list[list[tuple[Member | None, str, int]]] = []
        for group in self.groups:
            found: list[tuple[Member | None, str, int]] = []
            for member in group.members:
                if member.role == "param":
                    found.append((member, member.layer, member.dim))
                    continue
                dims = _DIMS.get((member.op, member.role))
                if dims is None:
                    raise ValueError(f"{member.layer}: no slicing rule for a {member.op} {member.role} member")
                found += [(member, f"{member.layer}.{attr}", dim) for attr, dim in dims
                          if f"{member.layer}.{attr}" in tensors]
            table = f"{group.attention}.relative_position_bias_table"
            if group.kind == "head" and table in tensors:
                found.append((None, table, -1))
            targets.append(found)
        return targets

    def slices(self, kept: Sequence[torch.Tensor]) -> Slices:
        """Per tensor name, the kept indices of each sliced dimension, for per-group 0/1 `kept`."""
        masks: dict[tuple[str, int], torch.Tensor] = {}
        tensors = self.tensors
        for group, keep, targets in zip(self.groups, kept, self._targets):
            dropped = (~keep).nonzero().flatten()
            if dropped.numel() == 0:
                continue
            for member, name, dim in targets:
                tensor = tensors[name]
                dim = dim % tensor.dim()
                index = dropped if member is None else member.index[dropped].flatten()
                mask = masks.get((name, dim))
                if mask is None:
                    mask = masks[(name, dim)] = torch.ones(tensor.shape[dim], dtype=torch.bool)
                mask[index] = False
        result: Slices = defaultdict(list)
        for (name, dim), mask in sorted(masks.items()):
            result[name].append((dim, mask.nonzero().flatten().to(tensors[name].device)))
        return dict(result)

    def _cached_slices(self, kept: list[torch.Tensor]) -> Slices:
        key = tuple(k.numpy().tobytes() for k in kept)
        if self._slices is None or self._slices[0] != key:
            self._slices = (key, self.slices(kept))
        return self._slices[1]

    # ----------------------------------------------------------------------------- passes

    def _structure(self, kept: list[torch.Tensor]) -> nn.Module:
        widths = tuple(int(k.sum()) for k in kept)
        if widths != self._widths:
            self._skeleton = slim(self._meta, self.groups, [k.float() for k in kept])
            self._widths = widths
        assert self._skeleton is not None
        return self._skeleton

    def gathered(self, slices: Slices, tensors: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the model (`tensors`, default: read afresh) at the kept
        indices (autograd-connected)."""
        out = {}
        for name, tensor in (self.tensors if tensors is None else tensors).items():
            for dim, index in slices.get(name, ()):
                tensor = tensor.index_select(dim, index)
            out[name] = tensor
        return out

    def __call__(self, x: torch.Tensor, masks: Sequence[torch.Tensor], statistics: bool = True) -> torch.Tensor:
        """The hard network's outputs for 0/1 `masks` (one per group, in unit space); with
        `statistics` False a training-mode pass leaves the BatchNorm running statistics alone
        (a pass repeated on the same batch)."""
        kept = [torch.as_tensor(m).detach().cpu() > 0.5 for m in masks]
        if len(kept) != len(self.groups):
            raise ValueError(f"expected {len(self.groups)} group masks, got {len(kept)}")
        skeleton = self._structure(kept)
        slices = self._cached_slices(kept)
        full = self.tensors
        tensors = self.gathered(slices, full)
        buffers = [name for name, _ in self.model.named_buffers()]
        if not statistics:  # buffers the pass would update in place: copies
            tensors.update({name: tensors[name].clone() for name in buffers})
        skeleton.train(self.model.training)
        out = functional_call(skeleton, tensors, (x,))
        if self.model.training and statistics:  # BatchNorm statistics of the kept channels go back to the full buffers
            with torch.no_grad():
                for name in buffers:
                    if name not in slices or not full[name].is_floating_point():
                        continue
                    (dim, index), = slices[name]
                    # `.data`: as BatchNorm's own update, this must not bump the version of a
                    # buffer the soft pass's graph saved (its backward never reads the statistics)
                    full[name].data.index_copy_(dim, index, tensors[name])
        return out

    # ----------------------------------------------------------------------------- the check

    def _check(self) -> tuple[bool, str]:
        """Gathered tensors equal to a real slim's, outputs equal to it, on random masks."""
        generator = torch.Generator().manual_seed(0)
        kept = []
        for group in self.groups:
            keep = torch.rand(group.size, generator=generator) < 0.6
            keep[torch.randint(group.size, (1,), generator=generator)] = True
            kept.append(keep)
        masks = [k.float() for k in kept]
        try:
            tensors = self.tensors
            slices = self.slices(kept)
            for name, spec in slices.items():
                if len(spec) > 1 and not isinstance(tensors[name], nn.Parameter):
                    return False, f"buffer {name} is sliced in {len(spec)} dimensions"
            reference = slim(self.model, self.groups, masks)
            expected = dict(itertools.chain(reference.named_parameters(), reference.named_buffers()))
            with torch.no_grad():
                got = self.gathered(slices, tensors)
            if set(expected) != set(got):
                return False, f"tensors differ from a slim's: {sorted(set(expected) ^ set(got))[:3]}"
            for name, tensor in expected.items():
                if tensor.shape != got[name].shape or not torch.equal(tensor, got[name]):
                    return False, f"{name}: gathered {tuple(got[name].shape)}, a slim has {tuple(tensor.shape)}"
            device = next(iter(tensors.values())).device
            dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
            x = torch.randn(2, self.groups.channels, self.groups.image_size, self.groups.image_size,
                            generator=generator).to(device=device, dtype=dtype)
            try:
                with torch.no_grad(), eval_mode(self.model):
                    want, have = reference.eval()(x), self(x, masks)
            finally:
                self._widths, self._skeleton = None, None
            if not torch.allclose(want, have, rtol=1e-3, atol=1e-4 * float(want.abs().max().clamp_min(1.0))):
                return False, f"outputs differ from a slim's by {float((want - have).abs().max()):.3g}"
        except Exception as exc:  # any failure of the check means: keep the masked pass
            return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return True, ""

