"""Finding a model's channel groups with torch-pruning's DependencyGraph.

`discover_groups(model, example_input)` traces the model once and returns a `GroupSet`:
every set of channels that must be removed together, described by module names and index
maps (see `structure.py`). Coupling across layers (residual streams, a conv with its BN and
consumers, depthwise convs with their producer, squeeze-excite) comes from the
DependencyGraph; modules whose internal layout the tracer cannot follow go through the
adapters of `adapters.py`, which also add the attention head / head-dim groups.

Exclusions. The group of the network's output layer (the classes) is never prunable. The
stem group (the channels of the first layer) is excluded unless `include_stem`, except where
it is a transformer's embedding width (the group holds a LayerNorm): the paper prunes that
width for ViT and Swin (Fig. 4 d, e). `keep` names layers whose output channels stay whole.

Group counts against the paper (Appendix D, Fig. 4), for the zoo's models (all asserted in
tests/core/groups):
- ResNet-50: 36 = 16 blocks x 2 interior groups + 4 stage residual streams. The stem's 64
  channels feed only the first block's conv1 and downsample and are excluded, as in Fig. 4.
- MobileNetV3-Large: 29 = 14 expanded (depthwise) widths + 8 squeeze-excite hidden widths +
  5 residual streams (24, 40, 80, 112, 160) + the 960 last-conv width + the 1280 classifier
  hidden width. The 16-channel stem stream (shared with the first block) is excluded.
- WRN-28-10: 15 = 12 blocks' interior width + 3 stage residual streams.
- ViT (9 blocks): 19 = 1 residual width + 9 x (heads + MLP hidden).
- Swin (depths 2, 6, 4): 27 = 3 stage residual widths + 12 x (head dims + MLP hidden).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Iterable

import torch
import torch.nn as nn
import torch_pruning as tp

from core.config import PruneConfig
from core.groups.adapters import AttentionAdapter, adapter_for
from core.groups.structure import Group, GroupSet, MaskPoint, Member
from core.measure import device_of, eval_mode

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Autograd nodes that move channels without mixing them: a mask can be read through them.
SHAPE_OPS = ("Permute", "Transpose", "View", "Reshape", "Flatten", "Clone", "Alias",
             "Unsqueeze", "Squeeze", "Expand", "ConstantPadNd", "T", "UnsafeView")
GATES = ("Sigmoid", "Hardsigmoid")


class UnsupportedLayer(ValueError):
    """A layer in a prunable group that the substrate cannot mask or slim exactly."""


def _op_name(node: tp.dependency.Node) -> str:
    fn = node.grad_fn
    return fn.name() if fn is not None and hasattr(fn, "name") else type(node.module).__name__


def _op_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Parameter):
        return "param"
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        depthwise = module.groups == module.in_channels == module.out_channels and module.groups > 1
        if module.groups > 1 and not depthwise:
            raise UnsupportedLayer(f"grouped convolution ({module.groups} groups) is not supported")
        return "depthwise" if depthwise else "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        return "batchnorm"
    if isinstance(module, nn.LayerNorm):
        # Masks are applied on the last dimension; channels-first variants are not supported.
        if len(module.normalized_shape) != 1 or type(module).__name__.endswith("2d"):
            raise UnsupportedLayer(f"{type(module).__name__} over {tuple(module.normalized_shape)} is not supported")
        return "layernorm"
    raise UnsupportedLayer(f"{type(module).__name__} cannot be pruned by this substrate")


def _unit_index(idxs: list[int], root_idxs: list[int], size: int) -> torch.Tensor:
    """index[u] = the layer indices DependencyGraph maps root channel u to."""
    per: dict[int, list[int]] = defaultdict(list)
    for i, r in zip(idxs, root_idxs):
        per[int(r)].append(int(i))
    counts = {len(v) for v in per.values()}
    if sorted(per) != list(range(size)) or len(counts) != 1:
        raise UnsupportedLayer("channels map unevenly onto a layer")
    return torch.tensor([sorted(per[u]) for u in range(size)], dtype=torch.long)


class _Tracer:
    """The DependencyGraph of one model plus what the discovery needs to know about it."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        self.model = model
        self.names = {m: n for n, m in model.named_modules()}
        self.param_names = {p: n for n, p in model.named_parameters()}
        self.adapted: dict[nn.Module, type] = {}
        for name, module in model.named_modules():
            if any(name.startswith(a + ".") for a in map(self.names.get, self.adapted)):
                continue
            adapter = adapter_for(module)
            if adapter is not None:
                self.adapted[module] = adapter
        adapted_types = {type(m): a for m, a in self.adapted.items()}
        for module in model.modules():
            if type(module) in adapted_types and module not in self.adapted:
                raise UnsupportedLayer(f"{type(module).__name__} instance {self.names[module]} does not fit its adapter")
        self.order = self._execution_order(example)
        with warnings.catch_warnings(), eval_mode(model), torch.enable_grad():
            warnings.simplefilter("ignore")  # torch-pruning announces unwrapped parameters
            self.graph = tp.DependencyGraph().build_dependency(
                model, example, customized_pruners={t: a.Pruner() for t, a in adapted_types.items()}, verbose=False
            )

    def _execution_order(self, example: torch.Tensor) -> dict[nn.Module, int]:
        order: dict[nn.Module, int] = {}

        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            order.setdefault(module, len(order))

        watched = [m for m in self.model.modules() if not list(m.children()) or m in self.adapted]
        handles = [m.register_forward_hook(record) for m in watched]
        try:
            with eval_mode(self.model), torch.no_grad():
                self.model(example)
        finally:
            for h in handles:
                h.remove()
        return order

    def successors(self, module: nn.Module) -> list[object]:
        """Modules (or op names) that read `module`'s output, looking through shape-only ops."""
        found: list[object] = []
        stack, seen = list(self.graph.module2node[module].outputs), set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node.module in self.names:
                found.append(node.module)
                continue
            op = _op_name(node)
            if op.rstrip("0123456789").removesuffix("Backward") in SHAPE_OPS or type(node.module).__name__ == "_ReshapeOp":
                stack.extend(node.outputs)
            else:
                found.append(op)
        return found

    def groups(self) -> list[tuple[list[Member], list[MaskPoint], set[str], int]]:
        """Every DependencyGraph group as (members, mask points, op names, size)."""
        roots = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear) + tuple({type(m) for m in self.adapted})
        result = []
        for group in self.graph.get_all_groups(root_module_types=roots):
            size = len(group.items[0].idxs)
            members: list[Member] = []
            points: list[MaskPoint] = []
            ops: set[str] = set()
            norms_out: set[nn.Module] = set()
            producers: list[tuple[nn.Module, Member]] = []
            for item in group.items:
                target, handler = item.dep.target, item.dep.handler
                module = target.module
                if isinstance(module, nn.Parameter):
                    index = _unit_index(item.idxs, item.root_idxs, size)
                    members.append(Member(self.param_names[module], "param", "param", index, target.pruning_dim))
                    continue
                if module not in self.names:
                    ops.add(_op_name(target))
                    continue
                role = "out" if self.graph.is_out_channel_pruning_fn(handler) else "in"
                index = _unit_index(item.idxs, item.root_idxs, size)
                name = self.names[module]
                if module in self.adapted:
                    sub_members, sub_points = self.adapted[module].expand(name, module, role, index)
                    members += sub_members
                    points += sub_points
                    continue
                member = Member(name, role, _op_kind(module), index)
                members.append(member)
                if role == "out" and member.op in ("batchnorm", "layernorm"):
                    norms_out.add(module)
                    where = "norm" if member.op == "layernorm" else "output"
                    points.append(MaskPoint(name, where, index, -1 if where == "norm" else 1))
                elif role == "out" and member.op != "param":
                    producers.append((module, member))
            for module, member in producers:
                after = self.successors(module)
                feeds_norm = bool(after) and all(m in norms_out for m in after)
                gated = any(isinstance(m, str) and any(g in m for g in GATES) for m in after)
                if not (feeds_norm or gated):
                    points.append(MaskPoint(member.layer, "output", member.index, -1 if member.op == "linear" else 1))
            result.append((members, points, ops, size))
        return result


def _kind(members: list[Member], ops: set[str]) -> str:
    if any(op.startswith("AddBackward") for op in ops):
        return "residual"
    weighted = [m for m in members if m.op in ("conv", "depthwise", "linear")]
    if weighted and all(m.op == "linear" for m in weighted):
        return "mlp"
    return "interior"


def discover_groups(
    model: nn.Module,
    example: torch.Tensor,
    *,
    include_stem: bool = False,
    keep: Iterable[str] = (),
    attention: str = "auto",
) -> GroupSet:
    """The prunable groups of `model` for inputs shaped like `example` (see module docstring).

    `attention`: 'heads' or 'head_dims' for every attention module, or 'auto' (windowed
    attention, as in Swin, prunes head dims; global attention, as in ViT, prunes heads).
    """
    keep = set(keep)
    names = {n for n, _ in model.named_modules()}
    unknown = sorted(keep - names)
    if unknown:
        raise ValueError(f"keep names no layer of the model: {', '.join(unknown)}")
    tracer = _Tracer(model, example)
    order = {tracer.names[m]: i for m, i in tracer.order.items()}
    # An adapted module's sub-layers run in its place.
    for module, i in tracer.order.items():
        for sub, _ in module.named_modules(prefix=tracer.names[module]):
            order.setdefault(sub, i)
    weighted = [tracer.names[m] for m in tracer.order if isinstance(m, WEIGHTED)]
    first = min(weighted, key=order.get)  # the stem's producer
    last = max(weighted, key=order.get)  # the classifier

    def position(members: list[Member] | tuple[Member, ...]) -> int:
        return min((order.get(m.layer, len(order)) for m in members if m.role == "out"), default=len(order))

    kept: list[Group] = []
    excluded: list[Group] = []
    for members, points, ops, size in tracer.groups():
        out_layers = {m.layer for m in members if m.role == "out"}
        producers = [m for m in members if m.role == "out" and m.op in ("conv", "depthwise", "linear")]
        name = min(producers, key=lambda m: order.get(m.layer, len(order))).layer if producers else members[0].layer
        # A transformer's embedding width (normalised by LayerNorm) is pruned, not a stem.
        stem = first in out_layers and not any(m.op == "layernorm" for m in members)
        members.sort(key=lambda m: (order.get(m.layer, -1), m.role))
        group = Group(name, _kind(members, ops), size, tuple(members), tuple(points))
        if last in out_layers or (stem and not include_stem) or out_layers & keep:
            excluded.append(group)
        else:
            kept.append(group)
    for module, adapter in tracer.adapted.items():
        if adapter is AttentionAdapter:
            name = tracer.names[module]
            group = AttentionAdapter.inner_group(name, module, attention)
            (excluded if {name, f"{name}.qkv"} & keep else kept).append(group)
    kept.sort(key=lambda g: position(g.members))
    excluded.sort(key=lambda g: position(g.members))
    size = int(example.shape[-1])
    return GroupSet(kept, excluded, image_size=size, channels=int(example.shape[1]))


def groups_for_run(model: nn.Module, prune: PruneConfig, image_size: int, channels: int = 3) -> GroupSet:
    """The groups a run's pruner works on, as its `prune` config asks."""
    example = torch.zeros(1, channels, image_size, image_size, device=device_of(model))
    return discover_groups(model, example, include_stem=prune.include_stem, keep=prune.keep, attention=prune.attention)
