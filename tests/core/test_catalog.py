"""The names in one place (`core.catalog`): a new baseline is its module, its registration and its
card, and every table, claim, grid and benchmark that compares the methods takes it in.

The toy baseline below lives in a temporary module only, named in `$S2H_PLUGINS`: no file of
the suite is edited. It runs one smoke cell of Table 1's grid and shows in Table 1's rendering,
in the claims that compare the methods and in the benchmark's method choices.
"""

from __future__ import annotations

import argparse
import textwrap

import pytest

from core import catalog

TOY = textwrap.dedent('''
    """A toy baseline: every channel group slimmed to one width fraction at initialisation."""

    import torch

    from core.catalog import MethodCard, declare
    from core.dense import DensePruner
    from core.groups import FlopsModel, groups_for_run, prefix_mask, slim
    from core.pruner import PRUNERS, check_pruning_target

    declare(MethodCard("toy_uniform", "Toy-Uniform [99]", "baseline", settings={"smoke": {"train.lr": 0.01}}))


    @PRUNERS.register("toy_uniform", summary="one width fraction for every group, fixed at initialisation")
    class ToyUniform(DensePruner):
        def __init__(self, model, ctx):
            groups = groups_for_run(model, ctx.cfg.prune, ctx.image_size)
            flops = FlopsModel(model, groups)
            low, high = 0.0, 1.0
            for _ in range(40):
                mid = (low + high) / 2
                kept = [max(1, round(mid * g.size)) for g in groups]
                low, high = (mid, high) if flops.count(kept) / flops.dense() < ctx.cfg.prune.flops_target else (low, mid)
            kept = [max(1, round(high * g.size)) for g in groups]
            masks = [prefix_mask(torch.arange(g.size), k) for g, k in zip(groups, kept)]
            self.ratio = float(flops.count(kept) / flops.dense())
            super().__init__(slim(model, groups, masks), ctx)

        @classmethod
        def check_config(cls, cfg):
            check_pruning_target(cfg)

        def end_epoch(self, epoch):
            return {"flops_ratio": self.ratio}
''')


@pytest.fixture
def toy(plugin):
    """The toy module importable and named in $S2H_PLUGINS; everything it declares forgotten after."""
    from core.pruner import PRUNERS

    return plugin("toy_uniform", TOY, PRUNERS)


def test_the_suites_methods_in_the_papers_order():
    assert catalog.compared() == ("rst_s", "group_sl", "otov2", "refill", "s2hpruner")
    assert catalog.compared(transformers=True) == ("rst_s", "s2hpruner") and catalog.ours() == "s2hpruner"
    assert catalog.card("s2hpruner").cell == {"prune.method": "s2hpruner", "prune.options.mask_rule": "expected_width"}
    assert [catalog.card(m).short for m in catalog.compared()] == ["RST-S", "Depgraph", "OTO v2", "IMP-Refill", "Ours"]


def test_a_method_declared_twice_differently_is_an_error():
    with pytest.raises(ValueError, match="declared twice"):
        catalog.declare(catalog.MethodCard("rst_s", "RST-S [2]", "baseline"))
    with pytest.raises(ValueError, match="role must be"):
        catalog.MethodCard("x", "X", "teacher")


def test_a_baseline_in_a_temporary_module_joins_the_grids_tables_claims_and_benchmark(toy, tmp_path, capsys):
    from analysis.claims import check
    from analysis.records import load_runs
    from analysis.tables import build
    from analysis.render import render
    from bench.cli import check_arguments
    from bench.training import methods
    from experiments.cli import main as experiments
    from experiments.spec import expand

    results = tmp_path / "results"
    # the grid: Table 1 compares it, with its card's settings on the smoke profile
    cells = [c for c in expand("table1", "smoke", validate=False).cells if c.labels.get("method") == toy]
    assert len(cells) == 9 and all(c.layers["train.lr"] == 0.01 for c in cells)
    # one smoke cell, through the project's own command
    assert experiments(["run", "table1", "--executor", "inline", "--where", f"method={toy}", "--where",
                        "model.name=resnet50", "--where", "prune.flops_target=0.35", "--output-root", str(results),
                        "progress=false"]) == 0
    capsys.readouterr()
    runs = load_runs(results)
    (run,) = [r for r in runs.runs if r.method == toy]
    assert run.done and run.metric("flops_ratio") == pytest.approx(0.35, abs=0.03)
    # Table 1: its row, its cell filled
    text = render(build(1, runs, "smoke"), "md")
    (row,) = [line for line in text.splitlines() if line.startswith("| Toy-Uniform [99]")]
    assert row.split("|")[3].strip().startswith(f"{run.metric('top1'):.2f}")
    # the claims: the FLOPs-target claim counts its run, the headline compares S2HPruner with it too
    claims = check(runs, "smoke")
    on_target = next(c for c in claims if c.source == "Table 1" and "within" in c.claim)
    assert run in on_target.runs
    # the benchmark measures it
    assert toy in methods()
    check_arguments(argparse.Namespace(device="cpu", steps=1, warmup=0, target=0.15), [toy], methods())
