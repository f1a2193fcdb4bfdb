"""The recipes a grid's cells start from (`experiments/recipes.yaml`), looked up per profile.

A cell's config starts from its profile's recipe for its (dataset, model) (`dataset_recipe`:
the dataset's own, else its family's), then the profile's keys for its pruning method
(`method_recipe`); `profile_seeds` says how many seeds each cell runs. What the recipes hold,
and the measurements behind them, is written in the YAML itself.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from core import catalog
from core.data import DATASETS

RECIPES = Path(__file__).resolve().parent / "recipes.yaml"


@lru_cache(maxsize=None)
def recipes() -> dict[str, Any]:
    return yaml.safe_load(RECIPES.read_text())


def dataset_recipe(profile: str, dataset: Any, model: Any) -> dict[str, Any] | None:
    """The profile's recipe for (dataset, model): the dataset's own in recipes.yaml, else its
    family's (`DatasetInfo.family`; `families` in recipes.yaml names the dataset whose recipes a
    family shares: a new CIFAR-like dataset trains like CIFAR-100 until a profile says otherwise).
    None when neither has one."""
    table = recipes().get(profile, {})
    own = table.get(dataset, {}).get(model)
    if own is not None or dataset not in DATASETS:
        return own
    info = getattr(DATASETS.get(dataset).factory, "info", None)  # a class attribute, unless the options shape it
    stand_in = recipes().get("families", {}).get(getattr(info, "family", None))
    return table.get(stand_in, {}).get(model) if stand_in is not None else None


def method_recipe(profile: str, method: Any) -> dict[str, Any]:
    """The profile's keys for one pruning method's cells: `methods` in recipes.yaml over the
    method's card (`core.catalog.settings`: a declared plugin's)."""
    return {**catalog.settings(profile, method), **(recipes().get("methods", {}).get(profile, {}).get(method, None) or {})}


def profile_seeds(profile: str) -> int:
    """How many seeds (0, 1, ...) every cell of a grid runs at `profile` (`seeds` in recipes.yaml):
    a claim about a difference is decided over seeds, never on one run."""
    return int((recipes().get("seeds") or {}).get(profile, 1))
