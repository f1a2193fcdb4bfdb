"""The training engine: one run, from a resolved config to a finished run folder.

`run(cfg)` builds the data, the model and the pruner, trains for `train.epochs` epochs with a
progress bar, evaluates and appends a `log.jsonl` line after each epoch, rewrites
`checkpoint.pt` atomically after each epoch, and finally exports the hard network to
`pruned.pt` (tensors and an architecture description, see `core.export`) and writes
`record.json`. It is safe to call again at any time:

- a finished run (`record.json` says "done") is reported and not trained again;
- an unfinished one resumes from its checkpoint, and ends bit for bit where an uninterrupted
  run would have (on CPU; see `core.data.loaders` for how the data order is kept);
- SIGTERM or SIGUSR2 (SLURM's pre-emption and time-limit signals) make the loop write a
  checkpoint at the next step boundary, mid-epoch if need be, and then do what the process
  would have done on that signal (for a plain process: stop with `RunInterrupted`);
- a non-finite training loss stops the run with a "failed" record giving the reason, as does
  any other error (which is then re-raised);
- with `train.gpus = N > 1` it is one of N data-parallel processes (see `core.distributed`):
  every rank trains on its part of each batch and runs the same per-epoch code, the ranks
  agree at every step on whether to stop, and only rank 0 writes to the run folder.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import torch
import torch.nn as nn
from tqdm import tqdm

from core import distributed
from core.checkpoint import rng_state, save_torch, set_rng_state
from core.config import RunConfig, to_dict
from core.curves import Curves
from core.data.loaders import DataBundle, build_data
from core.decisions import DecisionLog
from core.env import environment
from core.errors import ConfigError
from core.export import architecture, save_pruned
from core.files import write_text
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
from core.models import build_model
from core.pruner import PRUNERS, Pruner, TrainContext
from core.lease import Lease, LeaseHeld
from core.records import RunDir, run_id, setting_id
from core.seeding import seed_everything
from core.version import code_version, packages_of, staleness

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


@dataclass
class RunOutcome:
    status: str  # "done" | "failed" | "skipped"
    run_dir: RunDir
    record: dict[str, Any]  # rank 0's record ({} on the other ranks of a data-parallel run)
    network: nn.Module | None = None  # the exported network (None when skipped)


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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of this process; data-parallel ranks on CUDA take GPU `local_rank`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA device is available here; use train.device=cpu or auto")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank if local_rank < torch.cuda.device_count() else 0)
    return device


def _now() -> str:
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


def _on_device(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches moved to `device`, drawn without touching the training RNG."""
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        for images, labels in batches:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def _bar() -> dict[str, Any]:
    """tqdm settings: lively on a terminal, a line every 30 s in a log file."""
    return {"mininterval": 0.1 if sys.stderr.isatty() else 30.0, "dynamic_ncols": True}


def run(cfg: RunConfig, *, handle_signals: bool = True) -> RunOutcome:
    """Run (or resume, or skip) the resolved config `cfg`.

    The process (rank 0 of a data-parallel run) holds the run folder's lease while it trains
    (`core.lease`): if another live process holds it, this one says who, in one line, and
    returns "held" without touching the folder. A failed earlier attempt is moved aside
    (`RunDir.set_aside`) and the run starts afresh; it is never resumed from.
    """
    run_dir = RunDir.for_config(cfg)
    previous = run_dir.read_record()
    if previous is not None and previous.get("status") == "done":
        return _skip(run_dir, previous)

    place = distributed.start(cfg.train.gpus, resolve_device(cfg.train.device).type)
    lease: Lease | None = None
    try:
        decision, held = "train", None
        if place.is_main:
            try:
                lease = run_dir.take_lease()
            except LeaseHeld as exc:
                decision, held = "held", exc
            else:
                previous = run_dir.read_record()  # it may have finished while we asked
                if previous is not None and previous.get("status") == "done":
                    decision = "done"
                elif previous is not None:
                    aside = run_dir.set_aside("failed")
                    print(f"{run_dir.path}: previous attempt failed ({previous.get('error')}); "
                          f"kept in {aside}; running it afresh")
        if place.enabled:  # every rank does what rank 0 decided
            codes = ("train", "held", "done")
            device = resolve_device(cfg.train.device, place.local_rank)
            if device.type == "cuda":
                torch.cuda.set_device(device)  # NCCL's collectives run on the current device
            (code,) = distributed.sum_across([float(codes.index(decision))], place, device)
            decision = codes[int(code)]
        if decision == "held":
            message = str(held) if held is not None else f"{run_dir.path}: held by another process"
            if held is not None:
                print(message)
            return RunOutcome("held", run_dir, {"status": "held", "error": message, "metrics": {}})
        if decision == "done":
            return _skip(run_dir, previous or {"metrics": {}})
        return _run(cfg, run_dir, place, handle_signals)
    finally:
        if lease is not None:
            lease.release()
        distributed.stop(place)


def _skip(run_dir: RunDir, record: dict[str, Any]) -> RunOutcome:
    stale = staleness(record)
    print(f"{run_dir.path}: already done (top1 {record['metrics'].get('top1', float('nan')):.2f}); nothing to train"
          + (f" ({stale}: `python -m core run ... --rerun` trains it afresh)" if stale else ""))
    return RunOutcome("skipped", run_dir, record)


def _run(cfg: RunConfig, run_dir: RunDir, place: distributed.Distributed, handle_signals: bool) -> RunOutcome:
    main = place.is_main
    device = resolve_device(cfg.train.device, place.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not cfg.train.deterministic
        torch.backends.cudnn.deterministic = cfg.train.deterministic
    seed_everything(cfg.seed)
    started = _now()
    if main:
        run_dir.path.mkdir(parents=True, exist_ok=True)
        run_dir.write_config(cfg)
    try:
        data = build_data(cfg, pin_memory=device.type == "cuda", rank=place.rank, world=place.world_size)
        whole = dataclasses.replace(data, rank=0, world=1)  # the same batches on every rank
        model = build_model(cfg.model, data.info.num_classes, data.image_size)
        dense_flops, dense_params = count_flops(model, data.image_size), count_params(model)
        ctx = TrainContext(
            cfg, device, data.steps_per_epoch, data.info.num_classes, data.image_size,
            run_dir=run_dir.path if main else None,
            train_batches=lambda n: _on_device(itertools.islice(whole.train_loader(cfg.train.epochs), n), device),
            test_batches=lambda: _on_device(data.test_loader(), device),
        )
        pruner: Pruner = PRUNERS.get(cfg.prune.method).factory(model, ctx)
    except Exception as exc:  # e.g. a budget too small for a method's phases: recorded, then raised
        if main:
            record = record_header(cfg, "failed", device, started)
            record["error"] = f"setting up: {type(exc).__name__}: {exc}"
            run_dir.write_record(record)
        raise

    trainer = _Training(cfg, run_dir, data, pruner, device, place)
    stop = StopRequest()
    try:
        with stop.installed() if handle_signals else nullcontext(), distributed.GradientSync(place):
            trainer.train(stop)
    except NonFiniteLoss as exc:
        record = trainer.record("failed", dense_flops, dense_params, error=str(exc)) if main else {}
        if main:
            run_dir.write_record(record)
            print(f"{run_dir.path}: failed: {exc}")
        return RunOutcome("failed", run_dir, record)
    except RunInterrupted:
        raise
    except Exception as exc:
        # Errors are recorded; SystemExit (e.g. a requeue) and KeyboardInterrupt are not failures.
        # Another rank leaves its error beside the run before its connections close: the ranks
        # still waiting in a collective then fail at once ("connection closed by peer"), and
        # rank 0's record names the error that started it.
        error = f"{type(exc).__name__}: {exc}"
        if not main:
            write_text(run_dir.path / f"error-rank{place.rank}.txt", error)
        else:
            peers = sorted(run_dir.path.glob("error-rank*.txt"))
            if peers:
                error = "; ".join(f"{p.stem.removeprefix('error-')}: {p.read_text()}" for p in peers) + f" (rank 0: {error})"
            run_dir.write_record(trainer.record("failed", dense_flops, dense_params, error=error))
        raise

    # Rank 0 writes the export and the record; a failure there is recorded like a training
    # failure, and every rank still meets the barrier, so none waits for a collective timeout.
    try:
        exported = pruner.export()
        if main:
            save_pruned(exported, architecture(cfg.model, data.info.num_classes, data.image_size), run_dir.export)
            if cfg.save_module:  # the whole pickled module, only when asked (loads with weights_only=False)
                save_torch(copy.deepcopy(exported).cpu(), run_dir.export_module)
            record = trainer.record("done", dense_flops, dense_params, exported=exported)
            run_dir.write_record(record)
    except Exception as exc:
        try:  # the barrier is met even if writing the failed record raises too (a full disk)
            if main:
                run_dir.export.unlink(missing_ok=True)
                run_dir.export_module.unlink(missing_ok=True)
                error = f"exporting: {type(exc).__name__}: {exc}"
                run_dir.write_record(trainer.record("failed", dense_flops, dense_params, error=error))
                print(f"{run_dir.path}: failed: {error}")
        finally:
            distributed.barrier(place)
        raise
    distributed.barrier(place)
    if not main:
        return RunOutcome("done", run_dir, {}, exported)
    m = record["metrics"]
    print(f"{run_dir.path}: done: top1 {m['top1']:.2f}%, FLOPs ratio {m['flops_ratio']:.4f}, {m['params']:,} parameters")
    return RunOutcome("done", run_dir, record, exported)


def record_header(cfg: RunConfig, status: str, device: torch.device, started: str) -> dict[str, Any]:
    """Every field of `record.json` but the metrics (empty here)."""
    return {
        "run_id": run_id(cfg),
        "setting_id": setting_id(cfg),
        "experiment": cfg.experiment,
        "profile": cfg.profile,
        "status": status,
        "method": cfg.prune.method,
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "flops_target": cfg.prune.flops_target,
        "seed": cfg.seed,
        "code": run_code(cfg),
        "metrics": {},
        "config": to_dict(cfg),
        "env": environment(device),
        "started": started,
        "finished": _now(),
    }


def run_code(cfg: RunConfig) -> dict[str, Any]:
    """The code version this run's numbers come from (`core.version`), and the packages it covers."""
    packages = packages_of(PRUNERS.get(cfg.prune.method).factory.__module__)
    return {"version": code_version(packages), "packages": list(packages)}


def _fresh_totals() -> dict[str, float]:
    """Running sums of one epoch's training loss, correct predictions, samples and seconds."""
    return {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}


class _Training:
    """The epoch loop of one run, with what must survive an interruption."""

    def __init__(self, cfg: RunConfig, run_dir: RunDir, data: DataBundle, pruner: Pruner, device: torch.device,
                 place: distributed.Distributed = distributed.SINGLE) -> None:
        self.cfg, self.run_dir, self.data, self.pruner, self.device = cfg, run_dir, data, pruner, device
        self.place = place
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # steps completed in the current epoch
        self.totals = _fresh_totals()
        self.peak_train_mb = 0.0
        self.decisions = DecisionLog(data.steps_per_epoch)  # the pruner's, with the loss at each
        self.started = _now()
        self.code_started = run_code(cfg)["version"]  # the version the run began with
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
        if self.code_started != run_code(self.cfg)["version"]:
            print(f"{self.run_dir.path}: resuming a run begun with code version {self.code_started} under "
                  f"{run_code(self.cfg)['version']}; its record will say it mixes the two")
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

    def record(
        self,
        status: str,
        dense_flops: int,
        dense_params: int,
        *,
        exported: nn.Module | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
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
        record = record_header(cfg, status, self.device, self.started)
        record["metrics"] = metrics
        record["regime"] = self.decisions.regime(self.data.info.num_classes, cfg.train.epochs * self.data.steps_per_epoch,
                                                 metrics.get("train_loss_export", metrics.get("train_loss")))
        record["cells"] = self.run_dir.cells()  # the table cells grids have given it so far (see RunDir.cells)
        if self.code_started != record["code"]["version"]:
            record["code"]["started_with"] = self.code_started  # resumed across a code change: mixed
        if error is not None:
            record["error"] = error
        return record
