"""The working-regime rule (core/regime.py) and the decisions a run records (core/decisions.py)."""

from __future__ import annotations

import math

import pytest

from core.decisions import Decision, DecisionLog
from core.regime import LOSS_SHARE, TAIL_SHARE, PlannedDecision, breaks, loss_bound, plan_breaks

BOUND = LOSS_SHARE * math.log(10)


def record(decisions, *, steps=100, final=0.3, method="otov2", **metrics):
    return {"method": method, "metrics": metrics,
            "regime": {"classes": 10, "steps": steps, "decisions": decisions, "final_train_loss": final}}


def test_the_bound_is_half_of_chances_loss():
    assert loss_bound(10) == pytest.approx(0.5 * math.log(10)) == pytest.approx(1.1513, abs=1e-4)
    assert loss_bound(100) == pytest.approx(0.5 * math.log(100))


def test_a_trained_decision_with_a_long_tail_keeps_the_rule():
    assert breaks(record([{"what": "prune", "step": 50, "train_loss": BOUND - 0.01}])) == []


def test_each_clause_is_named_when_it_breaks():
    reasons = breaks(record([{"what": "partition", "step": 10, "train_loss": 2.2}], final=1.5))
    assert reasons[0] == f"partition at step 10 on train loss 2.20 > {BOUND:.2f}"
    assert reasons[1] == f"final train loss 1.50 > {BOUND:.2f}"
    tail = breaks(record([{"what": "prune", "step": 80, "train_loss": 0.5}]))
    assert tail == [f"20 of 100 steps after the last decision < {TAIL_SHARE:.0%}"]
    # the tail counts from the last step of a run of consecutive decisions
    merged = [{"what": "zero", "step": 40, "last_step": 90, "count": 9, "train_loss": 0.5, "max_train_loss": 1.9}]
    assert breaks(record(merged)) == [f"10 of 100 steps after the last decision < {TAIL_SHARE:.0%}"]


def test_consecutive_decisions_are_judged_at_their_first_and_exempt_ones_only_by_the_tail():
    merged = [{"what": "zero", "step": 40, "last_step": 60, "count": 5, "train_loss": 0.5, "max_train_loss": 1.9}]
    assert breaks(record(merged)) == []
    exempt = [{"what": "remove", "step": 30, "train_loss": 2.3, "exempt": "random by design"}]
    assert breaks(record(exempt, method="rst_s")) == []
    assert breaks(record([{**exempt[0], "step": 90}], method="rst_s"))  # the tail still applies


def test_otov2s_fallback_and_records_without_decisions():
    assert breaks(record([{"what": "partition", "step": 10, "train_loss": 0.5}], fallback_zero=12))[0].startswith(
        "OTOv2's deadline fallback zeroed 12 units")
    assert breaks({"method": "dense", "metrics": {}}) == []
    assert breaks({"method": "rst_s", "metrics": {}}) == ["no decision record (made before they were kept)"]
    assert breaks(record([], method="scratch")) == []


def test_plans_against_the_epochs_a_dense_network_needs():
    plan = [PlannedDecision("partition", 0.1), PlannedDecision("zero", 0.5)]
    assert plan_breaks(plan, 6, 1.5) == ["partition after 0.60 epochs of training < 1.5"]
    assert plan_breaks([PlannedDecision("partition", 0.25), PlannedDecision("zero", 0.8)], 6, 1.5) == [
        f"20% of the budget after the last decision < {TAIL_SHARE:.0%}"]
    # a rewound network counts its training from the rewind; an exempt decision only its tail
    assert plan_breaks([PlannedDecision("round 2", 0.6, trained=0.2)], 6, 1.5)
    assert plan_breaks([PlannedDecision("remove", 0.1, exempt=True)], 6, 1.5) == []
    assert plan_breaks([], 6, None) == []
    assert plan_breaks([PlannedDecision("prune", 0.5)], 6, None)[0].startswith("prune.decide_after_epochs is not set")


def test_the_decision_log_stamps_merges_and_supersedes():
    log = DecisionLog(steps_per_epoch=4)  # a window of 4 steps
    for loss in (4.0, 3.0, 2.0, 1.0):
        log.observe(loss, [])
    log.observe(0.0, [Decision("partition", 5)])  # running mean of 3, 2, 1, 0
    assert log.entries == [{"what": "partition", "step": 5, "train_loss": 1.5}]
    log.observe(2.0, [Decision("zero", 6)])
    log.observe(6.0, [Decision("zero", 7)])
    assert log.entries[1] == {"what": "zero", "step": 6, "train_loss": 1.25, "last_step": 7, "count": 2,
                              "max_train_loss": 2.25}
    log.observe(0.0, [Decision("architecture", 8, supersedes=True, exempt="why")])
    log.observe(0.0, [Decision("architecture", 9, supersedes=True, exempt="why")])
    assert [e["what"] for e in log.entries] == ["partition", "zero", "architecture"]
    assert log.entries[-1]["step"] == 9 and log.entries[-1]["exempt"] == "why"
    restored = DecisionLog(steps_per_epoch=4)
    restored.load_state_dict(log.state_dict())
    assert restored.entries == log.entries and restored.running_loss == log.running_loss
    assert log.regime(10, 12, 0.1) == {"classes": 10, "steps": 12, "decisions": log.entries, "final_train_loss": 0.1}
