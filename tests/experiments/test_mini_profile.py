"""The mini profile: every grid on real images (scikit-learn's digits), narrow networks, laptop-sized."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.claims import CLAIM_EXPERIMENTS
from core.data import DATASETS
from core.data.synthetic import Synthetic
from core.errors import ConfigError
from experiments.cli import main, selected
from experiments.recipes import profile_seeds
from experiments.spec import expand, experiment_names

ROOT = Path(__file__).resolve().parents[2]


def _unseeded(labels: dict[str, str], own: set[str]) -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "seed" or k in own))


@pytest.mark.parametrize("name", experiment_names())
def test_every_experiment_expands_on_real_images(name):
    paper, mini = expand(name, "paper", validate=False), expand(name, "mini")
    seeds = profile_seeds("mini")
    assert seeds >= 3
    # every paper cell, once per seed (a cell that chooses its own seed, Table 9's, once)
    own = {"seed"} if any("seed" in c.labels for c in paper.cells) else set()
    sources = {_unseeded(c.labels, own): c for c in paper.cells}
    assert len(mini.cells) == len(paper.cells) * (1 if own else seeds), name
    for cell in mini.cells:
        source = sources[_unseeded(cell.labels, own)]
        assert own or cell.cfg.seed == int(cell.labels["seed"])
        cfg = cell.cfg
        assert cfg.profile == "mini" and cfg.data.name == "digits", (name, cell.labels)
        # a real dataset: registered with its own loader, not the synthetic stand-in, and shipped offline
        assert not issubclass(DATASETS.get(cfg.data.name).factory, Synthetic)
        assert cfg.model.width <= 0.25 and cfg.data.image_size == 16
        assert cfg.train.epochs <= min(36, source.cfg.train.epochs), (name, cell.labels)  # 18 at most; Table 10 doubles
        # the paper's method, target, optimizer and schedule kind: only the scale changes
        assert (cfg.prune.method, cfg.prune.flops_target, cfg.train.optimizer, cfg.train.schedule) == (
            source.cfg.prune.method, source.cfg.prune.flops_target, source.cfg.train.optimizer, source.cfg.train.schedule)
    assert all(c.cfg.profile == "mini" for c in mini.extra)


def test_mini_runs_are_neither_the_smoke_nor_the_paper_runs():
    runs = {p: [c.run_dir.path for c in expand("table9", p).all_cells] for p in ("mini", "smoke", "paper")}
    assert not set(runs["mini"]) & (set(runs["smoke"]) | set(runs["paper"]))


def test_where_picks_the_demo_cells_and_the_runs_they_read():
    table1 = expand("table1", "mini")
    resnet = selected(table1, {"model.name": {"resnet50"}})
    assert len(resnet) == 16 * 3 and {c.cfg.model.name for c in resnet} == {"resnet50"}
    # make demo's: the dense network and the five methods at 15 and 55 %, seed 0
    demo = selected(table1, {"model.name": {"resnet50"}, "prune.flops_target": {"0.15", "0.55", "1.0"}, "seed": {"0"}})
    assert sorted((c.cfg.prune.method, c.cfg.prune.flops_target) for c in demo) == sorted(
        [("dense", 1.0)] + [(m, t) for m in ("rst_s", "group_sl", "otov2", "refill", "s2hpruner") for t in (0.15, 0.55)])
    assert len(selected(table1, {"model.name": {"resnet50"}, "method": {"rst_s"}, "seed": {"1"}})) == 3
    assert len(selected(table1, {"prune.method": {"dense"}, "seed": {"2"}})) == 3  # a config value where no label says it
    table8 = expand("table8", "mini")  # its cells read Table 1's S2HPruner run of their seed: it comes with them
    picked = selected(table8, {"network": {"ours"}, "seed": {"1"}})
    assert [c.experiment for c in picked] == ["table1", "table8"]
    assert [c.cfg.seed for c in picked] == [1, 1]


def test_where_that_matches_nothing_or_is_malformed_is_one_line(capsys, tmp_path):
    assert main(["run", "table9", "--profile", "mini", "--where", "model.name=resnet", "--dry-run",
                 "--output-root", str(tmp_path)]) == 2
    assert "matches no cell" in capsys.readouterr().err
    assert main(["status", "table9", "--profile", "mini", "--where", "model.name", "--output-root", str(tmp_path)]) == 2
    assert "key=value" in capsys.readouterr().err


def test_several_grids_make_one_queue_with_shared_runs_once(capsys, tmp_path):
    assert main(["run", "table6,table9", "--profile", "mini", "--dry-run", "--output-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # Table 6's Alt 1 and Alt 2 at three seeds, Table 9's seed 3, and Table 1's three 15 % runs that
    # both reuse (Table 9's seeds 0-2), once
    assert "table6,table9 (mini profile): 10 cells" in out and out.count("would run") == 10
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # a dry run writes nothing


def test_makefile_claims_runs_the_grids_the_claims_read():
    text = (ROOT / "Makefile").read_text()
    every = re.search(r"^ALL_CLAIM_GRIDS := (.+)$", text, re.M)
    assert every and tuple(every.group(1).split(",")) == CLAIM_EXPERIMENTS
    first = re.search(r"^CLAIM_GRIDS := (.+)$", text, re.M)
    assert first and set(first.group(1).split(",")) == {"table1", "table5", "table6", "table9"}


def test_unknown_profile_is_refused():
    with pytest.raises(ConfigError, match="mini"):
        expand("table1", "tiny")
