"""Both baselines end to end on the CIFAR architectures, and resumed across their phases."""

from __future__ import annotations

import pytest
import torch

from core.engine import run
from core.export import load_pruned
from core.measure import count_flops
from core.pruner import PRUNERS

WIDTHS = {"resnet50": 0.0625, "mobilenetv3": 0.25, "wrn28_10": 0.1, "vit": 0.25, "swin": 0.25}
CNNS = ("resnet50", "mobilenetv3", "wrn28_10")
CASES = [("rst_s", m) for m in WIDTHS] + [(method, m) for method in ("group_sl", "otov2", "refill") for m in CNNS]
METHODS = ["rst_s", "group_sl", "otov2", "refill"]


@pytest.mark.parametrize(("method", "model"), CASES)
def test_smoke_run(tiny, method, model):
    cfg = tiny(f"prune.method={method}", "prune.flops_target=0.55", f"model.name={model}",
               f"model.width={WIDTHS[model]}", "data.options.image_size=32", "data.options.train_size=64",
               "data.options.test_size=32", "train.epochs=2")
    outcome = run(cfg, handle_signals=False)
    metrics = outcome.record["metrics"]
    assert outcome.status == "done" and abs(metrics["flops_ratio"] - 0.55) <= 0.02
    exported = load_pruned(outcome.run_dir.export)
    assert exported.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", [0.15, 0.35, 0.55])
def test_exported_network_meets_the_target(tiny, method, target):
    outcome = run(tiny(f"prune.method={method}", f"prune.flops_target={target}", "model.width=0.25", "train.epochs=2"),
                  handle_signals=False)
    exported = load_pruned(outcome.run_dir.export)
    ratio = count_flops(exported, 16) / outcome.record["metrics"]["flops_dense"]
    assert abs(ratio - target) <= 0.02 and outcome.record["metrics"]["flops_ratio"] == pytest.approx(ratio)


@pytest.mark.parametrize("method", METHODS)
def test_resume_after_the_network_was_slimmed(interrupted_and_reference, exports_equal, method):
    args = (f"prune.method={method}", "prune.flops_target=0.35", "model.width=0.25", "train.epochs=4")
    # step 21 of 24: every baseline has slimmed (or zeroed) its network by then
    reference, resumed = interrupted_and_reference(PRUNERS.get(method).factory, 21, *args)
    assert exports_equal(reference, resumed)
    # the decisions, each with the running train loss it was made on, survive the interruption
    regime = reference.read_record()["regime"]
    assert regime["decisions"] and regime == resumed.read_record()["regime"]
    assert all(d["step"] <= 24 and d["train_loss"] > 0 for d in regime["decisions"])


@pytest.mark.parametrize("method", ["group_sl", "otov2", "refill"])
def test_cnn_only_methods_refuse_transformers(tiny, method):
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="CNNs"):  # at config time, before any work
        tiny(f"prune.method={method}", "prune.flops_target=0.5", "model.name=vit", "model.width=0.25")
