from __future__ import annotations

import pytest

from core.config import demo_overrides
from core.resolve import load
from core.engine import run


@pytest.mark.slow
def test_the_demo_defaults_learn_digits(tmp_path):
    """A bare `python -m core run`'s config (dense ResNet-50 x0.25, digits, 8 epochs) reaches a real accuracy."""
    args = [f"output_root={tmp_path}", "progress=false"]
    cfg = load([*demo_overrides(args), *args])
    assert cfg.model.width == 0.25
    outcome = run(cfg)
    assert outcome.status == "done"
    assert outcome.record["metrics"]["top1"] > 80
    assert len(outcome.run_dir.read_log()) == 8
