from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from core.resolve import from_dict, load
from core.dense import DensePruner
from core.engine import RunInterrupted, run
from core.export import load_pruned
from core.pruner import PRUNERS
from core.records import RunDir, run_id

PROJECT = Path(__file__).resolve().parents[2]
TIMING_KEYS = {"time_s", "eval_time_s"}
VOLATILE_METRICS = {"epoch_time_s", "peak_mem_mb_train", "peak_mem_mb_infer"}


class SignalAtStep(DensePruner):
    """Dense training that sends this process a real SIGUSR2 after a chosen step."""

    at_step: int | None = None

    def train_step(self, inputs, targets, epoch, step):
        result = super().train_step(inputs, targets, epoch, step)
        if step + 1 == SignalAtStep.at_step:
            os.kill(os.getpid(), signal.SIGUSR2)
        return result


PRUNERS.register("dense_signal_test")(SignalAtStep)


def _weights(run_dir: RunDir) -> dict[str, torch.Tensor]:
    return load_pruned(run_dir.export).state_dict()


def _same_weights(a: RunDir, b: RunDir) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _log_without_timing(run_dir: RunDir) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in run_dir.read_log()]


def _stable_metrics(run_dir: RunDir) -> dict:
    return {k: v for k, v in run_dir.read_record()["metrics"].items() if k not in VOLATILE_METRICS}


def test_a_run_leaves_the_contracted_run_folder(tiny):
    cfg = tiny("train.epochs=2", "seed=0")
    outcome = run(cfg)
    d = outcome.run_dir
    assert outcome.status == "done"
    assert d.path == Path(cfg.output_root) / "runs" / "custom" / run_id(cfg)
    for path in (d.config, d.checkpoint, d.log, d.record, d.export):
        assert path.is_file(), path

    log = d.read_log()
    assert [e["epoch"] for e in log] == [1, 2]
    for key in ("epoch", "lr", "train_loss", "test_top1", "flops_ratio", "time_s"):
        assert all(e[key] is not None for e in log), key

    record = json.loads(d.record.read_text())
    for key in ("run_id", "experiment", "profile", "status", "method", "model", "dataset",
                "flops_target", "seed", "metrics", "config", "env", "started", "finished"):
        assert key in record, key
    assert record["status"] == "done" and record["seed"] == 0 and record["profile"] == "custom"
    assert from_dict(record["config"]) == cfg  # the recorded config reproduces the run id
    assert set(record["env"]) == {"python", "torch", "cuda", "device", "git_sha", "git_dirty", "hostname", "threads",
                                  "cpu_kernels"}
    assert record["env"]["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()

    # pruned.pt is data (no class unpickled) that rebuilds a plain module whose FLOPs an
    # independent count confirms; the pickled module is written only when asked.
    assert set(torch.load(d.export, weights_only=True)) == {"format", "architecture", "attributes", "tensors"}
    assert not d.export_module.exists()
    exported = load_pruned(d.export)
    assert type(exported).__module__ == "torchvision.models.resnet"  # no suite class to import
    with FlopCounterMode(display=False) as counter:
        exported.eval()(torch.zeros(1, 3, 16, 16))
    m = record["metrics"]
    assert m["flops"] == counter.get_total_flops() == m["flops_dense"]
    assert m["flops_ratio"] == m["flops_ratio_prunable"] == 1.0
    assert m["params"] == sum(p.numel() for p in exported.parameters()) == m["params_dense"]
    assert m["top1"] == log[-1]["test_top1"]
    for key in ("epoch_time_s", "peak_mem_mb_train", "peak_mem_mb_infer"):
        assert m[key] > 0, key


def test_save_module_also_writes_the_pickled_module(tiny):
    outcome = run(tiny("train.epochs=1", "save_module=true"))
    pickled = torch.load(outcome.run_dir.export_module, weights_only=False)
    rebuilt = load_pruned(outcome.run_dir.path)
    assert pickled.state_dict().keys() == rebuilt.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(pickled.state_dict().values(), rebuilt.state_dict().values()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_run_records_cuda_memory_and_exports_for_cpu(tiny):
    outcome = run(tiny("train.epochs=1", "train.device=cuda"))
    metrics = outcome.record["metrics"]
    assert metrics["peak_mem_kind"] == "cuda_peak_allocated" and metrics["peak_mem_mb_train"] > 0
    exported = load_pruned(outcome.run_dir.export)
    assert all(p.device.type == "cpu" for p in exported.parameters())


def test_tiny_run_learns_the_synthetic_task(tiny):
    record = run(tiny("train.epochs=5", "data.options.train_size=320", "data.augment=none")).record
    assert record["metrics"]["top1"] > 80  # 10 classes: chance is 10 %


def test_asking_again_for_a_finished_run_trains_nothing(tiny, capsys):
    cfg = tiny("train.epochs=1")
    first = run(cfg)
    before = (first.run_dir.record.read_text(), first.run_dir.log.read_text(), first.run_dir.checkpoint.stat().st_mtime_ns)
    second = run(cfg)
    assert second.status == "skipped"
    assert "already done" in capsys.readouterr().out
    after = (second.run_dir.record.read_text(), second.run_dir.log.read_text(), second.run_dir.checkpoint.stat().st_mtime_ns)
    assert after == before


def test_non_finite_loss_fails_the_run_with_the_reason(tiny):
    outcome = run(tiny("train.lr=1e30"))
    assert outcome.status == "failed"
    record = outcome.run_dir.read_record()
    assert record["status"] == "failed" and "non-finite training loss" in record["error"]
    assert not outcome.run_dir.export.exists()


def test_an_export_that_raises_leaves_a_failed_record_with_the_reason(tiny, monkeypatch):
    def broken(self):
        raise RuntimeError("cannot slim this network")

    monkeypatch.setattr(DensePruner, "export", broken)
    cfg = tiny("train.epochs=1")
    with pytest.raises(RuntimeError, match="cannot slim"):
        run(cfg, handle_signals=False)
    run_dir = RunDir.for_config(cfg)
    record = run_dir.read_record()
    assert record["status"] == "failed" and record["error"] == "exporting: RuntimeError: cannot slim this network"
    assert not run_dir.export.exists() and run_dir.status() == "failed"  # not "interrupted" forever: retried next time


def test_a_record_that_does_not_parse_reads_as_a_failed_attempt(tiny):
    cfg = tiny("train.epochs=1")
    run_dir = RunDir.for_config(cfg)
    run_dir.path.mkdir(parents=True)
    run_dir.record.write_text('{"status": "do')
    assert run_dir.status() == "failed" and "unreadable record.json" in run_dir.read_record()["error"]
    assert run(cfg, handle_signals=False).status == "done"  # and a run makes it again


def test_resume_mid_epoch_is_bit_exact_with_augmentation_mixing_and_repeats(tiny):
    # ViT with the full Lee et al. recipe: AutoAugment, random erasing, MixUp/CutMix (global
    # RNG), repeated augmentation, stochastic depth. 96 images / 16 = 6 steps per epoch.
    common = ("model.name=vit", "model.width=0.25", "model.options.depth=2", "train.epochs=2",
              "train.optimizer=adamw", "train.lr=0.001", "train.warmup_epochs=1")
    reference = run(tiny(*common)).run_dir

    cfg = tiny(*common, "prune.method=dense_signal_test")
    SignalAtStep.at_step = 9  # epoch 2, step 3 of 6
    with pytest.raises(RunInterrupted, match="SIGUSR2"):
        run(cfg)
    interrupted = RunDir.for_config(cfg)
    state = torch.load(interrupted.checkpoint, weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)
    assert interrupted.read_record() is None and len(interrupted.read_log()) == 1

    SignalAtStep.at_step = None
    assert run(cfg).status == "done"
    assert _same_weights(reference, interrupted)
    assert _log_without_timing(reference) == _log_without_timing(interrupted)
    assert _stable_metrics(reference) == _stable_metrics(interrupted)


def _core_run(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "core", "run", *args], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_after_the_first_epoch_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_args):
    # 384 images / 16 = 24 steps per epoch, 3 epochs.
    overrides = ("data.options.train_size=384", "train.epochs=3")
    args = tiny_args(*overrides)
    reference_args = [*args, f"output_root={tmp_path / 'reference'}"]  # the last value wins
    assert _core_run(reference_args).wait(timeout=300) == 0

    process = _core_run(args)
    run_dir = RunDir.for_config(load(args))
    deadline = time.monotonic() + 240
    while not (run_dir.log.exists() and run_dir.log.read_text().strip()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "first epoch did not finish"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "resume" in err
    assert run_dir.checkpoint.exists() and not run_dir.record.exists()

    again = _core_run(args)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "resuming at epoch" in out
    reference = RunDir.for_config(load(reference_args))
    assert reference.path != run_dir.path and reference.path.name == run_dir.path.name
    assert _same_weights(reference, run_dir)
    assert _log_without_timing(reference) == _log_without_timing(run_dir)
    assert _stable_metrics(reference) == _stable_metrics(run_dir)
