"""Data-parallel training: two CPU processes over gloo, launched as torchrun launches them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from core.records import RunDir
from tests.conftest import TINY

WORKER = textwrap.dedent(
    """
    import os, sys, torch
    torch.set_num_threads(1)
    from core.config import load
    from core.engine import run
    cfg = load(sys.argv[2:])
    outcome = run(cfg)
    state = {k: v.detach().cpu() for k, v in outcome.network.state_dict().items()}
    torch.save(state, os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
    """
)


def _launch(tmp_path, *overrides: str) -> RunDir:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = [*TINY, f"output_root={tmp_path / 'results'}", "train.gpus=2", "train.device=cpu", *overrides]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(script), str(tmp_path), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from core.config import load

    return RunDir.for_config(load(args))


@pytest.mark.parametrize("method", ["dense", "s2hpruner"])
def test_two_gloo_processes_train_one_run(tmp_path, method):
    extra = ["prune.flops_target=0.35"] if method == "s2hpruner" else []
    run_dir = _launch(tmp_path, f"prune.method={method}", *extra)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # identical weights and BN statistics
    records = list((tmp_path / "results").rglob("record.json"))
    assert records == [run_dir.record]
    record = run_dir.read_record()
    assert record["status"] == "done" and record["config"]["train"]["gpus"] == 2
    log = run_dir.read_log()
    assert [entry["epoch"] for entry in log] == [1, 2]  # one line per epoch, not one per rank


def test_a_multi_gpu_config_refuses_a_single_process(tiny):
    from core.engine import run
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="train.gpus=2 but this run was started as one process"):
        run(tiny("train.gpus=2", "train.device=cpu"), handle_signals=False)
