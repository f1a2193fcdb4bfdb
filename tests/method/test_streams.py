"""Appendix F's two-stream step (`prune.options.streams=two`, `method.streams`) on the CPU.

Without CUDA the option runs the same code with torch's CPU stream stand-ins, which order
nothing, so its step must equal the sequential one bit for bit: the gradients of theta and of
the mask logits, the logits, the losses and the BatchNorm statistics both passes update. On a
GPU, `python -m bench gpu-check` compares the two within 1e-5 (bench/gpu_check.py).
"""

from __future__ import annotations

import copy

import pytest
import torch

from core.config import ModelConfig
from core.errors import ConfigError
from core.groups import discover_groups
from core.models import build_model
from method.algorithm import S2HState
from method.options import S2HOptions

MODELS = {"resnet50": ("resnet50", 0.25, {}), "vit": ("vit", 0.25, {"depth": 2})}


def _pair(name: str, hard_pass: str) -> tuple[S2HState, S2HState]:
    zoo_name, width, options = MODELS[name]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=zoo_name, width=width, options=options), 10, 32).train()
    groups = discover_groups(model, torch.zeros(1, 3, 32, 32))
    states = []
    for streams in ("one", "two"):
        state = S2HState(copy.deepcopy(model), groups, S2HOptions(hard_pass=hard_pass, streams=streams),
                         flops_target=0.3, model_name=zoo_name, width=width)
        generator = torch.Generator().manual_seed(5)  # hard widths inside every group: something to slice
        with torch.no_grad():
            for logits in state.masks.logits:
                logits.copy_(torch.randn(logits.shape, generator=generator))
        states.append(state)
    return states[0], states[1]


@pytest.mark.parametrize("hard_pass", ["sliced", "masked"])
@pytest.mark.parametrize("name", list(MODELS))
def test_two_stream_step_equals_sequential_step_on_cpu(name, hard_pass):
    one, two = _pair(name, hard_pass)
    assert two.streams.two and not one.streams.two
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4) % 10
    results = []
    for state in (one, two):
        torch.manual_seed(7)  # drop-path and dropout draw alike: Python issues the soft pass first either way
        results.append(state.gradients(x, y))
    want, have = results
    assert two.streams.side is not None  # the two-stream path ran (the CPU stand-in stream)
    assert torch.equal(have.logits, want.logits) and torch.equal(have.loss, want.loss)
    assert have.parts == want.parts
    for g_want, g_have in zip(want.theta, have.theta):
        assert (g_want is None) == (g_have is None)
        assert g_want is None or torch.equal(g_have, g_want)
    for g_want, g_have in zip(want.u, have.u):
        assert torch.equal(g_have, g_want)
    for (name_a, a), (_, b) in zip(one.model.named_buffers(), two.model.named_buffers()):
        assert torch.equal(a, b), name_a


def test_two_streams_need_algorithm_1_with_both_graphs():
    S2HOptions(streams="two").validate()
    for options in ({"step_memory": "low"}, {"formulation": "alt1"}, {"formulation": "soft_only"}):
        with pytest.raises(ConfigError, match="streams=two"):
            S2HOptions(streams="two", **options).validate()
    with pytest.raises(ConfigError, match="streams must be one of one, two"):
        S2HOptions(streams="three").validate()
