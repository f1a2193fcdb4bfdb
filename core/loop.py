"""The epoch loop of one run: steps, the per-epoch log line and evaluation, checkpoints, and
a stop signal honoured at the next step boundary (`core.engine.run` drives it and writes the
record).

A stop request (SIGTERM, SIGUSR2: SLURM's pre-emption and time-limit signals) makes the loop
write a checkpoint at the next step boundary, mid-epoch if need be, and then do what the
process would have done on that signal (for a plain process: stop with `RunInterrupted`).
Evaluation and the batches a pruner draws for itself never touch the training RNG, so a
resumed run ends bit for bit where an uninterrupted one would have (on CPU).
"""

from __future__ import annotations

import itertools
import signal
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import torch
import torch.nn as nn
from tqdm import tqdm

from core import distributed
from core.checkpoint import rng_state, save_torch, set_rng_state
from core.config import RunConfig
from core.curves import Curves
from core.data.loaders import DataBundle
from core.decisions import DecisionLog
from core.errors import ConfigError
from core.measure import (
    count_flops,
    count_params,
    eval_mode,
    memory_kind,
    MemoryPeak,
    peak_memory_mb,
    reset_peak_memory,
    tensor_mb,
)
from core.pruner import Pruner
from core.records import RunDir, run_id

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class RunInterrupted(Exception):
    """A stop signal arrived; the checkpoint is written and the run can be resumed."""

    def __init__(self, signum: int, epoch: int, step: int) -> None:
        self.signum = signum
        super().__init__(
            f"interrupted by {signal.Signals(signum).name} at epoch {epoch + 1}, step {step}; "
            "checkpoint saved, run the same command again to resume"
        )


class NonFiniteLoss(Exception):
    """The training loss became NaN or infinite."""


class StopRequest:
    """Remembers a stop signal until the training loop reaches a safe point."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.signum = signum

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals can only be caught in the main thread
            return
        for sig in STOP_SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handler)
        try:
            yield self
        finally:
            for sig, handler in self.previous.items():
                signal.signal(sig, handler)

    def act(self, epoch: int, step: int) -> None:
        """After the checkpoint: hand the signal to whoever handled it before, or stop."""
        assert self.signum is not None
        previous = self.previous.get(self.signum)
        if callable(previous):
            previous(self.signum, None)  # e.g. submitit's requeue handler
        raise RunInterrupted(self.signum, epoch, step)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _accuracy_counts(logits: torch.Tensor, targets: torch.Tensor) -> int:
    labels = targets.argmax(dim=1) if targets.ndim == 2 else targets
    return int((logits.argmax(dim=1) == labels).sum())


def evaluate(net: nn.Module, data: DataBundle, device: torch.device, progress: bool, desc: str) -> float:
    """Top-1 accuracy (%) on the test split, without touching the training RNG."""
    correct = total = 0
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), eval_mode(net), torch.no_grad():
        for images, labels in tqdm(data.test_loader(), desc=desc, leave=False, disable=not progress, **_bar()):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            correct += _accuracy_counts(net(images), labels)
            total += labels.numel()
    return 100.0 * correct / max(total, 1)


# Training batches the exported network's train loss is measured on (the working regime's last clause)
EXPORT_LOSS_BATCHES = 8


def train_loss(net: nn.Module, data: DataBundle, device: torch.device, epoch: int) -> float:
    """Cross-entropy of `net` (eval mode) on the first EXPORT_LOSS_BATCHES training batches of
    `epoch`'s order, without touching the training RNG: the loss of the network a run exports,
    whatever the method trained it on (S2HPruner's step reports its soft network's loss)."""
    total = seen = 0.0
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), eval_mode(net), torch.no_grad():
        for images, labels in itertools.islice(data.train_loader(epoch, 0), EXPORT_LOSS_BATCHES):
            images, labels = images.to(device), labels.to(device)
            total += float(torch.nn.functional.cross_entropy(net(images), labels, reduction="sum"))
            seen += labels.shape[0]
    return total / max(seen, 1)


def on_device(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches moved to `device`, drawn without touching the training RNG."""
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        for images, labels in batches:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def _bar() -> dict[str, Any]:
    """tqdm settings: lively on a terminal, a line every 30 s in a log file."""
    return {"mininterval": 0.1 if sys.stderr.isatty() else 30.0, "dynamic_ncols": True}


def _fresh_totals() -> dict[str, float]:
    """Running sums of one epoch's training loss, correct predictions, samples and seconds."""
    return {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}


class Training:
    """The epoch loop of one run, with what must survive an interruption."""

    def __init__(self, cfg: RunConfig, run_dir: RunDir, data: DataBundle, pruner: Pruner, device: torch.device,
                 code_version: str, place: distributed.Distributed = distributed.SINGLE) -> None:
        self.cfg, self.run_dir, self.data, self.pruner, self.device = cfg, run_dir, data, pruner, device
        self.place = place
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # steps completed in the current epoch
        self.totals = _fresh_totals()
        self.peak_train_mb = 0.0
        self.decisions = DecisionLog(data.steps_per_epoch)  # the pruner's, with the loss at each
        self.started = now()
        self.code_version = code_version  # this checkout's (`core.engine.run_code`)
        self.code_started = code_version  # the version the run began with
        if run_dir.checkpoint.exists():
            self._resume()
        # live curves beside the log (rank 0); a resumed run purges what came after its checkpoint
        self.curves = Curves(run_dir.path, resumed_at=self.global_step, enabled=place.is_main)

    @property
    def global_step(self) -> int:
        return self.epoch * self.data.steps_per_epoch + self.step_in_epoch

    def _resume(self) -> None:
        state = torch.load(self.run_dir.checkpoint, map_location="cpu", weights_only=True)
        if state["run_id"] != run_id(self.cfg):
            raise ConfigError(f"{self.run_dir.checkpoint} belongs to run {state['run_id']}, not {run_id(self.cfg)}")
        self.pruner.load_state_dict(state["pruner"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.totals = dict(state["totals"])
        self.peak_train_mb = state["peak_train_mb"]
        self.decisions.load_state_dict(state["decisions"])
        self.started = state["started"]
        self.code_started = state.get("code_version", "unknown")
        if self.code_started != self.code_version:
            print(f"{self.run_dir.path}: resuming a run begun with code version {self.code_started} under "
                  f"{self.code_version}; its record will say it mixes the two")
        set_rng_state(state["rng"])
        if self.place.is_main:
            self.run_dir.truncate_log(self.epoch)
        print(f"{self.run_dir.path}: resuming at epoch {self.epoch + 1}, step {self.step_in_epoch}")

    def _save(self) -> None:
        if not self.place.is_main:
            return
        save_torch(
            {
                "run_id": run_id(self.cfg),
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "totals": dict(self.totals),
                "peak_train_mb": self.peak_train_mb,
                "decisions": self.decisions.state_dict(),
                "started": self.started,
                "code_version": self.code_started,
                "pruner": self.pruner.state_dict(),
                "rng": rng_state(),
            },
            self.run_dir.checkpoint,
        )

    def train(self, stop: StopRequest) -> None:
        try:
            self._train(stop)
        finally:
            self.curves.close()

    def _train(self, stop: StopRequest) -> None:
        epochs, progress = self.cfg.train.epochs, self.cfg.progress
        while self.epoch < epochs:
            reset_peak_memory(self.device)
            loader = self.data.train_loader(self.epoch, self.step_in_epoch)
            bar = tqdm(
                loader,
                total=self.data.steps_per_epoch,
                initial=self.step_in_epoch,
                desc=f"epoch {self.epoch + 1}/{epochs}",
                disable=not progress,
                **_bar(),
            )
            tick = time.perf_counter()
            for images, labels in bar:
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
                if self.data.batch_mix is not None:
                    images, labels = self.data.batch_mix(images, labels)
                result = self.pruner.train_step(images, labels, self.epoch, self.global_step)
                loss = float(result.loss)
                finite = bool(torch.isfinite(result.loss))
                if self.place.enabled:
                    finite = self._agree(finite, stop)
                if not finite:
                    raise NonFiniteLoss(
                        f"non-finite training loss ({loss}) at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}"
                    )
                announced = self.pruner.take_decisions()
                self.decisions.observe(loss, announced)
                self.curves.step(self.global_step + 1, loss)
                for decision in announced:
                    self.curves.decision(decision.step, decision.what, self.decisions.running_loss)
                self.totals["loss"] += loss * labels.shape[0]
                self.totals["correct"] += _accuracy_counts(result.logits, labels)
                self.totals["seen"] += labels.shape[0]
                self.step_in_epoch += 1
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.pruner.lr():.3g}", refresh=False)
                if stop.signum is not None:
                    self.totals["time"] += time.perf_counter() - tick
                    self._track_peak()
                    self._save()
                    bar.close()
                    stop.act(self.epoch, self.step_in_epoch)
            bar.close()
            self.totals["time"] += time.perf_counter() - tick
            self._track_peak()
            self._end_epoch()
            if stop.signum is not None:
                stop.act(self.epoch, 0)

    def _agree(self, finite: bool, stop: StopRequest) -> bool:
        """Data-parallel ranks: share buffers, and agree on stopping (a signal, a bad loss)."""
        distributed.broadcast_buffers(self.pruner.replicated_modules(), self.place)
        flags = torch.tensor([0.0 if finite else 1.0, 0.0 if stop.signum is None else float(stop.signum)], device=self.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        if stop.signum is None and flags[1] > 0:
            stop.signum = int(flags[1])
        return not bool(flags[0] > 0)

    def _track_peak(self) -> None:
        self.peak_train_mb = max(self.peak_train_mb, peak_memory_mb(self.device))

    def _end_epoch(self) -> None:
        loss, correct, seen = distributed.sum_across(
            [self.totals["loss"], self.totals["correct"], self.totals["seen"]], self.place, self.device
        )
        self.totals.update(loss=loss, correct=correct, seen=seen)
        extra = self.pruner.end_epoch(self.epoch)
        last = self.epoch + 1 == self.cfg.train.epochs
        evaluate_now = last or (self.epoch + 1) % self.cfg.train.eval_every == 0
        entry: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "lr": self.pruner.lr(),
            "train_loss": self.totals["loss"] / max(self.totals["seen"], 1),
            "train_top1": 100.0 * self.totals["correct"] / max(self.totals["seen"], 1),
            "test_top1": None,
            "flops_ratio": extra.pop("flops_ratio", None),
            "time_s": self.totals["time"],
        }
        if evaluate_now:
            tick = time.perf_counter()
            for name, net in self.pruner.eval_networks().items():
                key = "test_top1" if name == "hard" else f"test_top1_{name}"
                entry[key] = evaluate(net, self.data, self.device, self.cfg.progress, f"eval {name}")
            with torch.no_grad():
                entry.update(self.pruner.eval_extras())
            entry["eval_time_s"] = time.perf_counter() - tick
        entry.update(extra)
        if self.place.is_main:
            self.run_dir.append_log(entry)
            self.curves.epoch(entry)
        self.epoch += 1
        self.step_in_epoch = 0
        self.totals = _fresh_totals()
        self._save()

    def metrics(self, dense_flops: int, dense_params: int, exported: nn.Module | None = None) -> dict[str, Any]:
        """The record's metrics: the log's, and the exported network's (evaluated here) when there is one."""
        cfg = self.cfg
        log = self.run_dir.read_log()
        metrics: dict[str, Any] = {
            "flops_dense": dense_flops,
            "params_dense": dense_params,
            "epoch_time_s": sum(e["time_s"] for e in log) / len(log) if log else None,
            "peak_mem_mb_train": self.peak_train_mb or None,
            "peak_mem_kind": memory_kind(self.device),
            "epochs_done": len(log),
        }
        if log and log[-1].get("train_loss") is not None:
            metrics["train_loss"] = log[-1]["train_loss"]
        for entry in log:  # the last top-1 of each extra network a pruner evaluates ("soft", "original")
            for key, value in entry.items():
                if key.startswith("test_top1_") and value is not None:
                    metrics[key.removeprefix("test_")] = value
        if exported is not None:
            exported = exported.to(self.device)
            with MemoryPeak(self.device) as peak:
                metrics["top1"] = evaluate(exported, self.data, self.device, cfg.progress, "eval export")
            metrics["peak_mem_mb_infer"] = peak.extra_mb + tensor_mb(exported)
            flops = count_flops(exported, self.data.image_size)
            metrics.update(
                flops=flops,
                flops_ratio=flops / dense_flops,
                flops_ratio_prunable=self.pruner.flops_ratio_prunable(exported),
                params=count_params(exported),
            )
            metrics.update(self.pruner.final_metrics())
            metrics["train_loss_export"] = train_loss(exported, self.data, self.device, cfg.train.epochs)
        return metrics
