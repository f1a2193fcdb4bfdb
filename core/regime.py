"""The working regime every pruning method must be run in: one rule, stated once.

A pruning *decision* is an irreversible one: a partition of the units, a zeroing, a removal, a
rewind, or (S2HPruner, whose masks stay learnable until the export) the last change of the
architecture it exports. The rule:

1. **No decision on an untrained network.** The running train loss at each decision is at most
   `LOSS_SHARE` of chance's, ln C for C classes. Consecutive decisions of one kind (OTOv2's
   half-space step zeroing units at step after step) are one decision taken progressively: the
   loss is the one at its first step, since the loss they raise as they remove units is the
   damage of the pruning, not a lack of training (the record keeps the highest too). A network at chance has loss ln C; half of it
   is a network that has clearly left its initial plateau (on digits, 1.15 nats: the dense
   mini ResNet-50 is past it at epoch 1.47 of 12).
2. **Enough training after the last decision.** At least `TAIL_SHARE` of the run's steps follow
   it, and the network the run exports has a train loss (its cross-entropy on the first
   training batches, `core.loop.train_loss`) of at most `LOSS_SHARE` of chance's: the pruned
   network was trained back into the regime its decisions were made in.

A method whose decision is made regardless of training by definition says so (`exempt` in the
decision), and only the tail after it is checked: RST-S removes at the end of its
transformation the units it chose at random at initialisation, as the dual lottery ticket
hypothesis defines it; S2HPruner's masks stay learnable until the export, so the rule judges
its export (the final loss) and the training after its architecture last changed, not when
its masks started.

`README.md` ("The working regime") says how the thresholds were chosen from measurements.

Two readers: a finished run's record (`breaks`: the analysis marks a table cell or a claim that
breaks the rule, from the decisions the run recorded), and a grid before it runs (`plan_breaks`:
the decision points a method plans for a config, in shares of its budget, against the epochs
a dense network of that recipe needs to leave chance). Standard library only: the analysis
reads it without torch, and the code version ignores it (a threshold is not a result).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

LOSS_SHARE = 0.5
TAIL_SHARE = 0.25


@dataclass(frozen=True)
class PlannedDecision:
    """Where a method plans a decision, in shares of the run's budget: `at` (the step it is
    taken, over the total) and `trained` (how long the network it is taken on has trained since
    its weights were last reset, e.g. by a rewind; `at` unless so); `exempt`: taken whatever the
    training by the method's definition (only the tail after it is checked)."""

    what: str
    at: float
    trained: float | None = None
    exempt: bool = False

    @property
    def trained_share(self) -> float:
        return self.at if self.trained is None else self.trained


def loss_bound(classes: int) -> float:
    """The running train loss a decision may be taken at: `LOSS_SHARE` of ln C."""
    return LOSS_SHARE * math.log(max(classes, 2))


def breaks(record: dict[str, Any]) -> list[str]:
    """Why a finished run breaks the rule, one short reason each; [] when it keeps it or makes
    no decision (dense, scratch). A pruning run whose record predates decision records gives
    one reason saying so."""
    reasons = []
    fallback = (record.get("metrics") or {}).get("fallback_zero")
    if fallback:  # OTOv2's deadline zeroed units the half-space step had not: not DHSPG's decision
        reasons.append(f"OTOv2's deadline fallback zeroed {fallback} units (not DHSPG's half-space step)")
    regime = record.get("regime")
    if regime is None:
        method = record.get("method")
        return reasons if method in (None, "dense", "scratch") else [*reasons, "no decision record (made before they were kept)"]
    decisions = regime.get("decisions") or []
    if not decisions:
        return reasons
    bound = loss_bound(int(regime["classes"]))
    for d in decisions:
        loss = d.get("train_loss")  # a run of consecutive zeroings: at its first (see the docstring)
        if loss is not None and loss > bound and not d.get("exempt"):
            reasons.append(f"{d['what']} at step {d['step']} on train loss {loss:.2f} > {bound:.2f}")
    steps = int(regime["steps"])
    last = max(int(d.get("last_step", d["step"])) for d in decisions)
    if steps - last < TAIL_SHARE * steps:
        reasons.append(f"{steps - last} of {steps} steps after the last decision < {TAIL_SHARE:.0%}")
    final = regime.get("final_train_loss")
    if final is not None and final > bound:
        reasons.append(f"final train loss {final:.2f} > {bound:.2f}")
    return reasons


def plan_breaks(planned: Iterable[PlannedDecision], epochs: int, trained_after_epochs: float | None) -> list[str]:
    """Why a planned run would break the rule: a decision planned before the network has had the
    epochs a dense network of its recipe needs to halve chance's loss (`trained_after_epochs`,
    the config's `prune.decide_after_epochs`; unknown when None, which is itself a reason), or
    too short a tail after the last one. [] when the plan keeps it (or plans no decision)."""
    planned = list(planned)
    if not planned:
        return []
    if trained_after_epochs is None:
        reasons = ["prune.decide_after_epochs is not set: how long the recipe's network takes to train is unknown"]
    else:
        reasons = [f"{d.what} after {d.trained_share * epochs:.2f} epochs of training < {trained_after_epochs:g}"
                   for d in planned if not d.exempt and d.trained_share * epochs < trained_after_epochs - 1e-9]
    tail = 1 - max(d.at for d in planned)
    if tail < TAIL_SHARE - 1e-9:
        reasons.append(f"{tail:.0%} of the budget after the last decision < {TAIL_SHARE:.0%}")
    return reasons
