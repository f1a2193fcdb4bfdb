"""`python -m core run [--config FILE ...] [key=value ...]`: one run, in this process.

Bare (no --config file, no override that changes results) it trains the demo, `core.config.DEMO`.

Prints the run folder. Exit status: 0 when the run is done (or was already), 1 when it
failed (its record says why), 2 on bad input (one line on stderr, nothing started), 3 when
another process holds the run's lease (one line naming it; nothing trained), 128 + signal number when a stop signal interrupted it (checkpoint saved; run it again).
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from pathlib import Path

from core.config import demo_overrides, describe_fields
from core.resolve import load
from core.errors import ConfigError, SuiteError
from core.files import writable_folder


def _options_help() -> str:
    """The typed options of every model, dataset and pruner, for `--help`."""
    from core.data import DATASETS
    from core.models import MODELS
    from core.pruner import PRUNERS

    lines = []
    for key, registry in (("model.options", MODELS), ("data.options", DATASETS), ("prune.options", PRUNERS)):
        for name in registry.names():
            entry = registry.get(name)
            head = f"  {key} for {name}"
            if entry.summary:
                head += f"  ({entry.summary})"
            lines.append(head + ":")
            rows = describe_fields(entry.options) if entry.options else []
            lines += [f"      {k} ({t}) = {d}" for k, t, d, _ in rows] or ["      (none)"]
    return "\n".join(lines)


def _fields_help() -> str:
    rows = describe_fields()
    width = max(len(f"{k} ({t}) = {d}") for k, t, d, _ in rows) + 2
    return "\n".join(f"  {f'{k} ({t}) = {d}':<{width}}{h}" for k, t, d, h in rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Single runs of the S2HPruner suite.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="train one config in this process and print its run folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(
            """\
            Train one configuration in this process: defaults, then --config files, then
            key=value overrides (e.g. model.name=vit train.epochs=10 data.name=cifar100).
            The default network is the paper's (model.width=1.0). With no --config file and
            no override that changes results (paths, devices, workers and progress bars do
            not), the run is the demo: the defaults at model.width=0.25, minutes on a CPU.
            A finished config is not trained again; an interrupted one resumes; a failed
            one is moved aside (results/attempts/) and trained afresh. While a process
            trains a run folder it holds its lease: a second process asking for the same
            config says who holds it and exits with status 3, training nothing."""
        ),
        epilog="config fields (key (type) = default):\n" + _fields_help() + "\n\ntyped options:\n" + _options_help(),
    )
    run.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    run.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML config file (repeatable)")
    run.add_argument("--dry-run", action="store_true", help="print the resolved config and run folder, train nothing")
    run.add_argument("--rerun", action="store_true",
                     help="a finished run (of another code version, say) is set aside (results/attempts/) and trained afresh")
    return parser


def _set_aside_finished(run_dir) -> bool:
    """`--rerun`: move a finished attempt aside under the run's lease; False when another process
    holds it (one line names it)."""
    from core.lease import LeaseHeld

    if run_dir.status() != "done":
        return True
    try:
        moved = run_dir.set_aside_leased("rerun")
    except LeaseHeld as exc:
        print(str(exc), file=sys.stderr)
        return False
    print(f"{run_dir.path}: the finished attempt is set aside in {moved}; training it afresh")
    return True


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load([*demo_overrides(args.overrides, args.config), *args.overrides], args.config)
        from core.data import prepare_dataset
        from core.records import RunDir

        run_dir = RunDir.for_config(cfg)
        if (problem := writable_folder(Path(cfg.output_root))) is not None:
            raise ConfigError(f"output_root={cfg.output_root}: {problem}")
        if args.dry_run:
            from core.config import to_yaml

            print(to_yaml(cfg), end="")
            print(f"# run folder: {run_dir.path}")
            return 0
        prepare_dataset(cfg.data)
        from core.engine import RunInterrupted, run
        from core.env import size_threads

        if args.rerun and not _set_aside_finished(run_dir):
            return 3

        size_threads()  # the CPUs this process may use, not every core of the machine

        print(f"run folder: {run_dir.path}", flush=True)
        try:
            outcome = run(cfg)
        except RunInterrupted as exc:
            print(f"{run_dir.path}: {exc}", file=sys.stderr)
            return 128 + exc.signum
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return {"failed": 1, "held": 3}.get(outcome.status, 0)
