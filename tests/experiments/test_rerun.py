"""Which cells `python -m experiments run` trains: never one twice, stale and failed ones on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.lease import LEASE_FILE, Holder
from core.version import code_version, staleness
from experiments.cli import main
from experiments.spec import expand
from tests.slurm.conftest import SHRINK

TWO_CELLS = ("base: {data.name: cifar100, model.name: wrn28_10}\n"
             "bundles: {method: {dense: {prune.method: dense}, rst_s: {prune.method: rst_s, prune.flops_target: 0.5}}}\n"
             "blocks:\n  - product: {method: [dense, rst_s]}\n")


def _grid(tmp_path: Path, body: str, name: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n" + body)
    return str(path)


def _inline(path: str, root: str, *extra: str) -> int:
    return main(["run", path, "--executor", "inline", "--output-root", root, *extra, *SHRINK])


def test_records_carry_the_code_version_and_rerun_stale_reruns_exactly_those(tmp_path, capsys):
    path, root = _grid(tmp_path, TWO_CELLS, "mine"), str(tmp_path / "results")
    assert _inline(path, root) == 0
    dense, rst = expand(path, "smoke", SHRINK, output_root=root).cells
    record = rst.run_dir.read_record()
    assert record["code"] == {"version": code_version(("core", "baselines")), "packages": ["core", "baselines"]}
    assert dense.run_dir.read_record()["code"]["packages"] == ["core"]
    assert staleness(record) == ""

    record["code"]["version"] = "0123456789ab"  # as if a baseline fix landed after this run
    rst.run_dir.write_record(record)
    dense_record = dense.run_dir.record.read_text()
    capsys.readouterr()
    assert main(["status", path, "--output-root", root, *SHRINK]) == 0
    out = capsys.readouterr().out
    assert "stale: code 0123456789ab, this checkout" in out and "1 done, 1 done (stale)" in out
    assert _inline(path, root) == 0  # not rerun unless asked
    assert "1 runs come from another code version: `--rerun stale`" in capsys.readouterr().out

    assert _inline(path, root, "--rerun", "stale") == 0
    out = capsys.readouterr().out
    assert "1 to run" in out and "set aside 1 earlier attempts" in out
    assert staleness(rst.run_dir.read_record()) == ""
    assert dense.run_dir.record.read_text() == dense_record  # the current run untouched
    (aside,) = (Path(root) / "attempts" / "mine" / rst.run_dir.path.name).iterdir()
    assert json.loads((aside / "record.json").read_text())["code"]["version"] == "0123456789ab"
    assert (aside / "log.jsonl").exists() and not (aside / LEASE_FILE).exists()


def test_failed_runs_are_reported_and_rerun_afresh_only_on_request(tmp_path, capsys):
    path, root = _grid(tmp_path, TWO_CELLS, "mine"), str(tmp_path / "results")
    dense, rst = expand(path, "smoke", SHRINK, output_root=root).cells
    rst.run_dir.path.mkdir(parents=True)
    rst.run_dir.write_record({"status": "failed", "error": "RuntimeError: out of memory", "metrics": {}})
    rst.run_dir.checkpoint.write_bytes(b"the failed attempt's checkpoint, never resumed from")
    assert _inline(path, root) == 0
    out = capsys.readouterr().out
    assert "1 to run" in out and "RuntimeError: out of memory" in out and "--rerun failed" in out
    assert rst.run_dir.status() == "failed"
    assert _inline(path, root, "--rerun", "failed") == 0
    assert rst.run_dir.status() == "done"
    (aside,) = (Path(root) / "attempts" / "mine" / rst.run_dir.path.name).iterdir()
    assert aside.name.endswith("-failed") and (aside / "checkpoint.pt").read_bytes().startswith(b"the failed")


def test_a_run_held_by_a_live_process_is_neither_rerun_nor_resubmitted(tmp_path, capsys):
    path, root = _grid(tmp_path, TWO_CELLS, "mine"), str(tmp_path / "results")
    dense, rst = expand(path, "smoke", SHRINK, output_root=root).cells
    rst.run_dir.path.mkdir(parents=True)
    holder = Holder.me()  # this process: alive
    (rst.run_dir.path / LEASE_FILE).write_text(json.dumps(holder.__dict__))
    assert _inline(path, root, "--rerun", "all") == 0
    out = capsys.readouterr().out
    assert f"running: by pid {os.getpid()}" in out and "1 to run" in out
    assert rst.run_dir.status() == "missing" and dense.run_dir.status() == "done"


def test_squeue_failing_means_unknown_and_no_resubmission(tmp_path, monkeypatch, capsys):
    path, root = _grid(tmp_path, TWO_CELLS, "mine"), str(tmp_path / "results")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Socket timed out' >&2\nexit 1\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for cell in expand(path, "smoke", SHRINK, output_root=root).cells:
        cell.run_dir.path.mkdir(parents=True)
        (cell.run_dir.path / "job.json").write_text(json.dumps({"executor": "slurm", "job_id": "77"}))
    assert _inline(path, root) == 0
    out = capsys.readouterr().out
    assert "2 unknown; 0 to run" in out and "squeue gave no answer; not resubmitted" in out


def test_two_overlapping_grids_at_once_train_each_run_once(tmp_path):
    """Two `experiments run` processes whose grids share a cell, started together."""
    root = str(tmp_path / "results")
    one = _grid(tmp_path, TWO_CELLS, "one")
    two = _grid(tmp_path, TWO_CELLS.replace("rst_s: {prune.method: rst_s", "rst_s: {prune.method: rst_s, experiment: one")
                .replace("product: {method: [dense, rst_s]}", "product: {method: [rst_s]}"), "two")
    env = dict(os.environ, S2H_THREADS="1")
    cmd = [sys.executable, "-m", "experiments", "run", "--executor", "inline", "--output-root", root, *SHRINK]
    procs = [subprocess.Popen([*cmd[:4], grid, *cmd[4:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) for grid in (one, two)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    (shared,) = [c for c in expand(two, "smoke", SHRINK, output_root=root).cells]
    assert shared.run_dir.path in [c.run_dir.path for c in expand(one, "smoke", SHRINK, output_root=root).cells]
    trained = sum(out.count(f"{shared.run_dir.path}: done: top1") for out in outs)
    assert trained == 1, outs
    assert [e["epoch"] for e in shared.run_dir.read_log()] == [1]
    assert not (Path(root) / "attempts").exists()
