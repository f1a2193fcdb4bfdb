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
  checkpoint at the next step boundary (`core.loop`) and stop, or hand the signal on;
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
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from core import distributed
from core.checkpoint import save_torch
from core.config import RunConfig, to_dict
from core.data.loaders import build_data
from core.env import environment
from core.errors import ConfigError
from core.export import architecture, save_pruned
from core.files import write_text
from core.loop import NonFiniteLoss, RunInterrupted, StopRequest, Training, now, on_device
from core.measure import count_flops, count_params
from core.models import build_model
from core.pruner import PRUNERS, Pruner, TrainContext
from core.lease import Lease, LeaseHeld
from core.records import RunDir, run_id, setting_id
from core.seeding import seed_everything
from core.version import code_version, packages_of, staleness

__all__ = ["RunInterrupted", "RunOutcome", "resolve_device", "run", "record_header", "run_code"]


@dataclass
class RunOutcome:
    status: str  # "done" | "failed" | "skipped"
    run_dir: RunDir
    record: dict[str, Any]  # rank 0's record ({} on the other ranks of a data-parallel run)
    network: nn.Module | None = None  # the exported network (None when skipped)


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
    started = now()
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
            train_batches=lambda n: on_device(itertools.islice(whole.train_loader(cfg.train.epochs), n), device),
            test_batches=lambda: on_device(data.test_loader(), device),
        )
        pruner: Pruner = PRUNERS.get(cfg.prune.method).factory(model, ctx)
    except Exception as exc:  # e.g. a budget too small for a method's phases: recorded, then raised
        if main:
            record = record_header(cfg, "failed", device, started)
            record["error"] = f"setting up: {type(exc).__name__}: {exc}"
            run_dir.write_record(record)
        raise

    trainer = Training(cfg, run_dir, data, pruner, device, run_code(cfg)["version"], place)
    stop = StopRequest()
    try:
        with stop.installed() if handle_signals else nullcontext(), distributed.GradientSync(place):
            trainer.train(stop)
    except NonFiniteLoss as exc:
        record = _record(trainer, "failed", dense_flops, dense_params, error=str(exc)) if main else {}
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
            run_dir.write_record(_record(trainer, "failed", dense_flops, dense_params, error=error))
        raise

    # Rank 0 writes the export and the record; a failure there is recorded like a training
    # failure, and every rank still meets the barrier, so none waits for a collective timeout.
    try:
        exported = pruner.export()
        if main:
            save_pruned(exported, architecture(cfg.model, data.info.num_classes, data.image_size), run_dir.export)
            if cfg.save_module:  # the whole pickled module, only when asked (loads with weights_only=False)
                save_torch(copy.deepcopy(exported).cpu(), run_dir.export_module)
            record = _record(trainer, "done", dense_flops, dense_params, exported=exported)
            run_dir.write_record(record)
    except Exception as exc:
        try:  # the barrier is met even if writing the failed record raises too (a full disk)
            if main:
                run_dir.export.unlink(missing_ok=True)
                run_dir.export_module.unlink(missing_ok=True)
                error = f"exporting: {type(exc).__name__}: {exc}"
                run_dir.write_record(_record(trainer, "failed", dense_flops, dense_params, error=error))
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
        "finished": now(),
    }


def run_code(cfg: RunConfig) -> dict[str, Any]:
    """The code version this run's numbers come from (`core.version`), and the packages it covers."""
    packages = packages_of(PRUNERS.get(cfg.prune.method).factory.__module__)
    return {"version": code_version(packages), "packages": list(packages)}


def _record(trainer: Training, status: str, dense_flops: int, dense_params: int, *,
            exported: nn.Module | None = None, error: str | None = None) -> dict[str, Any]:
    """The run's `record.json`: the header, the loop's metrics, its decisions (the working regime)."""
    cfg = trainer.cfg
    metrics = trainer.metrics(dense_flops, dense_params, exported)
    record = record_header(cfg, status, trainer.device, trainer.started)
    record["metrics"] = metrics
    steps = cfg.train.epochs * trainer.data.steps_per_epoch
    record["regime"] = trainer.decisions.regime(trainer.data.info.num_classes, steps,
                                                metrics.get("train_loss_export", metrics.get("train_loss")))
    if trainer.code_started != record["code"]["version"]:
        record["code"]["started_with"] = trainer.code_started  # resumed across a code change: mixed
    if error is not None:
        record["error"] = error
    return record
