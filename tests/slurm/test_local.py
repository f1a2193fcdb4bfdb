"""The local, inline and debug executors through `python -m experiments`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.env import cpus_available
from experiments.cli import main
from experiments.spec import expand
from tests.slurm.conftest import SHRINK

TWO_CELLS = ("base: {data.name: cifar100, model.name: wrn28_10}\n"
             "bundles: {method: {dense: {prune.method: dense}, rst_s: {prune.method: rst_s, prune.flops_target: 0.5}}}\n"
             "blocks:\n  - product: {method: [dense, rst_s]}\n")
# a soft-only S2HPruner run, and a fine-tuning run that reads it (a source before its reader)
SOFT_THEN_TUNED = (
    "base: {data.name: cifar100, model.name: resnet50, prune.method: s2hpruner, prune.flops_target: 0.4}\n"
    "blocks:\n"
    "  - zip: {prune.options.formulation: [soft_only]}\n"
    "  - set: {prune.options.init_from: {run: {where: {prune.options.formulation: soft_only}}}, train.lr: {times: 0.1}}\n"
    "    zip: {prune.options.formulation: [ours]}\n"
)


def test_local_runs_each_cell_in_a_subprocess_then_skips_them(grid, tmp_path, capsys):
    path = grid(TWO_CELLS)
    root = str(tmp_path / "results")
    assert main(["run", path, "--jobs", "2", "--output-root", root, *SHRINK]) == 0  # both at once
    out = capsys.readouterr().out
    assert "2 to run on local, 2 at once" in out and "2 of 2 runs finished" in out
    cells = expand(path, "smoke", SHRINK, output_root=root).cells
    for cell in cells:
        record = cell.run_dir.read_record()
        assert record["status"] == "done" and record["profile"] == "smoke" and record["experiment"] == "mine"
        assert record["env"]["threads"] == cpus_available(2)  # the CPUs shared between the two
        job = json.loads((cell.run_dir.path / "job.json").read_text())
        # submitit's job (its own interpreter, its own log), claimed by this process, which waited for it
        assert job["executor"] == "local" and job["pid"] == __import__("os").getpid()
        assert not job["job_id"].startswith("queued-in") and Path(job["stdout"]).exists()
    assert main(["run", path, "--output-root", root, *SHRINK]) == 0
    assert "2 done; 0 to run" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "results" / "experiments" / "mine-smoke.json").read_text())
    assert [c["run_dir"] for c in manifest["cells"]] == [str(c.run_dir.path.relative_to(root)) for c in cells]
    assert main(["status", path, "--output-root", root, *SHRINK]) == 0
    assert "2 done" in capsys.readouterr().out

    # inline: the same runs in this process, to the same numbers as in their own interpreters
    other = str(tmp_path / "inline")
    assert main(["run", path, "--executor", "inline", "--output-root", other, *SHRINK]) == 0
    assert "2 to run on inline" in capsys.readouterr().out
    for cell, twin in zip(cells, expand(path, "smoke", SHRINK, output_root=other).cells):
        job = json.loads((twin.run_dir.path / "job.json").read_text())
        assert job["executor"] == "inline" and job["pid"] == __import__("os").getpid()
        ours, theirs = (c.run_dir.read_record()["metrics"] for c in (cell, twin))
        assert ours["top1"] == theirs["top1"] and ours["flops_ratio"] == theirs["flops_ratio"]
        losses = [[json.loads(line)["train_loss"] for line in (c.run_dir.path / "log.jsonl").read_text().splitlines()]
                  for c in (cell, twin)]
        # the same up to the summation order of a different thread count (the tests run on one)
        assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_debug_executor_runs_sources_before_the_runs_that_read_them(grid, tmp_path, capsys):
    path = grid(SOFT_THEN_TUNED)
    root = str(tmp_path / "results")
    assert main(["run", path, "--executor", "debug", "--output-root", root, *SHRINK]) == 0
    soft, tuned = expand(path, "smoke", SHRINK, output_root=root).cells
    assert soft.run_dir.status() == tuned.run_dir.status() == "done"
    assert tuned.cfg.prune.options["init_from"] == f"run:mine/{soft.run_dir.path.name}"
    assert tuned.run_dir.read_record()["started"] >= soft.run_dir.read_record()["finished"]


def test_status_names_failures_and_missing_cells(grid, tmp_path, capsys):
    path = grid(TWO_CELLS)
    root = str(tmp_path / "results")
    dense, rst = expand(path, "smoke", SHRINK, output_root=root).cells
    rst.run_dir.path.mkdir(parents=True)
    rst.run_dir.write_record({"status": "failed", "error": "RuntimeError: out of memory"})
    assert main(["status", path, "--output-root", root, *SHRINK]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "RuntimeError: out of memory" in out and "1 failed, 1 missing" in out


def test_a_bad_cell_stops_the_submission_before_anything_runs(grid, tmp_path, capsys):
    path = grid(TWO_CELLS)
    root = tmp_path / "results"
    assert main(["run", path, "--output-root", str(root), "rst_s:prune.options.selction=rand", *SHRINK]) == 2
    err = capsys.readouterr().err
    assert "mine cell [method=rst_s]" in err and "selction" in err
    assert not (root / "runs").exists()


def test_local_data_parallel_run_on_two_cpu_processes(grid, tmp_path, capsys):
    path = grid("base: {data.name: cifar100, model.name: wrn28_10, prune.method: dense, train.gpus: 2, train.device: cpu}\n")
    root = str(tmp_path / "results")
    assert main(["run", path, "--output-root", root, *SHRINK]) == 0
    (cell,) = expand(path, "smoke", SHRINK, output_root=root).cells
    record = cell.run_dir.read_record()
    assert record["status"] == "done" and record["config"]["train"]["gpus"] == 2
    logs = sorted((tmp_path / "results" / "submitit" / "mine").glob("*_log.err"))
    assert len(logs) == 2  # one per task (rank)


def test_a_missing_dataset_stops_the_submission(tmp_path, capsys):
    root = tmp_path / "results"
    code = main(["run", "table3", "--profile", "paper", "--output-root", str(root), f"data.root={tmp_path / 'nodata'}"])
    assert code == 2
    assert "CIFAR-100 not found at" in capsys.readouterr().err
    assert not (root / "runs").exists()


def test_jobs_train_runs_side_by_side_to_the_numbers_of_one_after_another(grid, tmp_path, capsys, monkeypatch):
    """`--jobs 2`: two spawned workers share the CPUs, a run that reads another starts after it,
    and every run ends where the same queue trained one after another at that thread count does."""
    path = grid(SOFT_THEN_TUNED + "  - set: {prune.method: dense, prune.flops_target: 1.0}\n")
    threads = cpus_available(2)
    side = str(tmp_path / "side")
    assert main(["run", path, "--executor", "inline", "--jobs", "2", "--output-root", side, *SHRINK]) == 0
    out = capsys.readouterr().out
    assert "3 to run on inline, 2 at once" in out and "3 of 3 runs finished" in out
    soft, tuned, dense = expand(path, "smoke", SHRINK, output_root=side).cells
    records = [c.run_dir.read_record() for c in (soft, tuned, dense)]
    assert all(r["status"] == "done" and r["env"]["threads"] == threads for r in records)
    assert records[1]["started"] >= records[0]["finished"]  # the fine-tuning read the finished soft-only run

    monkeypatch.setenv("S2H_THREADS", str(threads))
    turn = str(tmp_path / "turn")
    assert main(["run", path, "--executor", "inline", "--output-root", turn, *SHRINK]) == 0
    for cell, twin in zip((soft, tuned, dense), expand(path, "smoke", SHRINK, output_root=turn).cells):
        ours, theirs = (c.run_dir.read_record() for c in (cell, twin))
        assert theirs["env"]["threads"] == threads
        assert ours["metrics"]["top1"] == theirs["metrics"]["top1"]
        assert ours["metrics"]["train_loss"] == theirs["metrics"]["train_loss"]  # bit for bit


@pytest.mark.parametrize("flags, message", [(["--jobs", "0"], "--jobs must be at least 1"),
                                            (["--jobs", "2", "--executor", "debug"], "needs the local or inline executor")])
def test_an_impossible_jobs_count_is_one_line_before_anything_runs(grid, tmp_path, capsys, flags, message):
    root = tmp_path / "results"
    assert main(["run", grid(TWO_CELLS), *flags, "--output-root", str(root), *SHRINK]) == 2
    assert message in capsys.readouterr().err
    assert not (root / "runs").exists()
