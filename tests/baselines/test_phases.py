"""The declarative phase machine: budget shares, hooks, optimizer spans, checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from baselines.phases import Phase, Phases


class Recorder:
    """A toy baseline: one parameter, SGD with momentum, and a log of every hook call."""

    def __init__(self) -> None:
        self.param = torch.nn.Parameter(torch.ones(3))
        self.calls: list[tuple] = []
        self.redirect: str | None = None

    def factory(self, name: str):
        def build(steps: int):
            self.calls.append(("optimizer", name, steps))
            return torch.optim.SGD([self.param], lr=0.1, momentum=0.9), None
        return build

    def hook(self, kind: str, name: str):
        def call(*args):
            self.calls.append((kind, name, *args))
            return self.redirect if kind == "leave" else None
        return call

    def plan(self) -> list[Phase]:
        return [
            Phase("a", 1, optimizer=self.factory("a"), leave=self.hook("leave", "a"), setup=self.hook("setup", "a")),
            Phase("b", 2, enter=self.hook("enter", "b"), leave=self.hook("leave", "b")),  # carries a's optimizer
            Phase("c", 1, optimizer=self.factory("c"), enter=self.hook("enter", "c"), setup=self.hook("setup", "c")),
        ]


def _train(phases: Phases, toy: Recorder, steps: range) -> None:
    for step in steps:
        phases.optimizer.zero_grad()
        (toy.param * (step + 1)).square().sum().backward()
        phases.optimizer.step()
        phases.after_step(step + 1)


def test_phases_split_the_budget_and_run_their_hooks_in_order():
    toy = Recorder()
    phases = Phases(toy.plan(), 8)
    assert phases.ends == [2, 6, 8] and phases.name == "a"
    optimizer_a = phases.optimizer
    _train(phases, toy, range(0, 6))
    assert phases.name == "c" and phases.start == 6
    assert toy.calls == [
        ("setup", "a"), ("optimizer", "a", 6),  # a's optimizer spans a and b, which carries it on
        ("leave", "a", 2), ("enter", "b", 2),
        ("leave", "b", 6), ("enter", "c", 6), ("setup", "c"), ("optimizer", "c", 2),
    ]
    assert phases.optimizer is not optimizer_a


def test_a_leave_hook_may_skip_phases_and_a_phase_cannot_go_back():
    toy = Recorder()
    toy.redirect = "c"
    phases = Phases(toy.plan(), 8)
    _train(phases, toy, range(0, 2))
    assert phases.name == "c" and toy.calls[-1] == ("optimizer", "c", 6)  # from step 2 to the end
    with pytest.raises(ValueError, match="cannot go back"):
        phases.advance(3, to="a")


def test_resume_rebuilds_the_phase_and_its_optimizer_without_entering_again():
    toy = Recorder()
    phases = Phases(toy.plan(), 8)
    _train(phases, toy, range(0, 4))  # inside b, on a's optimizer
    state, weights = copy.deepcopy(phases.state_dict()), toy.param.detach().clone()
    _train(phases, toy, range(4, 8))

    fresh = Recorder()
    resumed = Phases(fresh.plan(), 8)
    fresh.calls.clear()
    fresh.param.data.copy_(weights)
    resumed.seek(state)
    resumed.resume(state)
    assert resumed.name == "b" and resumed.start == 2
    assert fresh.calls == [("optimizer", "a", 6)]  # a's optimizer over its span; no enter on resume
    _train(resumed, fresh, range(4, 8))
    assert fresh.calls[-1] == ("optimizer", "c", 2)
    assert torch.equal(fresh.param.detach(), toy.param.detach())  # the momentum came back with it
