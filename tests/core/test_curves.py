"""Live curves (core/curves.py): TensorBoard event files beside each run's log, read back with
TensorBoard's own reader, and a resumed run's curves free of duplicate steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.curves import FOLDER, TRAIN_EVERY
from core.pruner import PRUNERS

RST = ("prune.method=rst_s", "prune.flops_target=0.35", "model.width=0.25", "train.epochs=4")  # 24 steps


def curves(run_folder: Path) -> dict[str, list[tuple[int, float]]]:
    reader = EventAccumulator(str(run_folder / FOLDER), size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def test_a_pruning_run_writes_its_curves_and_decisions(tiny):
    from core.engine import run

    outcome = run(tiny(*RST))
    found = curves(outcome.run_dir.path)
    log = outcome.run_dir.read_log()
    assert [s for s, _ in found["train/loss"]] == list(range(TRAIN_EVERY, 25, TRAIN_EVERY))
    assert [s for s, _ in found["train/loss_epoch"]] == [e["step"] for e in log]
    evaluated = [(e["step"], e["test_top1"]) for e in log if e["test_top1"] is not None]
    assert [s for s, _ in found["test/top1"]] == [s for s, _ in evaluated]
    assert [v for _, v in found["test/top1"]] == pytest.approx([v for _, v in evaluated], abs=1e-4)  # float32 events
    assert {"lr", "flops/ratio", "widths/g00"} <= set(found)
    decisions = outcome.record["regime"]["decisions"]
    assert [s for s, _ in found["decision/train_loss"]] == [d["step"] for d in decisions] and decisions


def test_a_resumed_run_has_no_duplicate_steps(interrupted_and_reference):
    from torch.utils.tensorboard import SummaryWriter

    def stray_events(run_dir):
        # what an attempt killed after its checkpoint would have left: a point past it
        writer = SummaryWriter(str(run_dir.path / FOLDER))
        writer.add_scalar("train/loss", 99.0, 20)
        writer.close()

    reference, resumed = interrupted_and_reference(PRUNERS.get("rst_s").factory, 9, *RST, between=stray_events)
    assert len(list((resumed.path / FOLDER).glob("events.*"))) >= 2  # the interrupted attempt's and the resumed one's
    ours, theirs = curves(resumed.path), curves(reference.path)
    assert ours.keys() == theirs.keys()
    for tag, points in ours.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), tag  # no step twice
        assert steps == [s for s, _ in theirs[tag]], tag
    assert 99.0 not in [v for _, v in ours["train/loss"]]
