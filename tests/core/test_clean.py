"""`make clean` removes what the demo and the smoke profile wrote, and keeps every other run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def _run_folder(results: Path, experiment: str, name: str, profile: str | None, record: bool = True) -> Path:
    folder = results / "runs" / experiment / name
    folder.mkdir(parents=True)
    if profile is not None and record:
        (folder / "record.json").write_text(json.dumps({"status": "done", "profile": profile}))
    elif profile is not None:  # interrupted: a config, no record yet
        (folder / "config.yaml").write_text(f"experiment: {experiment}\nprofile: {profile}\nseed: 0\n")
    else:  # queued: only the job file
        (folder / "job.json").write_text("{}")
    return folder


def test_clean_keeps_paper_and_custom_runs_and_removes_the_smoke_ones(tmp_path):
    results = tmp_path / "results"
    smoke = _run_folder(results, "table1", "smoke_done", "smoke")
    demo = _run_folder(results, "demo", "interrupted", "smoke", record=False)
    queued = _run_folder(results, "table1", "queued", None)
    paper = _run_folder(results, "table1", "paper_done", "paper")
    custom = _run_folder(results, "demo", "mine", "custom")  # a user's own run, even under runs/demo
    custom_interrupted = _run_folder(results, "custom", "long", "custom", record=False)
    # attempts set aside by reruns: the smoke one goes, the paper one stays
    smoke_attempt = results / "attempts" / "table1" / "smoke_done" / "20261201T000000-failed"
    paper_attempt = results / "attempts" / "table1" / "paper_done" / "20261201T000000-rerun"
    for attempt, profile in ((smoke_attempt, "smoke"), (paper_attempt, "paper")):
        attempt.mkdir(parents=True)
        (attempt / "record.json").write_text(json.dumps({"status": "failed", "profile": profile}))
    views = [results / "figures" / "fig3-smoke.png", results / "tables" / "table1-smoke.md", results / "claims-smoke.md",
             results / "report.md", results / "report.html"]
    kept_views = [results / "figures" / "fig3-mini.png", results / "tables" / "table1-paper.md", results / "claims-mini.md"]
    for view in views + kept_views:
        view.parent.mkdir(parents=True, exist_ok=True)
        view.write_text("rendered")
    manifests = results / "experiments"
    manifests.mkdir()
    for profile, folders in (("smoke", [smoke, queued]), ("paper", [paper])):
        cells = [{"run_dir": str(f.relative_to(results))} for f in folders]
        (manifests / f"table1-{profile}.json").write_text(json.dumps({"cells": cells}))

    listed = subprocess.run([sys.executable, "-m", "core.clean", str(results), "--dry-run"], cwd=PROJECT,
                            capture_output=True, text=True, check=True).stdout
    assert smoke.exists() and f"would remove {queued}" in listed  # a dry run removes nothing
    out = subprocess.run([sys.executable, "-m", "core.clean", str(results)], cwd=PROJECT, capture_output=True,
                         text=True, check=True).stdout
    for gone in (smoke, demo, queued, manifests / "table1-smoke.json", smoke_attempt, *views):
        assert not gone.exists() and f"removing {gone}" in out
    assert all(f.exists() for f in (paper, custom, custom_interrupted, manifests / "table1-paper.json", paper_attempt,
                                    *kept_views))
    assert "kept run folders: 2 custom, 1 paper" in out


def test_make_clean_runs_the_cleaner_before_removing_the_venv():
    commands = subprocess.run(["make", "--no-print-directory", "-n", "clean"], cwd=PROJECT, capture_output=True,
                              text=True, check=True).stdout
    lines = [line for line in commands.splitlines() if not line.startswith("make")]  # under `make test`, make[1]: ...
    assert lines[0] == "python3 -m core.clean results" and lines[1].startswith("rm -rf .venv")
