"""The pruning decisions a run made, each with the running train loss it was made on.

A pruner announces a decision (`Pruner.decide`: a partition, a zeroing, a removal, a rewind, or
S2HPruner's architecture changing) during a training step; after every step the engine hands
the step's loss and the announced decisions to a `DecisionLog`, which stamps each with the mean
train loss of the last `window` steps. The record carries the log (`record["regime"]`), and
`core.regime.breaks` judges it against the working-regime rule.

Repeated decisions of one kind in a row (OTOv2 zeroes units at many consecutive projection
steps) are kept as one entry: the first step, the last, the count, the loss at the first and
the highest loss among them, so a paper-length run's record stays small. A decision announced
as superseding (S2HPruner's architecture, which only its last change fixes) replaces the
earlier entry of its kind.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

RUNNING_WINDOW = 50  # steps; an epoch when it is shorter


@dataclass(frozen=True)
class Decision:
    """One announced decision: what, after which step (1-based count of steps done), whether
    it replaces the earlier one of its kind, and, where the method takes it regardless of
    training by definition (RST-S's random choice), why the rule's loss clause does not apply."""

    what: str
    step: int
    supersedes: bool = False
    exempt: str | None = None


class DecisionLog:
    """The running train loss and the decisions made so far (see the module docstring)."""

    def __init__(self, steps_per_epoch: int) -> None:
        self.window = max(1, min(RUNNING_WINDOW, steps_per_epoch))
        self.losses: deque[float] = deque(maxlen=self.window)
        self.entries: list[dict[str, Any]] = []

    @property
    def running_loss(self) -> float | None:
        return sum(self.losses) / len(self.losses) if self.losses else None

    def observe(self, loss: float, decisions: list[Decision]) -> None:
        """After a step: its loss, then the decisions it made, stamped with the running loss."""
        self.losses.append(loss)
        for decision in decisions:
            self._add(decision, self.running_loss)

    def _add(self, decision: Decision, loss: float | None) -> None:
        last = self.entries[-1] if self.entries else None
        entry: dict[str, Any] = {"what": decision.what, "step": decision.step, "train_loss": loss}
        if decision.exempt is not None:
            entry["exempt"] = decision.exempt
        if decision.supersedes:
            self.entries = [e for e in self.entries if e["what"] != decision.what]
            self.entries.append(entry)
        elif last is not None and last["what"] == decision.what:
            last["last_step"] = decision.step
            last["count"] = last.get("count", 1) + 1
            if loss is not None:
                last["max_train_loss"] = max(last.get("max_train_loss", last["train_loss"]), loss)
        else:
            self.entries.append(entry)

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "entries": [dict(e) for e in self.entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = deque(state["losses"], maxlen=self.window)
        self.entries = [dict(e) for e in state["entries"]]

    def regime(self, classes: int, steps: int, final_train_loss: float | None) -> dict[str, Any]:
        """The record's `regime` section: what `core.regime.breaks` reads."""
        return {"classes": classes, "steps": steps, "decisions": [dict(e) for e in self.entries],
                "final_train_loss": final_train_loss}
