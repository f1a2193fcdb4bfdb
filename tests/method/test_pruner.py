"""The `s2hpruner` and `scratch` methods through the engine: records, logs, exports, modes."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from core.engine import run
from core.errors import ConfigError
from core.export import load_pruned
from core.records import RunDir

S2H = ["prune.method=s2hpruner", "prune.flops_target=0.35", "prune.options.widths_every=2",
       "prune.options.recalibrate_batches=2"]


def _flops(module: torch.nn.Module, size: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module.eval()(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


def test_run_folder_and_exported_network(tiny):
    cfg = tiny(*S2H)
    outcome = run(cfg, handle_signals=False)
    assert outcome.status == "done"
    d = RunDir.for_config(cfg)
    record, log = outcome.record, d.read_log()
    m = record["metrics"]
    # pruned.pt is the last evaluated hard network: same accuracy, FLOPs by an independent count.
    assert m["top1"] == log[-1]["test_top1"]
    exported = load_pruned(d.export)
    assert m["flops_ratio"] == pytest.approx(_flops(exported, 16) / m["flops_dense"])
    assert m["flops_ratio"] == pytest.approx(log[-1]["flops_ratio"])  # the exact counter agrees
    assert m["flops_ratio"] < 1 and "top1_soft" in m and {"gap_js", "gap_l2"} <= set(m)
    for entry in log:
        assert {"flops_ratio", "flops_ratio_soft", "widths", "test_top1", "test_top1_soft", "gap_js"} <= set(entry)
    widths = [json.loads(line) for line in (d.path / "widths.jsonl").read_text().splitlines()]
    assert [w["step"] for w in widths] == list(range(2, 13, 2))  # 2 epochs x 6 steps
    architecture = json.loads((d.path / "architecture.json").read_text())
    assert [g["kept"] for g in architecture["groups"]] == log[-1]["widths"]
    assert len(architecture["groups"]) == 36


@pytest.mark.parametrize("formulation", ["alt1", "alt2", "soft_only"])
def test_alternative_formulations_run(tiny, formulation):
    outcome = run(tiny(*S2H, f"prune.options.formulation={formulation}", "train.epochs=1"), handle_signals=False)
    metrics = outcome.record["metrics"]
    assert outcome.status == "done" and "gap_js" in metrics
    # Table 6's θ column: Alt 2 also evaluates its teacher, the unmasked network.
    assert ("top1_original" in metrics) == (formulation == "alt2")


def test_fine_tune_and_scratch_from_a_finished_run(tiny):
    source = run(tiny(*S2H, "prune.options.formulation=soft_only", "train.epochs=1"), handle_signals=False)
    folder = source.run_dir.path
    tuned = run(tiny(*S2H, f"prune.options.init_from={folder}", "train.lr=0.002", "train.epochs=1"), handle_signals=False)
    assert tuned.status == "done"
    ours = run(tiny("prune.method=scratch", "prune.flops_target=0.35", f"prune.options.architecture_from={folder}",
                    "train.epochs=1"), handle_signals=False)
    architecture = json.loads((folder / "architecture.json").read_text())
    assert ours.record["metrics"]["flops_ratio"] == pytest.approx(architecture["flops_ratio"])
    rand = run(tiny("prune.method=scratch", "prune.flops_target=0.35", f"prune.options.architecture_from={folder}",
                    "prune.options.random=true", "prune.options.random_seed=3", "train.epochs=1"), handle_signals=False)
    assert rand.record["metrics"]["flops_ratio"] == pytest.approx(architecture["flops_ratio"], rel=0.01)
    assert rand.run_dir.read_log()[-1]["widths"] != [g["kept"] for g in architecture["groups"]]


def test_bad_options_fail_before_work(tiny):
    with pytest.raises(ConfigError, match="mask_rule"):
        tiny(*S2H, "prune.options.mask_rule=median")
    with pytest.raises(ConfigError, match=r"flops_target must be in \(0, 1\) for a pruning method"):
        tiny("prune.method=s2hpruner")
    with pytest.raises(ConfigError, match="architecture_from"):
        tiny("prune.method=scratch")
    with pytest.raises(ConfigError, match="no checkpoint.pt"):
        tiny(*S2H, "prune.options.init_from=/nonexistent")
    with pytest.raises(ConfigError, match="warmup_epochs .* must be below train.epochs"):
        tiny(*S2H, "prune.options.warmup_epochs=2")  # train.epochs=2: the masks would never train


def _torn_last_lines(run_dir) -> None:
    """What a SIGKILL in the middle of a write leaves: unterminated last lines."""
    for name in ("log.jsonl", "widths.jsonl"):
        with open(run_dir.path / name, "a") as handle:
            handle.write('{"epoch": 2, "step": 10, "wid')


def test_interrupted_run_resumes_to_the_uninterrupted_result(interrupted_and_reference, exports_equal):
    """SIGUSR2 mid-epoch, then the same command: weights, masks, logs and widths as if never
    stopped, even with torn last lines in both line logs (dropped with a warning on resume)."""
    from method.pruner import S2HPruner

    with pytest.warns(UserWarning, match="unterminated last line"):  # epoch 2, step 3 of 6
        reference, resumed = interrupted_and_reference(S2HPruner, 9, *S2H, "train.epochs=2", between=_torn_last_lines)
    assert exports_equal(reference, resumed)
    drop = {"time_s", "eval_time_s"}
    assert [{k: v for k, v in e.items() if k not in drop} for e in reference.read_log()] == \
        [{k: v for k, v in e.items() if k not in drop} for e in resumed.read_log()]
    assert (reference.path / "widths.jsonl").read_text() == (resumed.path / "widths.jsonl").read_text()
    # the architecture's last change, with the running loss there, as if never stopped
    regime = reference.read_record()["regime"]
    assert [d["what"] for d in regime["decisions"]] == ["architecture"] and regime == resumed.read_record()["regime"]


def test_an_architecture_change_under_one_percent_of_the_units_is_not_a_decision():
    from method.pruner import architecture_moved

    sizes = [64, 64, 128, 256, 288]  # 800 units: 8 may move
    assert not architecture_moved([32, 32, 64, 128, 144], [33, 31, 64, 130, 143], sizes)  # 5 units
    assert architecture_moved([32, 32, 64, 128, 144], [32, 32, 64, 137, 144], sizes)  # 9 units


PHASED = [*S2H, "train.epochs=3", "prune.options.warmup_epochs=1", "prune.options.hard_ft_epoch=2",
          "prune.options.mask_lr=20"]


def test_warmup_and_hard_fine_tuning_epochs(tiny):
    """Epoch 1 dense (masks untouched), epoch 2 pruning, epoch 3 the hard network with its masks
    frozen; the log names each epoch's phase and the export is the frozen network."""
    cfg = tiny(*PHASED)
    outcome = run(cfg, handle_signals=False)
    d = RunDir.for_config(cfg)
    log = d.read_log()
    assert [e["phase"] for e in log] == ["warmup", "prune", "hard_ft"]
    assert "loss_dense" in log[0] and "loss_soft" in log[1] and "loss_hard" in log[2]
    widths = [json.loads(line) for line in (d.path / "widths.jsonl").read_text().splitlines()]
    by_epoch = {e: [w["widths"] for w in widths if w["epoch"] == e] for e in (1, 2, 3)}
    assert all(w == by_epoch[1][0] for w in by_epoch[1])  # masks untouched in warm-up
    assert log[1]["flops_ratio_soft"] != log[0]["flops_ratio_soft"]  # they trained
    assert log[2]["flops_ratio_soft"] == log[1]["flops_ratio_soft"]  # and then froze
    assert all(w == log[1]["widths"] for w in by_epoch[3]) and log[2]["widths"] == log[1]["widths"]
    architecture = json.loads((d.path / "architecture.json").read_text())
    assert [g["kept"] for g in architecture["groups"]] == log[1]["widths"]
    assert outcome.record["metrics"]["flops_ratio"] == pytest.approx(log[2]["flops_ratio"])
    state = torch.load(d.path / "checkpoint.pt", weights_only=True)["pruner"]  # tensors and primitives
    assert state["phase"] == "hard_ft" and state["epoch"] == 3 and state["steps_done"] == 18


def test_interrupted_hard_fine_tuning_resumes_to_the_uninterrupted_result(interrupted_and_reference, exports_equal):
    from method.pruner import S2HPruner

    reference, resumed = interrupted_and_reference(S2HPruner, 15, *PHASED)  # epoch 3 (hard_ft), step 3 of 6
    assert exports_equal(reference, resumed)
    drop = {"time_s", "eval_time_s"}
    assert [{k: v for k, v in e.items() if k not in drop} for e in reference.read_log()] == \
        [{k: v for k, v in e.items() if k not in drop} for e in resumed.read_log()]
    assert (reference.path / "widths.jsonl").read_text() == (resumed.path / "widths.jsonl").read_text()
