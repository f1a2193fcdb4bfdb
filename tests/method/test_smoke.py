"""Smoke runs of S2HPruner on each of the five CIFAR architectures (about 10 s in all)."""

from __future__ import annotations

import pytest
import torch

from core.engine import run
from core.export import load_pruned

WIDTHS = {"resnet50": 0.0625, "mobilenetv3": 0.25, "wrn28_10": 0.1, "vit": 0.125, "swin": 0.125}


@pytest.mark.parametrize("model", list(WIDTHS))
def test_each_cifar_architecture(tiny, model):
    cfg = tiny("prune.method=s2hpruner", "prune.flops_target=0.35", f"model.name={model}",
               f"model.width={WIDTHS[model]}", "data.options.image_size=32", "data.options.train_size=64",
               "data.options.test_size=32", "train.epochs=1", "prune.options.recalibrate_batches=2")
    outcome = run(cfg, handle_signals=False)
    assert outcome.status == "done"
    d = outcome.run_dir
    metrics = outcome.record["metrics"]
    assert {"top1", "top1_soft", "flops_ratio", "flops_ratio_prunable", "params", "gap_js"} <= set(metrics)
    assert len(d.read_log()) == 1 and (d.path / "architecture.json").exists()
    exported = load_pruned(d.export)
    assert exported.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_command_line(tiny_args):
    """`python -m core run prune.method=s2hpruner ...` as a user types it."""
    import subprocess
    import sys

    args = tiny_args("prune.method=s2hpruner", "prune.flops_target=0.35", "train.epochs=1")
    done = subprocess.run([sys.executable, "-m", "core", "run", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "done: top1" in done.stdout
    help_text = subprocess.run([sys.executable, "-m", "core", "run", "--help"], capture_output=True, text=True).stdout
    assert "prune.options for s2hpruner" in help_text and "mask_rule" in help_text
