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
    from core.resolve import load
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
    from core.resolve import load

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


FAILING_WORKER = textwrap.dedent(
    """
    import os, sys, torch
    torch.set_num_threads(1)
    from core.resolve import load
    from core.dense import DensePruner
    from core.engine import run
    if os.environ["RANK"] == "1":
        original = DensePruner.train_step
        def failing(self, inputs, targets, epoch, step):
            if step == 3:
                raise RuntimeError("rank 1 broke at step 3")
            return original(self, inputs, targets, epoch, step)
        DensePruner.train_step = failing
    run(load(sys.argv[1:]))
    """
)


def test_an_error_on_one_rank_ends_every_rank_at_once_and_the_record_names_it(tmp_path):
    """Two ranks started by hand (no torchrun, whose agent would kill the survivor for us): rank 1
    raises mid-epoch while rank 0 waits in the gradient all-reduce. Both exit within seconds (not
    at a collective timeout), and rank 0's failed record names rank 1's error."""
    import os
    import socket
    import time

    script = tmp_path / "worker.py"
    script.write_text(FAILING_WORKER)
    args = [*TINY, f"output_root={tmp_path / 'results'}", "train.gpus=2", "train.device=cpu"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                   WORLD_SIZE="2")
        procs.append(subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    started = time.monotonic()
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert time.monotonic() - started < 120, "a rank waited for a collective timeout"
    assert all(p.returncode != 0 for p in procs), outs
    from core.resolve import load

    record = RunDir.for_config(load(args)).read_record()
    assert record["status"] == "failed"
    assert record["error"].startswith("rank1: RuntimeError: rank 1 broke at step 3 (rank 0: ")
