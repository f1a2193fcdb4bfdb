"""Against a real SLURM: job arrays, requeue and resume, no double submission.

`make test-slurm` starts a single-node cluster on this machine (`slurm/cluster/up.sh`) and
runs these; without a responding `sinfo` they are skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from experiments.cli import main
from experiments.spec import expand
from tests.slurm.conftest import SHRINK

pytestmark = pytest.mark.slurm


def _cluster_responds() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0


if not _cluster_responds():
    pytest.skip("no SLURM cluster answers here (`make test-slurm` starts one)", allow_module_level=True)

SLURM = ["--executor", "slurm", "--no-gpus", "--time", "15", "--cpus", "1"]
VOLATILE_METRICS = {"epoch_time_s", "peak_mem_mb_train", "peak_mem_mb_infer"}
VOLATILE_LOG = {"time_s", "eval_time_s"}


def _wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
            pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}; squeue:\n{queue}")
        time.sleep(1)


def _job(cell) -> dict:
    return json.loads((cell.run_dir.path / "job.json").read_text())


def _scontrol(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout


def test_grid_runs_as_one_job_array_and_is_not_submitted_twice(grid, tmp_path, capsys):
    path = grid("base: {data.name: cifar100, model.name: wrn28_10}\n"
                "blocks:\n  - product: {prune.method: [rst_s, otov2], prune.flops_target: [0.3, 0.6]}\n")
    root = str(tmp_path / "results")
    assert main(["run", path, *SLURM, "--output-root", root, *SHRINK]) == 0
    assert "4 runs queued" in capsys.readouterr().out
    cells = expand(path, "smoke", SHRINK, output_root=root).cells
    arrays = {_job(c)["job_id"].split("_")[0] for c in cells}
    assert len(arrays) == 1 and all("_" in _job(c)["job_id"] for c in cells)  # one array, four tasks
    _wait(lambda: all(c.run_dir.record.exists() for c in cells), 300, "the four records")
    assert [c.run_dir.status() for c in cells] == ["done"] * 4
    assert main(["run", path, *SLURM, "--output-root", root, *SHRINK]) == 0
    out = capsys.readouterr().out
    assert "4 done; 0 to run" in out and "queued" not in out.splitlines()[-1]


def _started_beside_a_reference(grid, tmp_path, base: str) -> tuple:
    """One cell queued twice, under a reference root and under the tested root, on a longer
    schedule; returns (reference cell, tested cell, its job id) once the tested run has
    written its first checkpoint and holds its lease, with no record yet."""
    longer = [*SHRINK, "data.options.train_size=256", "train.epochs=6"]
    path = grid(f"base: {{{base}}}\n")
    reference_root, root = str(tmp_path / "reference"), str(tmp_path / "results")
    assert main(["run", path, *SLURM, "--output-root", reference_root, *longer]) == 0
    assert main(["run", path, *SLURM, "--output-root", root, *longer]) == 0
    (reference,) = expand(path, "smoke", longer, output_root=reference_root).cells
    (cell,) = expand(path, "smoke", longer, output_root=root).cells
    _wait(lambda: cell.run_dir.checkpoint.exists() and cell.run_dir.lease.exists(), 240, "the first checkpoint")
    assert not cell.run_dir.record.exists(), "the run finished before it could be interrupted; make it longer"
    return reference, cell, _job(cell)["job_id"]


def test_requeued_job_resumes_from_its_checkpoint_to_the_uninterrupted_record(grid, tmp_path, capsys):
    reference, cell, job_id = _started_beside_a_reference(
        grid, tmp_path, "data.name: cifar100, model.name: resnet50, prune.method: s2hpruner, prune.flops_target: 0.3")
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    _wait(lambda: cell.run_dir.record.exists() and reference.run_dir.record.exists(), 400, "both records")
    job = _job(cell)
    logs = Path(job["stdout"]).read_text() + Path(job["stderr"]).read_text()
    assert "checkpoint saved" in logs and "resuming at epoch" in logs  # stopped, then resumed, in this job

    got, want = cell.run_dir.read_record(), reference.run_dir.read_record()
    assert got["status"] == want["status"] == "done"
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE_METRICS}  # noqa: E731
    assert strip(got["metrics"]) == strip(want["metrics"])
    log = lambda d: [{k: v for k, v in e.items() if k not in VOLATILE_LOG} for e in d.read_log()]  # noqa: E731
    assert log(cell.run_dir) == log(reference.run_dir)
    widths = lambda d: (d.path / "widths.jsonl").read_text()  # noqa: E731
    assert widths(cell.run_dir) == widths(reference.run_dir)


def test_time_limit_signal_checkpoints_requeues_through_submitit_and_resumes(grid, tmp_path, capsys):
    """The time-limit path: SLURM's SIGUSR2 (sent here with `scancel --signal`, as `--signal=USR2@90`
    does ahead of the limit) makes the engine write its checkpoint and hand over to submitit,
    which requeues the job; the requeued job resumes and ends with the uninterrupted record."""
    reference, cell, job_id = _started_beside_a_reference(
        grid, tmp_path, "data.name: cifar100, model.name: wrn28_10, prune.method: rst_s, prune.flops_target: 0.4")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    _wait(lambda: cell.run_dir.record.exists() and reference.run_dir.record.exists(), 400, "both records")
    job = _job(cell)
    logs = Path(job["stdout"]).read_text() + Path(job["stderr"]).read_text()
    assert "Caught signal SIGUSR2" in logs and "Calling checkpoint method" in logs, logs[-2000:]
    assert f"Requeued job {job_id}" in logs and "Restarts=1" in _scontrol(job_id)  # submitit requeued it, once
    assert "resuming at epoch" in logs  # from the checkpoint the engine wrote on the signal
    assert not cell.run_dir.lease.exists()  # released by each incarnation
    got, want = cell.run_dir.read_record(), reference.run_dir.read_record()
    assert got["status"] == want["status"] == "done"
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE_METRICS}  # noqa: E731
    assert strip(got["metrics"]) == strip(want["metrics"])
