"""The benchmark's pieces: slimmed networks at their FLOPs, a measured step, the JSON's name."""

from __future__ import annotations

import pytest
import torch

from bench.cli import device_slug
from bench.inference import networks
from bench.training import measure_training
from core.measure import count_flops


def test_uniformly_slimmed_networks_keep_their_flops():
    nets = networks((0.15, 0.55), width=0.25)  # narrow, for speed: the same code as width 1
    dense = count_flops(nets["dense"], 32)
    for name, target in (("uniform_15", 0.15), ("uniform_55", 0.55)):
        net = nets[name]
        assert count_flops(net, 32) / dense == pytest.approx(target, abs=0.01)  # FlopCounterMode, independent
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
        assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in nets["dense"].parameters())


@pytest.mark.parametrize("method", ["dense", "s2hpruner"])
def test_a_measured_training_step(method):
    row = measure_training(method, device_name="cpu", warmup=1, steps=1, width=0.25)
    assert row["method"] == method and row["batch"] == 64 and row["memory_kind"] == "cpu_peak_rss"
    assert 0 < row["step_s_median"] == row["step_s_min"] and row["epoch_s"] == pytest.approx(782 * row["step_s_median"])
    assert row["peak_mem_mb_train"] > 0


def test_device_slug():
    assert device_slug({"device": "cpu (x86_64)"}) == "cpu-x86-64"
    assert device_slug({"device": "NVIDIA H100 80GB HBM3"}) == "nvidia-h100-80gb-hbm3"
