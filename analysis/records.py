"""Run records as the analysis sees them: plain JSON read from `results/runs/*/*/`.

`analysis/` never imports training code (analysis/README.md): everything here reads
(with `core.files`, the standard-library module the engine writes them with) the files the engine wrote (`record.json`, `log.jsonl`, `widths.jsonl`, `architecture.json`)
with the standard library, so a table renders in milliseconds on a laptop that has no torch.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from core.files import read_jsonl, unique  # standard library only, like everything here

PROFILES = ("paper", "mini", "smoke")

@dataclass(frozen=True)
class Run:
    """One finished run: its `record.json` and the folder it was read from (None if made in memory)."""

    record: dict[str, Any]
    path: Path | None = None

    @property
    def run_id(self) -> str:
        return str(self.record.get("run_id", ""))

    @property
    def experiment(self) -> str:
        return str(self.record.get("experiment", ""))

    @property
    def profile(self) -> str:
        return str(self.record.get("profile", ""))

    @property
    def status(self) -> str:
        return str(self.record.get("status", "failed"))

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def method(self) -> str:
        return str(self.record.get("method", ""))

    @property
    def model(self) -> str:
        return str(self.record.get("model", ""))

    @property
    def seed(self) -> int:
        return int(self.record.get("seed", 0))

    @property
    def flops_target(self) -> float | None:
        value = self.record.get("flops_target")
        return None if value is None else float(value)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.get("metrics") or {}

    @property
    def error(self) -> str:
        return str(self.record.get("error", ""))

    def metric(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return None if value is None else float(value)

    def option(self, dotted: str, default: Any = None) -> Any:
        """A config value by its dotted key, e.g. `prune.options.formulation`."""
        node: Any = self.record.get("config") or {}
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def compute(self) -> str:
        """What the run's numbers depend on besides its code and config: the torch version, the
        device and, on a CPU, the thread count and the instruction set of torch's kernels
        (`env.threads`, `env.cpu_kernels`: a short CPU run's top-1 moves by tens of points with
        them, analysis/README.md, "The paper's claims"). Records from before those fields lack them."""
        env = self.record.get("env") or {}
        text = f"torch {env.get('torch', '?')}, cuda {env.get('cuda') or 'none'}, {env.get('device', '?')}"
        if not env.get("cuda"):
            text += f", threads {env['threads']}" if env.get("threads") else ""
            text += f", {env['cpu_kernels']} kernels" if env.get("cpu_kernels") else ""
        return text

    def replica_key(self) -> str:
        """Equal keys mean seeds of one setting: the engine's `setting_id` (the run id less the
        seed, by core's own flags of which fields change results); a record from before it
        existed falls back to its whole config less the seed (such records are stale anyway)."""
        if self.record.get("setting_id"):
            return str(self.record["setting_id"])
        config = dict(self.record.get("config") or {})
        config.pop("seed", None)
        return json.dumps(config, sort_keys=True)

    def cells(self) -> list[dict[str, Any]]:
        """The table cells the run fills, {"experiment", "profile", "labels"}: the lines grids
        wrote beside it (`cells.jsonl`, the one source), and the copy a record written before that
        rule carries under `cells` (records made in memory carry theirs there too)."""
        return unique(list(self.record.get("cells") or []) + self._jsonl("cells.jsonl"))

    # ------------------------------------------------------------------ files beside the record

    def _jsonl(self, name: str) -> list[dict[str, Any]]:
        """A line log beside the record (an unterminated last line, a cut write, is dropped)."""
        if self.path is None:
            return []
        try:
            return read_jsonl(self.path / name)
        except ValueError as exc:  # a damaged line inside: shown as a warning, the run without its log
            warnings.warn(str(exc), stacklevel=2)
            return []

    def log(self) -> list[dict[str, Any]]:
        """`log.jsonl`: one entry per epoch."""
        return self._jsonl("log.jsonl")

    def widths(self) -> list[dict[str, Any]]:
        """`widths.jsonl` (S2HPruner): kept units per group every `widths_every` steps."""
        return self._jsonl("widths.jsonl")

    def architecture(self) -> dict[str, Any] | None:
        """`architecture.json` (S2HPruner): per group its name, kind, size and kept units."""
        if self.path is None or not (self.path / "architecture.json").exists():
            return None
        return json.loads((self.path / "architecture.json").read_text())


@dataclass
class RunSet:
    """The records under one results folder, with the folders that hold no record yet."""

    runs: list[Run] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # record.json that does not parse: (folder, why)
    bench: list[dict[str, Any]] = field(default_factory=list)  # results/bench/*.json of `python -m bench`
    manifests: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)  # (experiment, profile) -> cells
    # `analysis.frame`'s DataFrame of these runs (and the ids of the runs it was built from): built
    # once, however many tables and claims read it, and again only when `runs` changes
    frame_cache: Any = field(default=None, init=False, repr=False, compare=False)

    def manifest_labels(self, experiment: str, profile: str) -> list[dict[str, str]]:
        """The labels of every cell of a grid as `python -m experiments` last expanded it (run or not)."""
        return [dict(cell.get("labels") or {}) for cell in self.manifests.get((experiment, profile), [])]

    def training_bench(self) -> dict[str, Any] | None:
        """The benchmark Table 10 reads: the newest on a GPU if there is one, else the newest."""
        candidates = [b for b in self.bench if b.get("training")]
        if not candidates:
            return None
        return max(candidates, key=lambda b: (b.get("device_type") == "cuda", str(b.get("date", ""))))

    def of(self, profile: str) -> list[Run]:
        return [run for run in self.runs if run.profile == profile]

    def profiles(self) -> list[str]:
        return sorted({run.profile for run in self.runs})


def majority(counts: dict[str, int]) -> str:
    """The profile with the most runs in `counts`; `paper` on a tie or when there are none."""
    counts = {p: counts.get(p, 0) for p in PROFILES}
    best = max(counts.values())
    return "paper" if counts["paper"] == best else next(p for p in PROFILES if counts[p] == best)


def majority_profile(runs: RunSet, experiments: Iterable[str]) -> str:
    """The profile most runs of these experiments have; `paper` on a tie or when there are none."""
    wanted = set(experiments)
    return majority({p: sum(1 for r in runs.runs if r.profile == p and r.experiment in wanted) for p in PROFILES})


def load_runs(results: str | Path = "results") -> RunSet:
    """Every `record.json` under `<results>/runs/<experiment>/<run_id>/` (none is fine)."""
    found = RunSet()
    for path in sorted((Path(results) / "bench").glob("*.json")):
        found.bench.append(json.loads(path.read_text()))
    for path in sorted((Path(results) / "experiments").glob("*.json")):
        try:
            manifest = json.loads(path.read_text())
            found.manifests[(str(manifest["experiment"]), str(manifest["profile"]))] = list(manifest.get("cells", []))
        except (ValueError, KeyError, TypeError):
            warnings.warn(f"{path}: not a grid manifest; ignored", stacklevel=2)
    runs_root = Path(results) / "runs"
    if not runs_root.is_dir():
        return found
    for folder in sorted(runs_root.glob("*/*")):
        if not folder.is_dir():
            continue
        record_path = folder / "record.json"
        if record_path.exists():
            try:
                record = json.loads(record_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                found.unreadable.append((folder, f"{type(exc).__name__}: {exc}"))
                continue
            if isinstance(record, dict):
                found.runs.append(Run(record, folder))
            else:
                found.unreadable.append((folder, "record.json is not a JSON object"))
        else:
            found.unfinished.append(folder)
    return found


def in_memory(records: Iterable[dict[str, Any]]) -> RunSet:
    """Records built by hand (tests, benchmarks) as a RunSet without folders."""
    return RunSet([Run(record) for record in records])
