"""Both baselines end to end on the CIFAR architectures, and resumed across their phases."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from core.engine import RunInterrupted, run
from core.pruner import PRUNERS

WIDTHS = {"resnet50": 0.0625, "mobilenetv3": 0.25, "wrn28_10": 0.1, "vit": 0.25, "swin": 0.25}
CASES = [("rst_s", m) for m in WIDTHS] + [("group_sl", m) for m in ("resnet50", "mobilenetv3", "wrn28_10")]


@pytest.mark.parametrize(("method", "model"), CASES)
def test_smoke_run(tiny, method, model):
    cfg = tiny(f"prune.method={method}", "prune.flops_target=0.55", f"model.name={model}",
               f"model.width={WIDTHS[model]}", "data.options.image_size=32", "data.options.train_size=64",
               "data.options.test_size=32", "train.epochs=2")
    outcome = run(cfg, handle_signals=False)
    metrics = outcome.record["metrics"]
    assert outcome.status == "done" and abs(metrics["flops_ratio"] - 0.55) <= 0.02
    exported = torch.load(outcome.run_dir.export, weights_only=False)
    assert exported.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("method", ["rst_s", "group_sl"])
def test_resume_after_the_network_was_slimmed(tiny, tmp_path, monkeypatch, method):
    args = (f"prune.method={method}", "prune.flops_target=0.35", "model.width=0.25", "train.epochs=4")
    reference = run(tiny(*args, f"output_root={tmp_path / 'reference'}"), handle_signals=False).run_dir
    cls = PRUNERS.get(method).factory
    original = cls.train_step

    def signalling(self, inputs, targets, epoch, step):
        result = original(self, inputs, targets, epoch, step)
        if step + 1 == 21:  # epoch 4, after both baselines have slimmed their networks
            os.kill(os.getpid(), signal.SIGUSR2)
        return result

    cfg = tiny(*args)
    monkeypatch.setattr(cls, "train_step", signalling)
    with pytest.raises(RunInterrupted):
        run(cfg)
    monkeypatch.setattr(cls, "train_step", original)
    resumed = run(cfg).run_dir
    a, b = (torch.load(d.export, weights_only=False).state_dict() for d in (reference, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
