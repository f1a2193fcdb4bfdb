"""The pre-flight step: the checks of resolved configs that need a network or the disk.

`core.resolve` checks a config's values and builds nothing. The checks that need more run
here, once for a whole submission before anything is queued: each distinct network is built once on
the meta device (shapes, no memory, no data), its channel groups traced once, and every
config is checked against them (`prune.keep` names layers that exist, a method's own
`preflight` hook: RST-S's lowest reachable FLOPs ratio, the CNN-only baselines, S2HPruner's
`init_from` checkpoint, the Table 8 architectures). Runs that the same submission queues
before their readers (`queued`) count as present: they are read when the reader starts.

A grid's cells share a few networks (Table 1's 48 paper cells have three), so one flight
for all of them costs three builds; `experiments run` calls it on the whole expansion and
`core.resolve.load` on its one config.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import torch.nn as nn

from core.config import RunConfig
from core.data import dataset_spec
from core.errors import ConfigError
from core.groups import FlopsModel, GroupSet, groups_for_run
from core.models import meta_model
from core.pruner import PRUNERS


class Preflight:
    """One submission's pre-flight: its networks and channel groups, built once each."""

    def __init__(self, queued: Iterable[str | Path] = ()) -> None:
        self.queued = frozenset(os.path.normpath(str(folder)) for folder in queued)
        self._groups: dict[str, GroupSet] = {}
        self._flops: dict[str, FlopsModel] = {}

    def is_queued(self, folder: str | Path) -> bool:
        """Whether `folder` is a run this submission queues before the runs that read it."""
        return os.path.normpath(str(folder)) in self.queued

    @staticmethod
    def size(cfg: RunConfig) -> tuple[int, int]:
        """(classes, image size) the network of `cfg` is built for."""
        info = dataset_spec(cfg.data).info
        return info.num_classes, cfg.data.image_size or info.image_size

    def network(self, cfg: RunConfig) -> nn.Module:
        """The network of `cfg` on the meta device (shared by every config with the same model,
        classes and size: read it, never change it)."""
        return meta_model(cfg.model, *self.size(cfg))

    def _set_up(self, cfg: RunConfig) -> str:
        """What the groups and their FLOPs depend on: the network and the prune fields that
        shape the groups, not the target (a grid asks at three targets per network)."""
        classes, size = self.size(cfg)
        return json.dumps([asdict(cfg.model), classes, size, cfg.prune.include_stem, list(cfg.prune.keep),
                           cfg.prune.attention], sort_keys=True, default=repr)

    def groups(self, cfg: RunConfig) -> GroupSet:
        """The channel groups the method of `cfg` prunes: traced once per set-up."""
        key = self._set_up(cfg)
        if key not in self._groups:
            self._groups[key] = groups_for_run(self.network(cfg), cfg.prune, self.size(cfg)[1])
        return self._groups[key]

    def flops(self, cfg: RunConfig) -> FlopsModel:
        """The FLOPs of those groups' widths: built once per set-up."""
        key = self._set_up(cfg)
        if key not in self._flops:
            self._flops[key] = FlopsModel(self.network(cfg), self.groups(cfg))
        return self._flops[key]

    def check(self, cfg: RunConfig) -> None:
        """Every check of `cfg` that needs its network or the disk; a problem is a ConfigError."""
        layers = {name for name, _ in self.network(cfg).named_modules()}  # building it is a check too (a ViT patch)
        unknown = [name for name in cfg.prune.keep if name not in layers]
        if unknown:
            raise ConfigError(f"prune.keep: no layer named {', '.join(map(repr, unknown))} in {cfg.model.name}")
        hook = getattr(PRUNERS.get(cfg.prune.method).factory, "preflight", None)
        if hook is not None:
            hook(cfg, self)


def preflight(cfgs: Iterable[RunConfig], queued: Iterable[str | Path] = ()) -> None:
    """Check resolved configs before any is queued (see the module docstring)."""
    flight = Preflight(queued)
    for cfg in cfgs:
        flight.check(cfg)
