"""`python -m core.groups`: the inventory, random slimming, and the exported module."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from core.groups.cli import main


def test_inventory(capsys):
    assert main(["resnet50", "--width", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "36 prunable groups" in out
    assert "layer1.0.conv1:out, layer1.0.bn1:out, layer1.0.conv2:in" in out
    assert out.count("   kept") == 2  # the stem and the classifier, listed but not prunable


def test_inventory_json(capsys):
    assert main(["vit", "--width", "0.5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["groups"] == 19
    prunable = [row for row in result["inventory"] if row["prunable"]]
    assert [row["kind"] for row in prunable].count("head") == 9
    assert 0 < sum(row["flops_share"] for row in prunable if row["kind"] == "mlp") < 1


@pytest.mark.parametrize("argv, message", [
    (["resnet5"], "unknown model 'resnet5' (did you mean 'resnet50'?)"),
    (["resnet50", "--random-keep", "1.5"], "--random-keep must be in (0, 1]"),
    (["resnet50", "--export", "x.pt"], "--export needs --random-keep"),
    (["resnet50", "--dataset", "cifar10"], "unknown dataset"),
])
def test_bad_input_is_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("model", ["swin", "resnet50", "mobilenetv3", "wrn28_10"])
def test_export_loads_as_data_in_a_fresh_process(tmp_path, model):
    """The slimmed network's file unpickles no class (weights_only=True) and rebuilds in a fresh
    interpreter, without any pruning code, to the network the CLI measured."""
    path = tmp_path / "pruned.pt"
    cli = [sys.executable, "-m", "core.groups", model, "--width", "0.25", "--random-keep", "0.35",
           "--seed", "3", "--export", str(path), "--json"]
    result = json.loads(subprocess.run(cli, check=True, capture_output=True, text=True).stdout)
    assert result["flops"] == result["flops_predicted"] < result["flops_dense"]
    assert result["flops_ratio"] == pytest.approx(result["flops"] / result["flops_dense"])
    assert 0 < result["flops_ratio_prunable"] < 1 and result["params"] < result["params_dense"]
    probe = textwrap.dedent(f"""
        import sys, torch
        torch.load({str(path)!r}, weights_only=True)
        from core.export import load_pruned
        model = load_pruned({str(path)!r})
        assert isinstance(model, torch.nn.Module)
        hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
        assert hooks == 0, hooks
        with torch.no_grad():
            out = model.eval()(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 100), out.shape
        suite = {{n for n in sys.modules if n.split(".")[0] in ("method", "baselines") or n.startswith("core.groups")}}
        assert not suite, sorted(suite)
        print(sum(p.numel() for p in model.parameters()))
    """)
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert int(out.stdout) == result["params"]
