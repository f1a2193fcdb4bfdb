"""`python -m experiments list | run | status`: the paper's tables and figures as run grids.

    python -m experiments list
    python -m experiments run table1 [--profile smoke|mini|paper] [--executor local|inline|slurm|debug]
                                     [--jobs N] [--where key=value ...]
                                     [key=value ...] [method:key=value ...] [--sweep key=v1,v2 ...]
                                     [--partition P --account A --qos Q --time MIN --cpus N
                                      --mem-gb G --constraint C --parallelism N --sbatch flag=value]
    python -m experiments status table1 [--profile ...]
    python -m experiments run my_grid.yaml ...          # a grid of one's own, same format
    python -m experiments run table1,table5 ...         # several grids as one queue (shared runs once)

`run` expands the grid, resolves every cell's config once (a typo or an unknown method names the
cell), runs the pre-flight (each network built once, on the meta device, and every cell checked
on it: an unreachable FLOPs target names the cell), and stops there, before anything is
submitted, if a check fails. It skips cells that are done, queued or being trained (a run
folder's lease says by whom; a SLURM job whose state `squeue` cannot tell is left alone), and
failed cells unless `--rerun failed`; submits the rest and prints where each went. `--rerun
stale|failed|all` first moves the earlier attempts aside (kept under `<output-root>/attempts/`).
A cell is stale when its record comes from another code version than this checkout's
(`core.version`); `status` flags those. A run (not `status`, not `--dry-run`, which write
nothing) also writes `<output_root>/experiments/<name>-<profile>.json`, the list of the
experiment's cells and run folders that the analysis reads. `--where
model.name=resnet50` runs only the cells with that label or config value (and the runs they
read; `--where prune.flops_target=0.15,0.55,1.0`: any of these values); the manifest still lists
the whole grid, so the tables show what is missing.

Exit status: 0 when everything submitted (or, for local/inline/debug, everything run) succeeded;
1 when a run failed; 2 on bad input (one line on stderr, nothing submitted).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from core.data import prepare_dataset
from core.errors import ConfigError, SuiteError
from core.files import write_json
from core.lease import LeaseHeld
from core.runstate import run_state
from experiments.spec import GRID_PROFILES, Cell, Expansion, expand, experiment_names, load_experiment, preflight

DEFAULT_OUTPUT = "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every experiment with its run count and cost")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("name", help="an experiment name (table1 ... fig9) or the path of a YAML grid; "
                                      "several, comma-separated, make one queue")
        sub.add_argument("--profile", default="smoke", choices=GRID_PROFILES,
                         help="smoke: synthetic images, minutes; mini: real images (digits), narrow networks, "
                              "a table in well under an hour of CPU; paper: Appendix A")
        sub.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                         help="only the cells with this label or config value, or any of several comma-separated "
                              "ones (repeatable; all must hold)")
        sub.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                         help="add a product axis over these values (repeatable)")
        sub.add_argument("--output-root", default=DEFAULT_OUTPUT, help="where run folders are written")
        sub.add_argument("overrides", nargs="*", metavar="key=value",
                         help="config overrides for every cell; method:key=value for that method's cells only")

    run = commands.add_parser("run", help="run or submit what is missing of an experiment")
    common(run)
    run.add_argument("--executor", default="local", choices=["local", "inline", "slurm", "debug"],
                     help="local: one run after another, each in a fresh interpreter; inline: one after another in "
                          "this process (no interpreter start per run: what make demo uses); slurm: job arrays; "
                          "debug: in this process under submitit's debugger")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="local and inline: N runs at once on this machine, the CPUs shared among them (each run's "
                          "numbers depend on its thread count: $S2H_THREADS, recorded in its record)")
    run.add_argument("--dry-run", action="store_true", help="validate and show what would be submitted; submit nothing")
    run.add_argument("--rerun", choices=sorted(RERUN_STATES), default=None,
                     help="set earlier attempts aside (kept under <output-root>/attempts/) and run them afresh: failed runs "
                          "(by default they are reported, not retried), stale ones (done by another code version), or all")
    slurm = run.add_argument_group("slurm executor (also read from $S2H_SLURM_CONFIG or ./slurm.yaml)")
    slurm.add_argument("--partition")
    slurm.add_argument("--account")
    slurm.add_argument("--qos")
    slurm.add_argument("--time", type=int, dest="time_min", metavar="MINUTES", help="time limit per job (then requeued)")
    slurm.add_argument("--cpus", type=int, dest="cpus_per_task", metavar="N", help="CPUs per task (per GPU)")
    slurm.add_argument("--mem-gb", type=int, dest="mem_gb")
    slurm.add_argument("--constraint")
    slurm.add_argument("--parallelism", type=int, help="most array tasks running at once")
    slurm.add_argument("--no-gpus", action="store_const", const=False, dest="gpus", help="ask SLURM for no GPUs")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="FLAG=VALUE", help="any other sbatch flag")
    slurm.add_argument("--slurm-config", metavar="FILE", help="SLURM settings file (YAML)")
    status = commands.add_parser("status", help="done / running / failed / missing per cell")
    common(status)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)  # overrides may come after options too
    unknown = [item for item in rest if item.startswith("-") or "=" not in item or args.command == "list"]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    try:
        if args.command == "list":
            return _list()
        expansions = []
        for name in [n for n in args.name.split(",") if n]:
            expansions.append(expand(name, args.profile, args.overrides, args.sweep, args.output_root))
        where = _where(args.where)
        if args.command == "status":
            return max(_status(expansion, where) for expansion in expansions)
        return _run(expansions, where, args)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# ----------------------------------------------------------------------------- list


def _list() -> int:
    rows = []
    for name in experiment_names():
        exp = load_experiment(name)
        cells = expand(name, "paper", validate=False).cells
        own = sum(not c.reused for c in cells)
        dense = sum(c.layers.get("prune.method") == "dense" for c in cells)
        notes = [f"{dense} dense"] if dense else []
        notes += [f"{own} new, {len(cells) - own} reused"] if own != len(cells) else []
        runs = f"{len(cells)}" + (f" ({'; '.join(notes)})" if notes else "")
        hours = exp.gpu_hours.get("paper")
        rows.append((name, runs, "-" if hours is None else f"~{hours:g}", f"make {name}", exp.title))
    heads = ("experiment", "runs", "GPU-h (paper)", "target", "reproduces")
    widths = [max(len(str(r[i])) for r in [heads, *rows]) for i in range(4)]
    for row in [heads, *rows]:
        print("  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths)) + "  " + row[4])
    print("\nGPU-hours are A100 estimates at the paper profile; on 2 CPU cores the smoke profile runs a table in minutes, "
          "the mini profile (real images) in well under an hour.")
    return 0


# ----------------------------------------------------------------------------- status


def _where(items: list[str]) -> dict[str, set[str]]:
    """`--where key=v1[,v2...]` items as {key: the values it accepts}; a malformed one is a ConfigError."""
    pairs: dict[str, set[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"--where {item!r} is not of the form key=value")
        pairs[key] = set(value.split(","))
    return pairs


def _matches(cell: Cell, where: dict[str, set[str]]) -> bool:
    """Whether, for every `where` key, the cell's label or config value (as text) is one it accepts."""
    def value(key: str) -> Any:
        if key in cell.labels:
            return cell.labels[key]
        node: Any = cell.cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        return node

    return all(str(value(key)) in wanted for key, wanted in where.items())


def selected(expansion: Expansion, where: dict[str, set[str]]) -> list[Cell]:
    """The expansion's cells `where` picks, with the runs they read (all of them when `where` is empty)."""
    if not where:
        return expansion.all_cells
    chosen: dict[Path, Cell] = {}

    def add(cell: Cell) -> None:
        for source in cell.needs:
            add(source)
        chosen.setdefault(cell.run_dir.path, cell)

    for cell in expansion.cells:
        if _matches(cell, where):
            add(cell)
    return list(chosen.values())


def _status(expansion: Expansion, where: dict[str, set[str]]) -> int:
    counts: Counter[str] = Counter()
    print(f"{expansion.experiment.name} ({expansion.profile} profile): {expansion.experiment.title}")
    for cell in selected(expansion, where):
        state = run_state(cell.run_dir)
        counts[state.state + (" (stale)" if state.state == "done" and state.reason else "")] += 1
        home = f" [{cell.experiment}'s run]" if cell.experiment != expansion.experiment.name else ""
        reason = f": {state.reason}" if state.reason else ""
        print(f"  {state.state:<11} {cell.describe()}{home}  {cell.run_dir.path}{reason}")
    print("  " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0


# ----------------------------------------------------------------------------- run


def _run(expansions: list[Expansion], where: dict[str, set[str]], args: argparse.Namespace) -> int:
    from slurm.dispatch import check_jobs, submit
    from slurm.settings import describe, load_settings

    check_jobs(args.jobs, args.executor)
    preflight(expansions)  # every network built once and every cell checked on it, before anything is queued
    settings = None
    if args.executor == "slurm":
        keys = ("partition", "account", "qos", "time_min", "cpus_per_task", "mem_gb", "constraint", "parallelism", "gpus")
        settings = load_settings({k: getattr(args, k) for k in keys}, args.sbatch, args.slurm_config)
    name = ",".join(expansion.experiment.name for expansion in expansions)
    profile = expansions[0].profile
    todo, alive, skipped, queued, set_aside, seen = [], {}, Counter(), set(), [], set()
    cells = [cell for expansion in expansions for cell in selected(expansion, where)]
    if where and not cells:
        shown = " ".join(f"{k}={','.join(sorted(v))}" for k, v in where.items())
        raise ConfigError(f"--where {shown} matches no cell of {name}")
    for cell in cells:
        if cell.run_dir.path in seen:  # a run two cells (or two grids) share is looked at once
            continue
        seen.add(cell.run_dir.path)
        state = run_state(cell.run_dir)
        if _rerun(state, args.rerun) and not args.dry_run:
            free, moved = _set_aside(cell, state)
            if not free:
                skipped["running"] += 1
                continue
            if moved is not None:
                set_aside.append(moved)
            state = run_state(cell.run_dir)
        if state.state == "done":
            skipped["done (stale)" if state.reason else "done"] += 1
        elif state.state in ("running", "queued", "unknown"):
            skipped[state.state] += 1
            if state.job.get("executor") == "slurm":
                alive[str(cell.run_dir.path)] = str(state.job.get("job_id"))
            print(f"{cell.experiment} {cell.describe()}: {state.state}: {state.reason}")
        elif state.state == "failed" and args.rerun is None:
            skipped["failed"] += 1
            print(f"{cell.experiment} {cell.describe()}: failed: {state.reason[:160]} ({cell.run_dir.path})")
        else:
            queued.add(cell.run_dir.path)
            todo.append(cell)
        if args.rerun is not None and _rerun(state, args.rerun) and args.dry_run:
            print(f"  would set aside {cell.experiment} {cell.describe()} ({state.state}{', ' + state.reason if state.reason else ''})")
    if set_aside:
        print(f"set aside {len(set_aside)} earlier attempts (kept under {Path(args.output_root) / 'attempts'})")
    make = name in experiment_names()  # the paper's grids have make targets, one's own do not (nor lists)
    if skipped["failed"]:
        print(f"{skipped['failed']} failed runs are not retried: `--rerun failed`"
              + (f" (make {name} RERUN=failed)" if make else "") + " runs them afresh")
    if skipped["done (stale)"]:
        print(f"{skipped['done (stale)']} runs come from another code version: `--rerun stale`"
              + (f" (make {name} RERUN=stale)" if make else "") + " reruns them")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(skipped.items())) or "none done yet"
    print(f"{name} ({profile} profile): {len(seen)} cells; {summary}; {len(todo)} to run"
          + (f" on {args.executor}" + (f", {args.jobs} at once" if args.jobs > 1 else "") if todo else ""))
    if settings is not None and todo:
        print(f"slurm settings: {describe(settings)}")
    _check_datasets(todo)
    if not args.dry_run:  # a command that only reads (status, --dry-run) writes nothing
        for expansion in expansions:
            _write_manifest(expansion, args.output_root)
            _label_runs(expansion, seen)
    if not todo or args.dry_run:
        for cell in todo:
            print(f"  would run {cell.experiment} {cell.describe()} -> {cell.run_dir.path}")
        return 0
    folder = Path(args.output_root) / "submitit" / name
    submitted = submit(todo, args.executor, folder, settings, alive, jobs=args.jobs)
    failed = [s for s in submitted if s.outcome in ("failed", "skipped")]
    held = [s for s in submitted if s.outcome == "held"]
    if held:
        print(f"{len(held)} runs were being trained by other processes and were left to them")
    if args.executor == "slurm":
        print(f"{len(submitted)} runs queued; `python -m experiments status {args.name} --profile {profile}` follows them; "
              f"submitit logs under {folder}")
    else:
        print(f"{len(submitted) - len(failed)} of {len(submitted)} runs finished" + (f", {len(failed)} failed" if failed else ""))
    return 1 if failed else 0


RERUN_STATES = {"failed": {"failed"}, "stale": {"done"}, "all": {"done", "failed", "interrupted", "missing"}}


def _rerun(state: Any, which: str | None) -> bool:
    """Whether `--rerun which` sets this cell's attempt aside (stale: done runs of another code version)."""
    if which is None or state.state not in RERUN_STATES[which]:
        return False
    return which != "stale" or bool(state.reason)


def _set_aside(cell: Any, state: Any) -> tuple[bool, Path | None]:
    """Move the cell's attempt aside under its lease: (False, None) when another process holds
    it, else (True, where it went or None when there was nothing to move)."""
    try:
        moved = cell.run_dir.set_aside_leased(state.state if state.state != "done" else "rerun")
    except LeaseHeld as exc:
        print(f"{cell.experiment} {cell.describe()}: not set aside: {exc}")
        return False, None
    if moved is not None:
        print(f"{cell.experiment} {cell.describe()}: {state.state} attempt set aside in {moved}")
    return True, moved


def _label_runs(expansion: Expansion, chosen: set[Path]) -> None:
    """Tell each run of the chosen cells (`--where`'s, with the runs they read) which cell of this
    grid it fills (its labels), for the analysis: a reused run (Table 5's row 2 is Table 1's run)
    gets a line per grid that has it. Cells left out get no folder."""
    for cell in expansion.cells:
        if cell.run_dir.path in chosen:
            cell.run_dir.add_cell(expansion.experiment.name, expansion.profile, cell.labels)


def _check_datasets(cells: list[Any]) -> None:
    """A missing dataset stops the submission (one line naming the path) before anything runs."""
    seen = set()
    for cell in cells:
        key = (cell.cfg.data.name, cell.cfg.data.root, cell.cfg.data.download)
        if key not in seen:
            seen.add(key)
            prepare_dataset(cell.cfg.data)


def _write_manifest(expansion: Expansion, output_root: str) -> None:
    """The experiment's cells and their run folders, for the analysis (which never expands grids)."""
    root = Path(output_root)
    cells: list[dict[str, Any]] = []
    for cell in expansion.all_cells:
        cells.append({
            "labels": cell.labels,
            "experiment": cell.experiment,
            "own": not cell.reused,
            "run_id": cell.run_dir.path.name,
            "run_dir": str(cell.run_dir.path.relative_to(root)) if cell.run_dir.path.is_relative_to(root) else str(cell.run_dir.path),
        })
    write_json(root / "experiments" / f"{expansion.experiment.name}-{expansion.profile}.json", {
        "experiment": expansion.experiment.name,
        "title": expansion.experiment.title,
        "profile": expansion.profile,
        "cells": cells,
    })
