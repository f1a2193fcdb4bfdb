"""Group-SL: the regulariser, the sparse phase's official recipe, pruning to the target, fine-tuning."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

from core.measure import count_flops

GSL = ["prune.method=group_sl", "prune.flops_target=0.35", "train.epochs=4", "model.width=0.25"]  # 12 + 6 + 6 steps


def test_regulariser_touches_group_parameters_with_the_stated_scaling(make_pruner, batch):
    pruner, cfg = make_pruner(*GSL)
    for step in range(12):
        pruner.train_step(*batch, step // 6, step)
    assert pruner.phase == "sparse"
    model = pruner.model
    x, y = batch
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    pruner.regulariser.regularize(model, alpha=pruner.options.alpha)
    added = {n: p.grad - plain[n] for n, p in model.named_parameters()}
    # the stem and the classes are ignored; every prunable conv got a group term
    assert added["conv1.weight"].abs().max() == 0 and added["fc.bias"].abs().max() == 0
    touched = [n for n, a in added.items() if a.abs().max() > 0]
    assert "layer1.0.conv1.weight" in touched and "layer4.2.conv3.weight" in touched
    # for an interior conv, the term is reg * gamma * w per output row, gamma in [1, 16]
    w = model.get_submodule("layer1.0.conv1").weight.detach()  # its inputs (the stem) are not regularised
    a = added["layer1.0.conv1.weight"]
    gamma = (a.flatten(1) / (cfg.prune.options["reg"] * w.flatten(1))).median(1).values
    assert gamma.min() == pytest.approx(1.0, rel=1e-3) and gamma.max() == pytest.approx(16.0, rel=1e-3)


def test_phases_weight_decay_pruning_and_fine_tuning(make_pruner, batch):
    pruner, cfg = make_pruner(*GSL, "train.weight_decay=0.001")
    decays = {}
    for step in range(24):
        decays.setdefault(pruner.phase, pruner.optimizer.param_groups[0]["weight_decay"])
        pruner.train_step(*batch, step // 6, step)
        if step == 17:  # the sparse phase just ended: pruned, fine-tuning
            ratio = count_flops(pruner.model, 16) / pruner.dense_flops
            assert pruner.phase == "finetune" and ratio <= 0.35
            assert abs(ratio - 0.35) <= 0.02
            assert pruner.pruned_at >= 1
    assert decays == {"pretrain": 0.001, "sparse": 0.0, "finetune": 0.001}


def test_sparse_phase_runs_the_official_step_schedule(make_pruner, batch):
    # official: lr 0.01, x0.1 at epochs 60 and 80 of 100; here the phase is steps 12-17 (6 steps),
    # so the milestones fall after round(0.6 * 6) = 4 and round(0.8 * 6) = 5 of its steps
    pruner, _ = make_pruner(*GSL, "train.lr=0.05")
    lrs = {}
    for step in range(18):
        lrs.setdefault(pruner.phase, []).append(pruner.optimizer.param_groups[0]["lr"])
        if step == 17:  # the lr of the phase's last step is set; its step would prune (slow, tested above)
            break
        pruner.train_step(*batch, step // 6, step)
    assert lrs["sparse"] == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.001, 0.0001])
    group = pruner.optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (0.9, False)


def test_sparse_phase_on_the_runs_schedule_when_asked(make_pruner, batch):
    pruner, _ = make_pruner(*GSL, "train.lr=0.05", "train.schedule=constant", "prune.options.sparse_lr=null")
    for step in range(13):
        pruner.train_step(*batch, step // 6, step)
    assert pruner.phase == "sparse" and pruner.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert pruner.optimizer.param_groups[0]["weight_decay"] == 0.0


@pytest.mark.parametrize("key, value, ok", [("pruning_ratio", 1.0, True), ("pruning_ratio", 1.5, False),
                                            ("max_pruning_ratio", 0.0, False), ("sparse_milestones", "[0.6,1.2]", False)])
def test_pruning_ratios_are_validated(tiny, key, value, ok):
    from core.errors import ConfigError

    if ok:
        assert tiny(*GSL, f"prune.options.{key}={value}").prune.options[key] == value
    else:
        with pytest.raises(ConfigError, match=key.split("_")[0]):
            tiny(*GSL, f"prune.options.{key}={value}")
