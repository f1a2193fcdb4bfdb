"""The benchmark's pieces: slimmed networks at their FLOPs, a measured step, exported runs, the JSON's name."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from tqdm import tqdm

from bench.cli import device_slug, exported_runs, measure_exports, pool_dense, training_plan
from bench.inference import inference_memory_mb, measure_network, networks
from bench.training import measure_training
from core.export import load_pruned
from core.measure import count_flops, tensor_mb


def test_uniformly_slimmed_networks_keep_their_flops():
    nets = networks((0.15, 0.55), width=0.25)  # narrow, for speed: the same code as width 1
    dense = count_flops(nets["dense"], 32)
    for name, target in (("uniform_15", 0.15), ("uniform_55", 0.55)):
        net = nets[name]
        assert count_flops(net, 32) / dense == pytest.approx(target, abs=0.01)  # FlopCounterMode, independent
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
        assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in nets["dense"].parameters())


@pytest.mark.parametrize("method", ["dense", "s2hpruner"])
def test_a_measured_training_step(method):
    row = measure_training(method, device_name="cpu", warmup=1, steps=1, width=0.25)
    assert row["method"] == method and row["batch"] == 64 and row["memory_kind"] == "cpu_peak_rss"
    assert row["timer"] == "wall_clock"  # CUDA events on a GPU (bench.training.timed)
    assert 0 < row["step_s_median"] == row["step_s_min"] and row["epoch_s"] == pytest.approx(782 * row["step_s_median"])
    assert row["step_s"] == [row["step_s_median"]]
    assert row["peak_mem_mb_train"] > 0
    if method == "s2hpruner":  # where its step's time goes, the phases of Algorithm 1 within the step
        assert set(row["phase_s_mean"]) >= {"soft_forward", "hard_forward", "backward_soft_loss", "backward_gap_hard",
                                            "backward_gap_soft"}
        assert 0 < sum(row["phase_s_mean"].values()) < row["step_s_median"]
        phases = row["phase_s_mean"]  # the whole step over the soft forward and L's backward, the same steps
        soft = phases["soft_forward"] + phases["backward_soft_loss"]
        assert row["step_over_soft_pass"] == pytest.approx(sum(phases.values()) / soft) and row["step_over_soft_pass"] > 1
    else:
        assert "phase_s_mean" not in row


def test_s2hpruner_measured_with_its_masks_at_the_target():
    row = measure_training("s2hpruner", target=0.15, device_name="cpu", warmup=1, steps=1, width=0.25, masks="target")
    assert row["masks"] == "target" and row["hard_pass"] == "sliced"
    # the hard network's FLOPs meet the target when timing starts and stay there
    assert row["hard_flops_ratio_start"] == pytest.approx(0.15, abs=0.02)
    assert row["hard_flops_ratio"] == pytest.approx(row["hard_flops_ratio_start"], abs=0.01)
    with pytest.raises(ValueError, match="masks must be one of init, target"):
        measure_training("s2hpruner", device_name="cpu", masks="converged")


def test_a_phased_baseline_is_timed_in_every_phase_and_weighted_by_their_steps():
    row = measure_training("rst_s", device_name="cpu", warmup=0, steps=1, width=0.25)
    phases = row["phases"]
    assert [p["phase"] for p in phases] == ["transform", "train"]
    assert sum(p["steps"] for p in phases) == 500 * 782  # the paper profile's run
    weighted = sum(p["steps"] * p["step_s_median"] for p in phases) / (500 * 782)
    assert row["step_s_median"] == pytest.approx(weighted) and row["epoch_s"] == pytest.approx(782 * weighted)
    assert [p["timed_as"] for p in phases] == ["transform", "train"] and all(p["step_s_median"] > 0 for p in phases)


def test_dense_is_measured_first_and_last_and_its_steps_are_pooled():
    plan = training_plan(["dense", "rst_s", "s2hpruner"])
    assert plan[0] == plan[-1] == ("dense", None, None) and len(plan) == 6
    assert ("s2hpruner", "target", "low") in plan
    assert training_plan(["dense"]) == [("dense", None, None)] and training_plan(["rst_s"]) == [("rst_s", None, None)]

    def dense(steps, peak):
        return {"method": "dense", "measured_steps": len(steps), "step_s": steps, "step_s_median": sorted(steps)[1],
                "peak_mem_mb_train": peak, "epoch_s": 0.0}

    first, last = dense([6.0, 6.2, 6.4], 2300.0), dense([8.8, 9.0, 8.6], 2400.0)
    other = {"method": "rst_s", "step_s_median": 5.0}
    rows = pool_dense([first, other, {"method": "dense", "error": "killed"}, last])
    assert [row["method"] for row in rows] == ["dense", "rst_s", "dense"]  # a failed measurement stays as it was
    merged = rows[0]
    assert merged["step_s_median"] == pytest.approx((6.4 + 8.6) / 2)  # the median of the six steps
    assert merged["step_s_median_each"] == [6.2, 8.8] and merged["measured_steps"] == 6
    assert merged["step_s_min"] == 6.0 and merged["step_s_max"] == 9.0 and merged["peak_mem_mb_train"] == 2400.0
    assert merged["epoch_s"] == pytest.approx(782 * merged["step_s_median"])
    assert pool_dense([first, other]) == [first, other]


def test_device_slug():
    assert device_slug({"device": "cpu (x86_64)"}) == "cpu-x86-64"
    assert device_slug({"device": "NVIDIA H100 80GB HBM3"}) == "nvidia-h100-80gb-hbm3"


def test_a_measured_slimmed_network():
    row = measure_network("uniform:0.15", torch.device("cpu"), warmup=0, width=0.25)
    dense = networks((), width=0.25)["dense"]
    assert row["flops"] / count_flops(dense, 32) == pytest.approx(0.15, abs=0.01)
    assert row["latency_ms_b1"] > 0 and row["latency_ms_b64"] > 0 and row["memory_kind"] == "cpu_tensor_peak"
    assert row["peak_mem_mb_infer"] >= tensor_mb(networks((0.15,), width=0.25)["uniform_15"])
    with pytest.raises(ValueError, match="unknown subject 'uniform'"):
        measure_network("uniform", torch.device("cpu"))


def test_exported_runs_are_measured_against_the_dense_network_of_their_config(tiny, tmp_path):
    from core.engine import run

    s2h = ["prune.method=s2hpruner", "prune.flops_target=0.15", "prune.options.mask_rule=expected_width"]
    table1 = run(tiny("experiment=table1", *s2h), handle_signals=False)
    double = run(tiny("experiment=table10", *s2h, "train.epochs=1"), handle_signals=False)  # the 2x column: not measured
    # the labels `python -m experiments run table10` gives them
    table1.run_dir.add_cell("table10", "custom", {"method": "s2hpruner", "schedule": "1x"})
    double.run_dir.add_cell("table10", "custom", {"method": "s2hpruner", "schedule": "2x"})
    results = tmp_path / "results"
    chosen = exported_runs(results, "table10")
    assert [r.path for r in chosen] == [table1.run_dir.path]
    assert len(exported_runs(results, "all")) == 2 and exported_runs(results, "none") == []

    dense_rows, rows = measure_exports(chosen, "cpu", tqdm(disable=True))  # each in a fresh process
    metrics = table1.record["metrics"]
    (dense,), (row,) = dense_rows, rows
    assert "error" not in dense and "error" not in row
    # Counted again, in other processes, from pruned.pt and the run's config: the record's numbers.
    assert row["flops"] == metrics["flops"] and dense["flops"] == metrics["flops_dense"]
    assert row["params"] == metrics["params"] and dense["params"] == metrics["params_dense"]
    assert row["flops_ratio"] == pytest.approx(metrics["flops_ratio"]) == row["flops_ratio_record"]
    assert row["image_size"] == 16 and row["reference"] == f"dense:{table1.run_dir.path}"
    assert row["speedup_b64"] == pytest.approx(dense["latency_ms_b64"] / row["latency_ms_b64"])
    assert (row["run_id"], row["experiment"], row["method"], row["flops_target"]) == (
        table1.record["run_id"], "table1", "s2hpruner", 0.15)
    assert row["peak_mem_mb_infer"] >= tensor_mb(load_pruned(table1.run_dir.path / "pruned.pt"))


def test_a_run_without_its_record_config_is_an_error_row(tmp_path):
    from bench.cli import in_fresh_process

    row = in_fresh_process("bench.inference", [f"run:{tmp_path}", "--device", "cpu"])
    assert set(row) == {"error"} and "record.json" in row["error"]


def test_cpu_inference_memory_is_the_peak_of_the_live_tensors():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    mb, kind = inference_memory_mb(net, 8, torch.device("cpu"))
    weights = 4 * sum(p.numel() for p in net.parameters())
    image, hidden = 4 * 64 * 3 * 8 * 8, 4 * 64 * 8 * 8 * 8
    # The peak is the ReLU's output written beside the first convolution's, both beside the input.
    assert kind == "cpu_tensor_peak" and mb * 2**20 == weights + image + 2 * hidden


@pytest.mark.parametrize(("argv", "needle"), [
    (["--steps", "-1"], "--steps must be at least 1"),
    (["--warmup", "-2"], "--warmup must be 0 or more"),
    (["--target", "0"], "--target must be in (0, 1)"),
    (["--target", "1"], "--target must be in (0, 1)"),
    (["--methods", "dense,s2hprunr"], "unknown method 's2hprunr'"),
])
def test_bad_arguments_are_one_line_before_any_measurement(capsys, monkeypatch, argv, needle):
    from bench import cli

    monkeypatch.setattr(cli, "in_fresh_process", lambda *a: pytest.fail("measured despite a bad argument"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]


def test_a_narrowed_benchmark_writes_beside_the_complete_one(tmp_path, monkeypatch):
    """`--methods dense` must not replace the JSON Table 10 reads (it would drop the other rows)."""
    from bench import cli
    from bench.training import methods

    def fake(module, args):
        if module == "bench.training":
            return {"method": args[0], "step_s": [1.0], "step_s_median": 1.0, "measured_steps": 1, "epoch_s": 782.0,
                    "peak_mem_mb_train": 10.0, "memory_kind": "rss"}
        return {"network": args[0], "flops": 100, "latency_ms_b1": 1.0, "latency_ms_b64": 1.0,
                "peak_mem_mb_infer": 1.0}

    monkeypatch.setattr(cli, "in_fresh_process", fake)
    monkeypatch.setattr(cli, "print_summary", lambda *a: None)
    out = tmp_path / "bench"
    slug = device_slug(cli.environment(torch.device("cpu")))
    complete = out / f"{slug}.json"
    complete.parent.mkdir(parents=True)
    complete.write_text("the complete benchmark\n")
    argv = ["--device", "cpu", "--steps", "1", "--runs", "none", "--out", str(out)]
    assert cli.main([*argv, "--methods", "dense"]) == 0
    assert complete.read_text() == "the complete benchmark\n"
    assert (out / "partial" / f"{slug}-dense.json").exists()
    assert cli.main([*argv, "--methods", ",".join(methods())]) == 0
    assert complete.read_text() != "the complete benchmark\n"  # a run of every method writes it
