from __future__ import annotations

import pytest
import torch

from analysis.records import load_runs
from core.checkpoint import rng_state, save_torch, set_rng_state
from core.engine import run
from core.files import write_json
from core.resolve import from_dict
from core.records import RunDir, run_id


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [1.5]})
    save_torch({"w": torch.ones(2)}, tmp_path / "b.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.pt"]
    assert (tmp_path / "a.json").read_text().startswith('{\n  "x": null')


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "c.pt"
    save_torch({"v": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_torch({"v": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(1)
    save_torch(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_status_listing_and_loading_records(tiny):
    done = run(tiny("train.epochs=1")).run_dir
    failed = run(tiny("train.epochs=1", "train.lr=1e30")).run_dir
    partial = RunDir(done.path.parent / "abcdef012345")
    partial.path.mkdir()
    save_torch({}, partial.checkpoint)
    assert (done.status(), failed.status(), partial.status()) == ("done", "failed", "partial")
    assert RunDir(done.path.parent / "nothing").status() == "missing"
    root = done.path.parents[2]
    runs = load_runs(root).runs  # the one loader of records (analysis.records): the partial run has none
    assert sorted(run.status for run in runs) == ["done", "failed"] and {run.experiment for run in runs} == {"custom"}


def test_truncate_log_drops_epochs_after_the_checkpoint(tmp_path):
    d = RunDir(tmp_path)
    for epoch in (1, 2, 3):
        d.append_log({"epoch": epoch})
    d.truncate_log(2)
    assert d.read_log() == [{"epoch": 1}, {"epoch": 2}]


def test_a_moved_run_that_references_another_reads_its_config_beside_it(tiny, tmp_path):
    """References are by experiment and run id: a results folder moved elsewhere still
    validates (the source is looked for beside the run, not at the old path)."""
    import shutil

    from core.records import resolve_run, run_ref

    source = run(tiny("prune.method=s2hpruner", "prune.flops_target=0.5", "train.epochs=1", "experiment=src"))
    ref = run_ref(from_dict(source.record["config"]))
    assert ref == f"run:src/{source.run_dir.path.name}"
    tuned_cfg = tiny("prune.method=s2hpruner", "prune.flops_target=0.5", "train.epochs=1",
                     f"prune.options.init_from={ref}", "train.lr=0.002")
    tuned = run(tuned_cfg)
    assert tuned.status == "done"
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(tuned_cfg.output_root, moved)
    shutil.rmtree(tuned_cfg.output_root)  # the old location is gone
    copy = RunDir(moved / "runs" / "custom" / tuned.run_dir.path.name)
    cfg = copy.load_config()
    assert cfg.output_root == str(moved) and run_id(cfg) == copy.path.name
    assert resolve_run(cfg.prune.options["init_from"], cfg.output_root) == moved / "runs" / "src" / source.run_dir.path.name
