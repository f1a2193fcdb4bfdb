"""`python -m core.groups MODEL`: a model's prunable groups, and random slimming for checks.

    python -m core.groups resnet50 --dataset cifar100          # the inventory
    python -m core.groups vit --width 0.5 --json               # the same, as JSON
    python -m core.groups swin --random-keep 0.35 --seed 0 --export /tmp/swin.pt --json

The inventory lists every group: index, kind, size (units), FLOPs share (FLOPs of the layers
the group touches over the network's) and member layers; excluded groups (stem, classifier,
`--keep`) follow, marked. `--random-keep F` keeps a random round(F x size) units (at least
one) of every group, slims the network physically, optionally saves it (`--export`, weights only
with the architecture as data, as a run's pruned.pt: `core.export.load_pruned` reads it) and reports FLOPs (FlopCounterMode on the slimmed module)
and parameters against the dense model. Exit status 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import torch

from core.errors import ConfigError, SuiteError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.groups", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model of the zoo (resnet50, mobilenetv3, wrn28_10, vit, swin)")
    parser.add_argument("--dataset", default="cifar100", help="sets classes and resolution (default cifar100)")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1.0: the paper's model)")
    parser.add_argument("--image-size", type=int, default=None, help="input resolution (default: the dataset's)")
    parser.add_argument("--include-stem", action="store_true", help="make the stem's channels prunable too")
    parser.add_argument("--keep", action="append", default=[], metavar="LAYER", help="never prune this layer's outputs")
    parser.add_argument("--attention", default="auto", choices=("auto", "heads", "head_dims"), help="attention units")
    parser.add_argument("--random-keep", type=float, default=None, metavar="F", help="slim with random masks keeping about F of each group")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random masks")
    parser.add_argument("--export", type=Path, default=None, metavar="PATH", help="save the slimmed module here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _inventory(groups, flops, dense_total: float) -> list[dict]:
    shares: dict[int, float] = {}
    for g in range(len(groups)):
        touched = [t for t in flops.terms if any(i == g for i, _ in t.inputs.terms + t.outputs.terms)]
        shares[g] = sum(t.dense for t in touched) / dense_total
    rows = []
    for g, group in enumerate(groups):
        rows.append({"index": g, "name": group.name, "kind": group.kind, "size": group.size, "flops_share": shares[g],
                     "members": [f"{m.layer}:{m.role}" for m in group.members], "prunable": True})
    for group in groups.excluded:
        rows.append({"index": None, "name": group.name, "kind": group.kind, "size": group.size, "flops_share": None,
                     "members": [f"{m.layer}:{m.role}" for m in group.members], "prunable": False})
    return rows


def _print_inventory(rows: list[dict], header: str) -> None:
    print(header)
    print(f"{'#':>3}  {'kind':<9}{'size':>6}  {'FLOPs':>7}  members")
    for row in rows:
        index = f"{row['index']:>3}" if row["prunable"] else "  -"
        share = f"{100 * row['flops_share']:5.2f}%" if row["prunable"] else "   kept"
        members = textwrap.fill(", ".join(row["members"]), width=100, subsequent_indent=" " * 31)
        print(f"{index}  {row['kind']:<9}{row['size']:>6}  {share:>7}  {members}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except (SuiteError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    from core.config import DataConfig, ModelConfig
    from core.data import dataset_spec
    from core.groups import FlopsModel, discover_groups, prefix_mask, slim
    from core.measure import count_flops, count_params
    from core.models import build_model

    if args.width <= 0:
        raise ConfigError(f"--width must be > 0, got {args.width}")
    if args.random_keep is not None and not 0 < args.random_keep <= 1:
        raise ConfigError(f"--random-keep must be in (0, 1], got {args.random_keep}")
    if args.export is not None and args.random_keep is None:
        raise ConfigError("--export needs --random-keep (it saves the slimmed network)")
    info = dataset_spec(DataConfig(name=args.dataset)).info
    size = args.image_size or info.image_size
    model_cfg = ModelConfig(name=args.model, width=args.width)
    model = build_model(model_cfg, info.num_classes, size).eval()
    example = torch.zeros(1, 3, size, size)
    groups = discover_groups(model, example, include_stem=args.include_stem, keep=args.keep, attention=args.attention)
    flops = FlopsModel(model, groups)
    rows = _inventory(groups, flops, flops.dense_network)
    result: dict = {"model": args.model, "dataset": args.dataset, "width": args.width, "image_size": size,
                    "groups": len(groups), "flops_dense": int(flops.dense_network), "params_dense": count_params(model)}
    if args.random_keep is not None:
        generator = torch.Generator().manual_seed(args.seed)
        masks = [prefix_mask(torch.randperm(g.size, generator=generator), max(1, round(args.random_keep * g.size)))
                 for g in groups]
        slimmed = slim(model, groups, masks)
        measured = count_flops(slimmed, size)
        result.update(
            flops=measured,
            flops_ratio=measured / flops.dense_network,
            flops_ratio_prunable=flops.measure(slimmed, "prunable") / flops.dense("prunable"),
            flops_predicted=flops.exact(masks),
            params=count_params(slimmed),
            widths=[int(m.sum()) for m in masks],
        )
        if args.export is not None:
            from core.export import architecture, save_pruned

            args.export.parent.mkdir(parents=True, exist_ok=True)
            save_pruned(slimmed, architecture(model_cfg, info.num_classes, size), args.export)
            result["export"] = str(args.export)
    if args.json:
        print(json.dumps(result | {"inventory": rows} if args.random_keep is None else result, indent=1))
        return 0
    _print_inventory(rows, f"{args.model} (width {args.width}, {size} px, {info.num_classes} classes): "
                           f"{len(groups)} prunable groups, {flops.dense_network / 1e6:.1f} MFLOPs dense")
    if args.random_keep is not None:
        print(f"random keep {args.random_keep}: {result['flops'] / 1e6:.1f} MFLOPs "
              f"({100 * result['flops_ratio']:.1f}% of the network, {100 * result['flops_ratio_prunable']:.1f}% of "
              f"the prunable layers), {result['params'] / 1e6:.2f} M of {result['params_dense'] / 1e6:.2f} M parameters")
        if args.export is not None:
            print(f"saved {args.export}")
    return 0
