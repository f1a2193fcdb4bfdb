"""Declarative phases: the one phase machine every baseline runs on.

Each baseline is a sequence of phases (pre-train, sparse learning, IMP rounds, fine-tune...).
A `Phase` declares its share of the run's budget, the optimizer it trains with (a factory
given the phase's number of steps, or none to carry on with the previous phase's optimizer
and schedule), and up to three hooks:

- `leave(done)`: when the phase ends, before the next one is entered; it may return the name
  of the phase to enter instead of the next one (an IMP round that meets the target skips
  the remaining rounds);
- `enter(done)`: once, at the transition into the phase (prune, slim, partition...);
- `setup()`: whenever the phase becomes current, on entering and on resume (state derived
  from the checkpointed state, e.g. a regulariser bound to the current network).

`PhasedPruner` drives them: after every step of the algorithm it advances the schedule and,
at a phase's last step, moves to the next phase. A baseline may end a phase early with
`self.phases.advance(done)`. Its checkpoint holds the phase index, the step the phase began,
the step its optimizer began, the optimizer state and the network; the baseline adds only
its algorithm's state (`method_state` / `load_method_state`), so resuming is the same code
for all of them. The learning rate is a function of the step (`core/optim.py`), so the
schedule needs no state of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn as nn
from timm.scheduler.scheduler import Scheduler

from baselines.budget import phase_ends
from core.pruner import StepResult, SubstratePruner

OptimizerFactory = Callable[[int], tuple[torch.optim.Optimizer, Optional[Scheduler]]]


@dataclass(frozen=True)
class Phase:
    """One phase of a baseline (see the module docstring)."""

    name: str
    share: float  # of the run's budget, relative to the other phases' shares
    optimizer: Optional[OptimizerFactory] = None  # None: the previous phase's optimizer carries on
    enter: Optional[Callable[[int], None]] = None
    leave: Optional[Callable[[int], Optional[str]]] = None
    setup: Optional[Callable[[], None]] = None


class Phases:
    """Where a run is among its phases, and the optimizer and schedule in use."""

    def __init__(self, phases: Sequence[Phase], total_steps: int) -> None:
        if not phases or phases[0].optimizer is None:
            raise ValueError("the first phase must build an optimizer")
        names = [p.name for p in phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        self.phases = list(phases)
        self.ends = phase_ends(total_steps, [p.share for p in phases])
        self.index = 0
        self.start = 0  # the step the current phase began
        self.optimizer_start = 0  # the step the current optimizer began
        self.optimizer: torch.optim.Optimizer
        self.scheduler: Optional[Scheduler] = None
        self._become_current(build=True)

    @property
    def name(self) -> str:
        return self.phases[self.index].name

    @property
    def end(self) -> int:
        """The step at which the current phase is planned to end."""
        return self.ends[self.index]

    def index_of(self, name: str) -> int:
        return [p.name for p in self.phases].index(name)

    def _owner(self) -> int:
        """The phase whose optimizer is in use: the current one or the last before it with one."""
        return max(i for i in range(self.index + 1) if self.phases[i].optimizer is not None)

    def _build_optimizer(self) -> None:
        owner = self._owner()
        following = [i for i in range(owner + 1, len(self.phases)) if self.phases[i].optimizer is not None]
        span_end = self.ends[following[0] - 1] if following else self.ends[-1]
        self.optimizer, self.scheduler = self.phases[owner].optimizer(span_end - self.optimizer_start)

    def _become_current(self, build: bool) -> None:
        phase = self.phases[self.index]
        if phase.setup is not None:
            phase.setup()
        if build:
            self._build_optimizer()

    def after_step(self, done: int) -> None:
        """After the optimizer's `done`-th step: the schedule's next value, then the next phase
        where this one ends."""
        if self.scheduler is not None:
            self.scheduler.step_update(done - self.optimizer_start)
        if done == self.end and self.index + 1 < len(self.phases):
            self.advance(done)

    def advance(self, done: int, to: Optional[str] = None) -> None:
        """Leave the current phase after step `done` for the next one (or the phase named `to`)."""
        leave = self.phases[self.index].leave
        redirect = leave(done) if leave is not None else None
        target = self.index_of(to or redirect) if (to or redirect) else self.index + 1
        if target <= self.index:
            raise ValueError(f"phase {self.name!r} cannot go back to {self.phases[target].name!r}")
        self.index, self.start = target, done
        phase = self.phases[target]
        if phase.enter is not None:
            phase.enter(done)
        if phase.optimizer is not None:
            self.optimizer_start = done
        self._become_current(build=phase.optimizer is not None)

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start": self.start, "optimizer_start": self.optimizer_start,
                "optimizer": self.optimizer.state_dict()}

    def seek(self, state: dict[str, Any]) -> None:
        """Take the checkpoint's position (no hooks run): the method restores its state next."""
        self.index, self.start, self.optimizer_start = state["index"], state["start"], state["optimizer_start"]

    def resume(self, state: dict[str, Any]) -> None:
        """After the method's state is restored: the phase's setup, its optimizer and its state."""
        self._become_current(build=True)
        self.optimizer.load_state_dict(state["optimizer"])


class PhasedPruner(SubstratePruner, ABC):
    """A baseline made of phases. A subclass sets `self.model` and then `self.phases`
    (`Phases(self.phase_plan(), total_steps)`), implements `step` (one step of its algorithm:
    forward, backward and its optimizer's step, with `self.optimizer`), and checkpoints only
    its algorithm's own state in `method_state` / `load_method_state`."""

    model: nn.Module
    phases: Phases

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.phases.optimizer

    @property
    def phase(self) -> str:
        return self.phases.name

    def total_steps(self) -> int:
        return self.cfg.train.epochs * self.ctx.steps_per_epoch

    @abstractmethod
    def step(self, inputs: torch.Tensor, targets: torch.Tensor, step: int) -> StepResult:
        """One step of the algorithm in the current phase (`step` counts from 0)."""

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> StepResult:
        result = self.step(inputs, targets, step)
        self.phases.after_step(step + 1)
        return result

    def method_state(self) -> dict[str, Any]:
        """The algorithm's own checkpointed state (tensors and primitives)."""
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Restore `method_state`, with `self.phase` already the checkpoint's; a method whose
        network changes shape rebuilds that shape here (the weights are loaded after)."""

    def state_dict(self) -> dict[str, Any]:
        return {"phases": self.phases.state_dict(), "method": self.method_state(), "model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phases.seek(state["phases"])
        self.load_method_state(state["method"])
        self.model.load_state_dict(state["model"])
        self.phases.resume(state["phases"])
