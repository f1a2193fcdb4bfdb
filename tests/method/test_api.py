"""The own-model API (`method.api`): the README's snippet as written, and the shared step
(`method.training.S2HTraining`) in a user's loop: its phases against plain training steps, the
mask optimizer against a hand computation, the options of the loop honoured or refused, and a
checkpointed loop resumed bit for bit."""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.errors import ConfigError
from core.groups import GroupMasks, channel_order, slim
from method.api import S2HPruning
from method.training import MaskSGD

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippet saves pruned.pt
    text = README.read_text()
    snippet = re.search(r"<!-- own-model -->\n```python\n(.*?)```", text, re.S).group(1)
    images = torch.randn(64, 3, 32, 32)
    labels = torch.randint(0, 10, (64,))
    loader = [(images[i:i + 16], labels[i:i + 16]) for i in range(0, 64, 16)]
    scope = {"loader": loader}
    exec(compile(snippet, "README.md", "exec"), scope)
    pruned, pruning = scope["pruned"], scope["pruning"]
    assert isinstance(pruned, torch.nn.Module) and not isinstance(pruned, type(None))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in scope["model"].parameters())
    assert pruned(images[:2]).shape == (2, 10)
    assert 0 < pruning.flops_ratio < 1
    assert (tmp_path / "pruned.pt").exists()


# ------------------------------------------------------------------------------------------------

SIZE = 16


def _batches(count: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(count)]


def _pruning(model: torch.nn.Module, **options) -> S2HPruning:
    return S2HPruning(model, torch.zeros(1, 3, SIZE, SIZE), flops_target=0.35, **options)


def _logits(pruning: S2HPruning) -> list[torch.Tensor]:
    return [u.detach().clone() for u in pruning.state.logits_params()]


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a: dict[str, torch.Tensor] | list[torch.Tensor], b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_warmup_step_is_plain_dense_training(small_cnn):
    """In warm-up the update is a plain optimizer step on the unmasked network's CE; masks untouched."""
    torch.manual_seed(0)
    model = small_cnn(8)
    pruning = _pruning(model, warmup_epochs=1, label_smoothing=0.1)
    reference = copy.deepcopy(model)  # taken after the groups' discovery, as the model then is
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    logits = _logits(pruning)
    for x, y in _batches(3):
        loss = pruning.step(x, y, optimizer)
        reference.train()
        ref_loss = F.cross_entropy(reference(x), y, label_smoothing=0.1)
        ref_optimizer.zero_grad()
        ref_loss.backward()
        ref_optimizer.step()
        assert loss == pytest.approx(ref_loss.item(), rel=1e-6)
    assert pruning.phase == "warmup"
    assert _equal(_params(model), _params(reference))  # weights and BN statistics
    assert _equal(_logits(pruning), logits) and not pruning.mask_optimizer.state
    assert pruning.end_epoch()["phase"] == "warmup" and pruning.phase == "prune"


def test_hard_fine_tuning_trains_the_hard_network_with_masks_frozen(small_cnn):
    """From hard_ft_epoch on: a plain step on the hard network's CE; logits, widths and the mask
    optimizer's state stay; the loss is the slimmed network's."""
    torch.manual_seed(0)
    model = small_cnn(8)
    pruning = _pruning(model, hard_ft_epoch=1, mask_lr=20.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = _batches(4)
    for x, y in data:
        pruning.step(x, y, optimizer)
    assert pruning.end_epoch()["phase"] == "prune" and pruning.phase == "hard_ft"
    logits, widths = _logits(pruning), pruning.widths
    assert any(w < g.size for w, g in zip(widths, pruning.state.groups))  # something is pruned
    buffers = {id(p): s["momentum_buffer"].clone() for p, s in pruning.mask_optimizer.state.items()}
    for x, y in data[:2]:
        pruning.state.reorder()  # the step's own order (l1_step re-sorts; `fixed` keeps it)
        hard = pruning.state.hard_masks()
        # the reference: a copy of the network under the same 0/1 masks, and its slimmed form
        reference = copy.deepcopy(model)
        GroupMasks(reference, getattr(pruning.state, "mask_groups", pruning.state.groups)).set(hard)
        slimmed = slim(model, pruning.state.groups, hard).train()
        reference.train()
        ref_loss = F.cross_entropy(reference(x), y)
        slim_loss = F.cross_entropy(slimmed(x), y)
        grads = torch.autograd.grad(ref_loss, list(reference.parameters()), allow_unused=True)
        expected = [p.detach() - 0.05 * g if g is not None else p.detach() for p, g in zip(reference.parameters(), grads)]
        loss = pruning.step(x, y, optimizer)
        assert loss == pytest.approx(ref_loss.item(), rel=1e-6) and loss == pytest.approx(slim_loss.item(), rel=1e-5)
        for p, e in zip(model.parameters(), expected):
            torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-6)
    assert _equal(_logits(pruning), logits) and pruning.widths == widths
    assert all(torch.equal(s["momentum_buffer"], buffers[id(p)]) for p, s in pruning.mask_optimizer.state.items())
    entry = pruning.end_epoch()
    assert entry["phase"] == "hard_ft" and "loss_hard" in entry and entry["widths"] == widths


@pytest.mark.parametrize("make, momentum, nesterov, dampening", [
    (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), 0.9, True, 0.0),
    (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5, dampening=0.1), 0.5, False, 0.1),
    (lambda ps: torch.optim.AdamW(ps, lr=1e-3), 0.9, True, 0.0),  # no such keys: the official defaults
])
def test_mask_optimizer_follows_the_weights_optimizer(small_cnn, make, momentum, nesterov, dampening):
    torch.manual_seed(0)
    model = small_cnn(8)
    pruning = _pruning(model)
    optimizer = make(model.parameters())
    pruning.step(*_batches(1)[0], optimizer)
    group = pruning.mask_optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["dampening"], group["weight_decay"]) == \
        (momentum, nesterov, dampening, 0.0)
    own = _pruning(small_cnn(8), mask_momentum=0.3, mask_nesterov=False, mask_weight_decay=0.01)
    own.step(*_batches(1)[0], make(own.model.parameters()))
    group = own.mask_optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["dampening"], group["weight_decay"]) == (0.3, False, 0.0, 0.01)


def test_mask_update_by_hand(small_cnn):
    """Two mask steps against a hand computation: Nesterov momentum, then the weight decay
    outside the buffer (the official order), with lr = mask_lr."""
    torch.manual_seed(0)
    model = small_cnn(8)
    pruning = _pruning(model, mask_lr=0.5, mask_weight_decay=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.8, nesterov=True)
    u0 = _logits(pruning)
    data = _batches(2)
    pruning.step(*data[0], optimizer)
    g1 = [u.grad.clone() for u in pruning.state.logits_params()]
    u1 = _logits(pruning)
    pruning.step(*data[1], optimizer)
    g2 = [u.grad.clone() for u in pruning.state.logits_params()]
    m, wd, lr = 0.8, 0.1, 0.5
    for a, b, c, x1, x2 in zip(u0, u1, _logits(pruning), g1, g2):
        torch.testing.assert_close(b, a - lr * (x1 + m * x1 + wd * a))
        buf = m * x1 + x2
        torch.testing.assert_close(c, b - lr * (x2 + m * buf + wd * b))


def test_mask_sgd_without_decay_is_torch_sgd():
    torch.manual_seed(0)
    for momentum, nesterov, dampening in ((0.9, True, 0.0), (0.9, False, 0.0), (0.9, False, 0.3), (0.0, False, 0.0)):
        a = [torch.randn(5, requires_grad=True) for _ in range(2)]
        b = [t.detach().clone().requires_grad_() for t in a]
        ours = MaskSGD(a, lr=0.3, momentum=momentum, nesterov=nesterov, dampening=dampening)
        theirs = torch.optim.SGD(b, lr=0.3, momentum=momentum, nesterov=nesterov, dampening=dampening)
        for _ in range(3):
            grads = [torch.randn(5) for _ in a]
            for p, q, g in zip(a, b, grads):
                p.grad, q.grad = g.clone(), g.clone()
            ours.step()
            theirs.step()
        assert _equal([t.detach() for t in a], [t.detach() for t in b])


def test_mask_schedule_follow_scales_with_the_weights_lr(small_cnn):
    torch.manual_seed(0)
    model = small_cnn(8)
    pruning = _pruning(model, mask_lr=2.0, mask_schedule="follow")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for t, (x, y) in enumerate(_batches(3)):
        pruning.step(x, y, optimizer)
        assert pruning.mask_optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * 0.5 ** t)
        schedule.step()
    constant = _pruning(small_cnn(8), mask_lr=2.0)
    optimizer = torch.optim.SGD(constant.model.parameters(), lr=0.1)
    for g in optimizer.param_groups:
        g["lr"] = 0.01
    constant.step(*_batches(1)[0], optimizer)
    assert constant.mask_optimizer.param_groups[0]["lr"] == 2.0


def test_phases_logged_and_counted_by_end_epoch(small_cnn):
    torch.manual_seed(0)
    pruning = _pruning(small_cnn(8), warmup_epochs=1, hard_ft_epoch=2, widths_every=0)
    optimizer = torch.optim.SGD(pruning.model.parameters(), lr=0.05)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        pruning.export(calibration=_batches(1))  # the masks have not trained
    phases, losses = [], []
    for _ in range(3):
        for x, y in _batches(2):
            pruning.step(x, y, optimizer)
        entry = pruning.end_epoch()
        phases.append(entry["phase"])
        losses.append({k for k in entry if k.startswith("loss")})
    assert phases == ["warmup", "prune", "hard_ft"] and pruning.epoch == 3
    assert losses[0] == {"loss_dense"} and "loss_soft" in losses[1] and losses[2] == {"loss_hard"}
    assert [line["epoch"] for line in pruning.history] == [1, 2, 3]  # widths_every=0: one line per epoch
    assert [line["step"] for line in pruning.history] == [2, 4, 6]


def test_loop_options_are_honoured(small_cnn, tmp_path):
    torch.manual_seed(0)
    # widths_every: the history in memory
    pruning = _pruning(small_cnn(8), widths_every=2)
    optimizer = torch.optim.SGD(pruning.model.parameters(), lr=0.05)
    for x, y in _batches(4):
        pruning.step(x, y, optimizer)
    assert [line["step"] for line in pruning.history] == [2, 4]
    assert pruning.history[-1]["widths"] == pruning.widths
    # reorder_every: on end_epoch (with the fixed order of the paper's text)
    model = small_cnn(8)
    pruning = _pruning(model, order="fixed", reorder_every=1)
    pruning.state.masks.set_orders([torch.arange(s) for s in pruning.state.groups.sizes])
    pruning.end_epoch()
    assert _equal(pruning.state.masks.orders, channel_order(model, pruning.state.groups))
    # recalibrate_batches: that many calibration batches are read
    read = []

    def calibration():
        for batch in _batches(6):
            read.append(1)
            yield batch

    pruning = _pruning(small_cnn(8), recalibrate_batches=3)
    pruning.export(calibration=calibration())
    assert len(read) == 3
    # recalibrate_bn=False: the training statistics, no calibration needed
    pruning = _pruning(small_cnn(8), recalibrate_bn=False)
    assert isinstance(pruning.export(), torch.nn.Module)
    # init_from: a run folder's weights, masks and order
    source = _pruning(small_cnn(8), mask_lr=20.0)
    optimizer = torch.optim.SGD(source.model.parameters(), lr=0.05)
    for x, y in _batches(3):
        source.step(x, y, optimizer)
    torch.save({"pruner": {"model": source.model.state_dict(), **source.state_dict()}}, tmp_path / "checkpoint.pt")
    target_model = small_cnn(8)
    target = _pruning(target_model, init_from=str(tmp_path))
    assert _equal(_params(target_model), _params(source.model)) and _equal(_logits(target), _logits(source))
    assert target.widths == source.widths


def test_a_target_outside_the_pruning_range_is_the_command_lines_message(small_cnn):
    from core.config import flops_target_problem

    with pytest.raises(ValueError) as refused:
        S2HPruning(small_cnn(), torch.zeros(1, 3, SIZE, SIZE), flops_target=1.5)
    assert str(refused.value) == flops_target_problem("flops_target", 1.5, pruning=True)
    assert "must be in (0, 1) for a pruning method" in str(refused.value)


def test_what_the_api_cannot_honour_is_refused(small_cnn, tmp_path):
    with pytest.raises(ConfigError, match="unknown option 'mask_lrr'"):
        _pruning(small_cnn(8), mask_lrr=1.0)
    pruning = _pruning(small_cnn(8))
    with pytest.raises(ConfigError, match="recalibrate_bn is on"):
        pruning.export()
    with pytest.raises(ConfigError, match="recalibrate_bn=False"):
        _pruning(small_cnn(8), recalibrate_bn=False).export(calibration=_batches(1))
    with pytest.raises(ConfigError, match="init_from: no checkpoint.pt"):
        _pruning(small_cnn(8), init_from=str(tmp_path))
    torch.save({"pruner": {"model": {}}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="not an s2hpruner run"):
        _pruning(small_cnn(8), init_from=str(tmp_path))
    other = _pruning(small_cnn(4))
    torch.save({"pruner": {"model": other.model.state_dict(), **other.state_dict()}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="different network"):
        _pruning(small_cnn(8), init_from=str(tmp_path))
    follow = _pruning(small_cnn(8), mask_schedule="follow")
    with pytest.raises(ConfigError, match="mask_schedule=follow"):
        follow.step(*_batches(1)[0], torch.optim.SGD(follow.model.parameters(), lr=0.0))


def _own_loop(small_cnn, epochs: int, steps: int, stop_after: int | None = None, checkpoint: bytes | None = None):
    """warm-up, pruning and hard fine-tuning epochs of a user's loop with its own cosine schedule;
    `stop_after` steps: return a checkpoint; `checkpoint`: start from it."""
    options = dict(warmup_epochs=1, hard_ft_epoch=3, mask_schedule="follow", mask_weight_decay=1e-3,
                   widths_every=3, mask_lr=5.0)
    torch.manual_seed(1 if checkpoint is not None else 0)  # fresh objects start elsewhere
    model = small_cnn(8)
    if checkpoint is not None:
        saved = torch.load(io.BytesIO(checkpoint), weights_only=True)  # tensors and primitives only
        model.load_state_dict(saved["model"])
    pruning = _pruning(model, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    done = 0
    if checkpoint is not None:
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        pruning.load_state_dict(saved["pruning"])
        done = saved["steps"]
    data = _batches(steps, seed=3)
    entries = []
    for step in range(done, epochs * steps):
        pruning.step(*data[step % steps], optimizer)
        schedule.step()
        if stop_after is not None and step + 1 == stop_after:
            buffer = io.BytesIO()
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                        "pruning": pruning.state_dict(), "steps": step + 1}, buffer)
            return buffer.getvalue()
        if (step + 1) % steps == 0:
            entries.append(pruning.end_epoch())
    return model, pruning, entries


@pytest.mark.parametrize("stop_after", [2, 5, 10])  # in warm-up, pruning and hard fine-tuning
def test_resumed_own_loop_equals_the_uninterrupted_one(small_cnn, stop_after):
    epochs, steps = 4, 3
    model, pruning, entries = _own_loop(small_cnn, epochs, steps)
    checkpoint = _own_loop(small_cnn, epochs, steps, stop_after=stop_after)
    resumed_model, resumed, resumed_entries = _own_loop(small_cnn, epochs, steps, checkpoint=checkpoint)
    assert [e["phase"] for e in entries] == ["warmup", "prune", "prune", "hard_ft"]
    assert _equal(_params(resumed_model), _params(model))
    assert _equal(_logits(resumed), _logits(pruning))
    assert resumed.history == pruning.history and resumed.epoch == pruning.epoch == epochs
    assert resumed_entries == entries[len(entries) - len(resumed_entries):]
    assert resumed.state_dict()["mask_optimizer"]["param_groups"] == pruning.state_dict()["mask_optimizer"]["param_groups"]
