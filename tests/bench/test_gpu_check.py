"""The GPU check (`python -m bench gpu-check`) as far as a CPU can test it: the refusal, the plan,
the JSON's schema, the part runner's limits, and the parts' own code on the CPU (the
data-parallel step in a gloo group of one, the two-stream step with the CPU's stand-in
streams, every method through the engine with its export reloaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from bench import gpu_check
from bench.gpu_check import BUDGET_S, PART_NAMES, PARTS, Part, validate


def test_without_cuda_it_refuses_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a CUDA GPU" in err and "--dry-run" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the check would run")
def test_make_gpu_check_exits_2_on_this_machine():
    done = subprocess.run([sys.executable, "-m", "bench", "gpu-check"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1


def test_the_dry_run_prints_each_part_with_its_time(capsys, tmp_path):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    for part in PARTS:
        assert f"{part.name}" in out and f"~{part.estimate_s:>3} s (limit {part.limit_s} s)" in out
    assert not (tmp_path / "out").exists()  # a plan writes nothing
    assert sum(part.limit_s for part in PARTS) <= BUDGET_S == 480  # the 8 minutes, whatever happens


def test_an_unknown_part_is_one_line(capsys):
    assert gpu_check.main(["--parts", "methods,nccl"]) == 2
    assert "unknown part 'nccl'" in capsys.readouterr().err


def _fake_check(tmp_path, monkeypatch, statuses: dict[str, str]) -> dict:
    """`check` with each part's process replaced by a row of the given status."""
    monkeypatch.setattr(gpu_check, "run_part_process",
                        lambda part, device: {"status": statuses[part.name], "wall_s": 1.5, "passed": statuses[part.name] == "passed"})
    monkeypatch.setattr("core.env.environment", lambda device: {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0"})
    code = gpu_check.check([name for name, status in statuses.items() if status != "skipped"], tmp_path)
    (path,) = tmp_path.glob("*.json")
    assert path.name == "nvidia-h100-80gb-hbm3.json"
    result = json.loads(path.read_text())
    assert code == (0 if result["passed"] else 1)
    return result


def test_the_json_follows_its_schema(tmp_path, monkeypatch):
    result = _fake_check(tmp_path, monkeypatch, {name: "passed" for name in PART_NAMES})
    assert validate(result) == [] and result["passed"] and result["kind"] == "gpu-check"
    assert set(result["parts"]) == set(PART_NAMES)


def test_a_failed_part_fails_the_check_and_skipped_parts_do_not(tmp_path, monkeypatch):
    statuses = dict.fromkeys(PART_NAMES, "skipped") | {"ddp": "passed", "streams": "failed"}
    result = _fake_check(tmp_path / "a", monkeypatch, statuses)
    assert validate(result) == [] and not result["passed"]
    result = _fake_check(tmp_path / "b", monkeypatch, dict.fromkeys(PART_NAMES, "skipped") | {"ddp": "passed"})
    assert validate(result) == [] and result["passed"]


def test_the_schema_catches_what_departs_from_it(tmp_path, monkeypatch):
    good = _fake_check(tmp_path, monkeypatch, {name: "passed" for name in PART_NAMES})
    missing = {key: value for key, value in good.items() if key != "env"}
    assert validate(missing) == ["env: missing"]
    assert validate({**good, "wall_s": "long"}) == ["wall_s: str, not int or float"]
    lying = {**good, "parts": {**good["parts"], "ddp": {"status": "failed", "wall_s": 1.0}}}
    assert validate(lying) == ["passed: disagrees with the parts' statuses"]
    odd = {**good, "parts": {**good["parts"], "ddp": {"status": "maybe"}}}
    assert set(validate(odd)) >= {"parts.ddp.status: 'maybe'", "parts.ddp.wall_s: missing or not int or float"}
    extra = {**good, "parts": {**good["parts"], "nccl": {"status": "passed", "wall_s": 1.0}}}
    assert "parts.nccl: not a part" in validate(extra)


def test_a_part_over_its_limit_is_recorded_as_timed_out():
    row = gpu_check.run_part_process(Part("ddp", "", 1, 1), "cpu")  # the interpreter alone takes longer
    assert row["status"] == "timed out" and "1 s limit" in row["error"] and row["wall_s"] >= 1


def test_the_data_parallel_step_equals_the_plain_one_in_a_gloo_group_of_one():
    environment = dict(os.environ)
    row = gpu_check.part_ddp(torch.device("cpu"), width=0.0625)
    assert dict(os.environ) == environment  # no MASTER_ADDR left for a later data-parallel launch
    assert row["backend"] == "gloo" and row["passed"] and row["tensors"] > 100
    assert row["max_relative_error"] == 0.0  # one rank: the average is the rank's own gradient
    assert not torch.distributed.is_initialized()


def test_the_two_stream_part_compares_gradients_and_times_both():
    row = gpu_check.part_streams(torch.device("cpu"), width=0.0625, steps=1, warmup=0)
    assert row["passed"] and row["max_relative_error"] == 0.0 and row["logits_error"] == 0.0
    assert row["step_s_one_stream"] > 0 and row["step_s_two_stream"] > 0
    assert row["hard_flops_ratio"] == pytest.approx(0.15, abs=0.02)  # measured with its masks at the target


@pytest.mark.slow
def test_every_method_runs_exports_and_reloads_through_the_engine():
    row = gpu_check.part_methods(torch.device("cpu"))
    assert [r["method"] for r in row["rows"]] == [method for method, _ in gpu_check.method_cells()]
    for r in row["rows"]:
        assert r["status"] == "done" and r["reload_error"] <= 1e-5 and r["reload_flops_equal"], r
    assert row["passed"]
