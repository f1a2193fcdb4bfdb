from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main

PROJECT = Path(__file__).resolve().parents[2]


def _error_line(capsys, *argv: str) -> str:
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["model.name=resnet"], ["unknown model", "resnet50"]),
        (["data.name=mnist"], ["unknown dataset", "mnist"]),
        (["train.optimizer=rmsprop"], ["train.optimizer", "rmsprop"]),
        (["train.schedule=linear"], ["train.schedule", "linear"]),
        (["trian.epochs=3"], ["trian"]),
        (["train.batch_size=big"], ["train.batch_size", "big"]),
        (["prune.flops_target=1.2"], ["prune.flops_target", "(0, 1]"]),
        (["prune.method=otov2", "prune.flops_target=1.0"], ["prune.flops_target must be in (0, 1) for a pruning method"]),
        (["prune.flops_target=0"], ["prune.flops_target"]),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(capsys, argv, needles):
    line = _error_line(capsys, *argv)
    for needle in needles:
        assert needle in line


def test_malformed_files_too_small_images_and_unwritable_output_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, here or under results/
    malformed, listed = tmp_path / "malformed.yaml", tmp_path / "list.yaml"
    malformed.write_text("model: [resnet50\n")
    listed.write_text("- model.name=vit\n- train.epochs=1\n")
    assert "not valid YAML" in _error_line(capsys, "--config", str(malformed))
    assert "holds a mapping of keys" in _error_line(capsys, "--config", str(listed))
    assert "too small for the default patch" in _error_line(
        capsys, "data.name=synthetic", "data.image_size=7", "model.name=vit", "--dry-run")
    assert "output_root=/proc/forbidden: cannot write in /proc" in _error_line(capsys, "output_root=/proc/forbidden")
    assert "for a pruning method" in _error_line(capsys, "prune.method=s2hpruner", "prune.flops_target=1.5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.yaml", "malformed.yaml"]


def test_a_closed_pipe_ends_a_command_quietly(tmp_path):
    """`python -m experiments run --dry-run | head`: no BrokenPipeError, SIGPIPE's status. The
    reader here (`true`) is gone before the command writes a line (its imports take seconds):
    `head -1` would leave the rest to the pipe's buffer, and a short output would fit in it."""
    pipe = subprocess.run(f"{sys.executable} -m experiments run table1 --dry-run --output-root {tmp_path} | true; "
                          "echo status ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", cwd=PROJECT,
                          capture_output=True, text=True, timeout=120)
    assert "status 141" in pipe.stdout
    assert "Traceback" not in pipe.stderr and "BrokenPipeError" not in pipe.stderr, pipe.stderr


def test_missing_dataset_folder_with_download_off(capsys, tmp_path):
    line = _error_line(capsys, "data.name=cifar100", f"data.root={tmp_path}", f"output_root={tmp_path / 'out'}")
    assert str(tmp_path / "cifar-100-python") in line and "data.download=true" in line
    assert not (tmp_path / "out").exists()  # nothing was started


def test_dry_run_prints_the_resolved_config_and_run_folder(capsys, tmp_path):
    assert main(["run", "--dry-run", "model.name=swin", f"output_root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "window_size: null" in out and f"# run folder: {tmp_path}/runs/custom/" in out
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_bare_run_is_the_narrow_demo_and_any_other_the_papers_width(capsys, tmp_path):
    assert main(["run", "--dry-run", f"output_root={tmp_path}", "progress=false"]) == 0
    assert "width: 0.25" in capsys.readouterr().out
    assert main(["run", "--dry-run", "data.name=synthetic", f"output_root={tmp_path}"]) == 0
    assert "width: 1.0" in capsys.readouterr().out


def test_help_lists_every_config_field_and_option(tmp_path):
    out = subprocess.run([sys.executable, "-m", "core", "run", "--help"], cwd=PROJECT, capture_output=True, text=True, check=True).stdout
    for key in ("train.epochs", "train.milestones", "prune.flops_scope", "data.train_limit", "seed (int) = 0"):
        assert key in out, key
    assert "model.options for vit" in out and "drop_path_rate" in out


def test_cli_runs_and_exit_codes(tmp_path, tiny_args):
    args = ["-m", "core", "run", *tiny_args("train.epochs=1")]
    first = subprocess.run([sys.executable, *args], cwd=PROJECT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "run folder:" in first.stdout and "done: top1" in first.stdout
    second = subprocess.run([sys.executable, *args], cwd=PROJECT, capture_output=True, text=True)
    assert second.returncode == 0 and "already done" in second.stdout and "epoch 1/1" not in second.stderr
    failed = subprocess.run([sys.executable, *args, "train.lr=1e30"], cwd=PROJECT, capture_output=True, text=True)
    assert failed.returncode == 1 and "non-finite training loss" in failed.stdout


def test_a_stale_run_says_so_and_rerun_trains_it_afresh(tmp_path, tiny_args, capsys):
    import json

    args = ["run", *tiny_args("train.epochs=1")]
    assert main(args) == 0
    record_path = next((tmp_path / "results" / "runs").glob("*/*/record.json"))
    record = json.loads(record_path.read_text())
    record["code"]["version"] = "0ld"
    record_path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "already done" in out and "stale: code 0ld, this checkout" in out and "--rerun" in out
    assert main([*args, "--rerun"]) == 0
    out = capsys.readouterr().out
    assert "set aside in" in out and "done: top1" in out
    assert json.loads(record_path.read_text())["code"]["version"] != "0ld"
    aside = list((tmp_path / "results" / "attempts").glob("*/*/*-rerun/record.json"))
    assert len(aside) == 1 and json.loads(aside[0].read_text())["code"]["version"] == "0ld"
