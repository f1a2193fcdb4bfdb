"""The suite's names in one place: the pruning methods the tables compare, and the models they run.

Configs name a method by its registry name (`core.pruner.PRUNERS`: the code that trains it);
this module says what the tables, the claims, the grids and the benchmark do with that name:
its row label in the paper's tables, whether it is a baseline or the paper's method, the config
keys a grid's cell of it sets (its *bundle*), its settings per profile, and whether it is
compared on the transformers (Table 3). The analysis, `make claims`, the grids
(`method: {catalog: compared}`) and `python -m bench` all read it here, so a new baseline is
its module, its registration and its card (`declare`), nothing else:

    from core.catalog import MethodCard, declare
    from core.pruner import PRUNERS, Pruner

    declare(MethodCard("mine", "Mine [42]", "baseline", settings={"mini": {"prune.options.rate": 0.1}}))

    @PRUNERS.register("mine")
    class Mine(Pruner): ...

Modules outside the suite's packages that declare methods are named in `$S2H_PLUGINS`
(comma-separated module names, importable from the working directory); every command imports
them before it reads a name (`load_plugins`), the SLURM and local workers included, since they
inherit the environment. Standard library only: the analysis reads it without torch (a plugin
module may import torch; only a plugin's own commands pay for that).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

PLUGINS_VARIABLE = "S2H_PLUGINS"
ROLES = ("baseline", "ours")


@dataclass(frozen=True)
class MethodCard:
    """A pruning method as the tables and grids know it."""

    name: str  # its registry name (`prune.method`)
    label: str  # its row in the paper's tables, with the citation the paper gives it
    role: str  # "baseline" or "ours" (S2HPruner: the method the claims are about)
    bundle: Mapping[str, Any] = field(default_factory=dict)  # config keys of a grid's cell of it (beyond prune.method)
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # profile -> config keys there
    transformers: bool = False  # compared on ViT and Swin too (Table 3)
    column: str = ""  # its column head in Table 10 (the paper names some differently there); the label's name if empty

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"method card {self.name!r}: role must be one of {', '.join(ROLES)}, got {self.role!r}")

    @property
    def short(self) -> str:
        """Table 10's column head: `column`, else the label without its citation."""
        return self.column or self.label.split(" [")[0]

    @property
    def cell(self) -> dict[str, Any]:
        """The config keys a grid's cell of this method sets."""
        return {"prune.method": self.name, **self.bundle}


_METHODS: dict[str, MethodCard] = {}
_loaded: set[str] = set()


def declare(card: MethodCard) -> MethodCard:
    """Add a method to the tables and grids (once per name; the same card again is a no-op)."""
    known = _METHODS.get(card.name)
    if known is not None and known != card:
        raise ValueError(f"method {card.name!r} is declared twice, differently")
    _METHODS[card.name] = card
    return card


def forget(name: str, module: str | None = None) -> None:
    """Take a declared method out again, and its plugin module's import (a test's temporary baseline)."""
    _METHODS.pop(name, None)
    if module is not None:
        _loaded.discard(module)


def load_plugins() -> None:
    """Import the modules `$S2H_PLUGINS` names (each once), so that their cards are declared."""
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
        if module not in _loaded:
            _loaded.add(module)
            importlib.import_module(module)


def card(name: str) -> MethodCard | None:
    load_plugins()
    return _METHODS.get(name)


def baselines(transformers: bool = False) -> tuple[str, ...]:
    """The baselines in declaration order (the paper's table order, then plugins'); with
    `transformers`, those compared on ViT and Swin."""
    load_plugins()
    return tuple(c.name for c in _METHODS.values() if c.role == "baseline" and (c.transformers or not transformers))


def ours() -> str:
    """The paper's method: the one every claim is about."""
    load_plugins()
    return next(c.name for c in _METHODS.values() if c.role == "ours")


def compared(transformers: bool = False) -> tuple[str, ...]:
    """The rows of Tables 1-3: the baselines, then the paper's method."""
    return (*baselines(transformers), ours())


def label(name: str) -> str:
    found = card(name)
    return found.label if found is not None else name


def settings(profile: str, name: str) -> dict[str, Any]:
    """A declared method's own config keys on a profile (a plugin's; the suite's methods keep
    theirs, with the measurements behind them, in experiments/recipes.yaml)."""
    found = card(name)
    return dict(found.settings.get(profile, {})) if found is not None else {}


# The paper's Table 1 order (its citations: [1] RST-S, [14] Group-SL, [6] OTOv2, [5] Refill).
for _card in (
    MethodCard("rst_s", "RST-S [1]", "baseline", transformers=True),
    MethodCard("group_sl", "Group-SL [14]", "baseline", column="Depgraph"),
    MethodCard("otov2", "OTOv2 [6]", "baseline", column="OTO v2"),
    MethodCard("refill", "Refill [5]", "baseline", column="IMP-Refill"),
    MethodCard("s2hpruner", "Ours", "ours", bundle={"prune.options.mask_rule": "expected_width"}, transformers=True),
):
    declare(_card)

# The models of the paper's tables: name -> (label in the tables, family).
MODELS: dict[str, tuple[str, str]] = {
    "resnet50": ("ResNet-50", "cnn"), "mobilenetv3": ("MBV3", "cnn"), "wrn28_10": ("WRN28-10", "cnn"),
    "vit": ("ViT", "transformer"), "swin": ("Swin", "transformer"),
}


def models(family: str) -> tuple[str, ...]:
    return tuple(name for name, (_, kind) in MODELS.items() if kind == family)
