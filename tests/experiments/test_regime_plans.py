"""Every cell of every grid, at the mini and paper profiles, plans its pruning decisions inside the
working regime (core/regime.py): none before the recipe's network has trained, a quarter of the
budget after the last."""

from __future__ import annotations

import pytest

from core.pruner import planned_breaks
from experiments.spec import expand, experiment_names


@pytest.mark.parametrize("profile", ["mini", "paper"])
def test_every_cells_plan_keeps_the_rule(profile):
    broken, pruning = [], 0
    for name in experiment_names():
        for cell in expand(name, profile, validate=False).all_cells:
            if cell.cfg.prune.method in ("dense", "scratch"):
                continue
            pruning += 1
            if reasons := planned_breaks(cell.cfg):
                broken.append(f"{name} {cell.describe()}: {'; '.join(reasons)}")
    assert pruning > 100
    assert not broken, "\n".join(broken)
