"""Run identity, run folders and run records.

`run_id` is a short hash of the result-relevant part of a resolved config (see
`core.resolve.result_fields`): never a timestamp or a job id, so the same config always maps
to the same folder `<output_root>/runs/<experiment>/<run_id>/`. Resuming, skipping finished
runs and joining runs into tables all rest on that.

Attempts that are not resumed (a failed one, or one rerun with `--rerun`) are moved aside whole,
kept for inspection, to `<output_root>/attempts/<experiment>/<run_id>/<time>-<status>/`, where
no reader of `runs/` sees them.

A run folder holds (core/README.md, "Run folders"):
    config.yaml     the resolved config, written before training starts
    checkpoint.pt   the latest training state, rewritten atomically
    log.jsonl       one line per epoch
    record.json     written once, last, when the run has finished ("done" or "failed"), with
                    the code version it was computed by (`core.version`)
    lease.json      while a process trains it: who (`core.lease`); no other process trains it
    cells.jsonl     the table cells the run fills: one line per (experiment, profile, labels),
                    appended by `python -m experiments run` for each grid that has it (the one
                    source of table membership; the engine and its record know no table)
    job.json        where the suite submitted it (`slurm.dispatch`)
    pruned.pt       the exported (physically slimmed) network, weights only (`core.export`)
    pruned_module.pt  the same as a pickled module, only with `save_module=true`
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from core.config import RunConfig, to_yaml
from core.resolve import from_dict, result_fields
from core.files import append_jsonl, read_jsonl, rewrite_jsonl, unique, write_json, write_text
from core.lease import LEASE_FILE, Lease, lease_state

RUN_ID_LENGTH = 12


def _digest(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:RUN_ID_LENGTH]


def run_id(cfg: RunConfig) -> str:
    return _digest(result_fields(cfg))


def setting_id(cfg: RunConfig) -> str:
    """The run id less the seed: runs with equal setting ids are seeds of one setting (what the
    analysis averages), by the same definition of "changes results" as the run id."""
    fields = result_fields(cfg)
    fields.pop("seed")
    return _digest(fields)


RUN_REF = "run:"


def run_ref(cfg: RunConfig) -> str:
    """How another run's config refers to this run: by experiment and run id, never by path,
    so the referring run's id is the same under any output root (`resolve_run` finds the folder)."""
    return f"{RUN_REF}{cfg.experiment}/{run_id(cfg)}"


def resolve_run(ref: str, output_root: str | Path) -> Path:
    """The run folder a reference names: `run:<experiment>/<run_id>` under `output_root`, or a
    folder path given by hand (a user's own run, anywhere)."""
    if ref.startswith(RUN_REF):
        experiment, _, rid = ref[len(RUN_REF):].partition("/")
        return Path(output_root) / "runs" / experiment / rid
    return Path(ref).expanduser()


@dataclass(frozen=True)
class RunDir:
    """The folder of one run and the files in it."""

    path: Path

    @classmethod
    def for_config(cls, cfg: RunConfig) -> "RunDir":
        return cls(Path(cfg.output_root) / "runs" / cfg.experiment / run_id(cfg))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def log(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def record(self) -> Path:
        return self.path / "record.json"

    @property
    def export(self) -> Path:
        return self.path / "pruned.pt"

    @property
    def export_module(self) -> Path:
        return self.path / "pruned_module.pt"

    @property
    def cells_file(self) -> Path:
        return self.path / "cells.jsonl"

    def cells(self) -> list[dict[str, Any]]:
        """The table cells this run fills, each once: {"experiment", "profile", "labels"}."""
        return unique(read_jsonl(self.cells_file))

    def add_cell(self, experiment: str, profile: str, labels: dict[str, str]) -> None:
        """Say that this run fills the cell `labels` of `experiment`'s grid (once per cell)."""
        entry = {"experiment": experiment, "profile": profile, "labels": dict(labels)}
        if entry not in self.cells():
            self.path.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.cells_file, entry)

    @property
    def lease(self) -> Path:
        return self.path / LEASE_FILE

    @property
    def job(self) -> Path:
        return self.path / "job.json"

    def take_lease(self) -> Lease:
        """This process's exclusive lease on the folder; `core.lease.LeaseHeld` names the holder."""
        return Lease.acquire(self.path)

    def lease_state(self) -> tuple[Any, str] | None:
        """(holder, 'alive' | 'dead' | 'unknown') of the folder's lease, None without one."""
        return lease_state(self.path)

    @property
    def attempts(self) -> Path:
        """Where this run's set-aside attempts go (outside `runs/`, which readers scan)."""
        return self.path.parent.parent.parent / "attempts" / self.path.parent.name / self.path.name

    def set_aside(self, why: str) -> Path | None:
        """Move the attempt's files (all but the lease, the job file and the cell labels, which
        belong to the run, not the attempt) to `attempts`, kept for inspection; the folder starts
        afresh. Call it holding the lease. None if nothing was there."""
        keep = (LEASE_FILE, "job.json", "cells.jsonl")
        files = [p for p in sorted(self.path.iterdir()) if p.name not in keep] if self.path.is_dir() else []
        if not files:
            return None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        target = self.attempts / f"{stamp}-{why}"
        n = 1
        while target.exists():
            n += 1
            target = self.attempts / f"{stamp}-{why}-{n}"
        target.mkdir(parents=True)
        for path in files:
            os.replace(path, target / path.name)
        return target

    def set_aside_leased(self, why: str) -> Path | None:
        """`set_aside` under the run's lease, taken and released here; `LeaseHeld` when another
        live process holds it (nothing is moved)."""
        with self.take_lease():
            return self.set_aside(why)

    def status(self) -> str:
        """'done' | 'failed' (a record says so) | 'partial' (a checkpoint, no record) | 'missing'."""
        record = self.read_record()
        if record is not None:
            return str(record.get("status", "failed"))
        return "partial" if self.checkpoint.exists() else "missing"

    def read_record(self) -> dict[str, Any] | None:
        """The record, or None; one that does not parse reads as a failed attempt (and is retried)."""
        if not self.record.exists():
            return None
        try:
            record = json.loads(self.record.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return {"status": "failed", "error": f"unreadable record.json: {exc}", "metrics": {}}
        return record if isinstance(record, dict) else {"status": "failed", "error": "record.json is not an object",
                                                        "metrics": {}}

    def write_record(self, record: dict[str, Any]) -> None:
        write_json(self.record, record)

    @property
    def output_root(self) -> Path:
        """The results folder this run folder is in now (`<root>/runs/<experiment>/<run_id>`)."""
        return self.path.parent.parent.parent

    def load_config(self) -> RunConfig:
        """The run's config as recorded (record.json, else config.yaml), re-validated, with its
        output root set to where the folder is now: references to other runs resolve beside it,
        wherever the results folder was moved or copied."""
        record = self.read_record()
        if record is not None and isinstance(record.get("config"), dict):
            data = dict(record["config"])
        elif self.config.exists():
            data = yaml.safe_load(self.config.read_text())
        else:
            raise FileNotFoundError(f"{self.path}: no record.json or config.yaml to read the config from")
        data["output_root"] = str(self.output_root)
        return from_dict(data)

    def write_config(self, cfg: RunConfig) -> None:
        write_text(self.config, to_yaml(cfg))

    def read_log(self) -> list[dict[str, Any]]:
        return read_jsonl(self.log)

    def append_log(self, entry: dict[str, Any]) -> None:
        append_jsonl(self.log, entry)

    def truncate_log(self, epochs_done: int) -> None:
        """Drop lines of epochs after `epochs_done` (written after the checkpoint resumed from)."""
        if self.log.exists():
            rewrite_jsonl(self.log, [entry for entry in self.read_log() if entry["epoch"] <= epochs_done])
