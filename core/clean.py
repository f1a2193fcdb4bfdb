"""`make clean`: remove what the demo and the smoke profile wrote, and nothing a user made.

A run folder is disposable when its record or its config says `profile: smoke` (the bare
`python -m core run` demo and every smoke-profile grid), or when a smoke-profile manifest
(`results/experiments/<name>-smoke.json`, written by `python -m experiments`) lists it (a
cell queued but not started has neither yet). Paper-profile and custom runs stay, whatever
their experiment. Attempts that reruns set aside (`results/attempts/`) go by the same rule. So
do the views rendered from smoke runs (`tables/*-smoke.*`, `figures/*-smoke.*`,
`claims-smoke.md`), and the report (`report.md`, `report.html`) once any run it may show is
removed: `make report` renders it again from the runs that are left. Standard library only:
`make clean` also removes the venv.

    python -m core.clean [RESULTS] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections import Counter
from pathlib import Path

DISPOSABLE_PROFILES = ("smoke",)


def profile_of(folder: Path) -> str | None:
    """The profile label of a run folder, from its record, else its config; None if neither says."""
    try:
        record = json.loads((folder / "record.json").read_text())
        if isinstance(record, dict) and record.get("profile"):
            return str(record["profile"])
    except (OSError, ValueError):
        pass
    try:
        found = re.search(r"^profile: *(\S+) *$", (folder / "config.yaml").read_text(), re.MULTILINE)
    except OSError:
        return None
    return found.group(1).strip("'\"") if found else None


def disposable_manifests(results: Path) -> list[Path]:
    return sorted(p for profile in DISPOSABLE_PROFILES for p in (results / "experiments").glob(f"*-{profile}.json"))


def disposable_views(results: Path, runs_removed: bool) -> list[Path]:
    """Tables, figures and claims rendered from the smoke profile; the report when runs go."""
    views = [p for profile in DISPOSABLE_PROFILES
             for p in [*results.glob(f"tables/*-{profile}.*"), *results.glob(f"figures/*-{profile}.*"),
                       *results.glob(f"claims-{profile}.md")]]
    if runs_removed:
        views += [p for p in (results / "report.md", results / "report.html") if p.exists()]
    return sorted(views)


def disposable_runs(results: Path) -> list[Path]:
    """Run folders the demo and the smoke profile wrote (see the module docstring)."""
    folders = {f for f in (results / "runs").glob("*/*") if f.is_dir() and profile_of(f) in DISPOSABLE_PROFILES}
    # attempts set aside by reruns (`attempts/<experiment>/<run_id>/<time>-<why>/`), by the same rule
    folders |= {f for f in (results / "attempts").glob("*/*/*") if f.is_dir() and profile_of(f) in DISPOSABLE_PROFILES}
    for manifest in disposable_manifests(results):
        try:
            cells = json.loads(manifest.read_text()).get("cells", [])
        except (OSError, ValueError):
            continue
        for cell in cells:
            folder = Path(cell.get("run_dir", ""))
            folder = folder if folder.is_absolute() else results / folder
            if folder.is_dir() and profile_of(folder) in (None, *DISPOSABLE_PROFILES):
                folders.add(folder)
    return sorted(folders)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.clean", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default="results", help="the results folder (default: results)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    args = parser.parse_args(argv)
    results = Path(args.results)
    runs = disposable_runs(results)
    doomed = runs + disposable_manifests(results) + disposable_views(results, bool(runs))
    verb = "would remove" if args.dry_run else "removing"
    for path in doomed:
        print(f"{verb} {path}")
        if not args.dry_run:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not args.dry_run:
        for empty in [*(results / "attempts").glob("*/*"), *(results / "attempts").glob("*"), *(results / "runs").glob("*")]:
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
    kept = Counter(profile_of(f) or "unknown" for f in (results / "runs").glob("*/*") if f.is_dir() and f not in doomed)
    summary = ", ".join(f"{n} {profile}" for profile, n in sorted(kept.items())) or "none"
    print(f"kept run folders: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
