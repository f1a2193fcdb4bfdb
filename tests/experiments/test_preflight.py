"""The pre-flight step: expansion resolves each cell and builds nothing; the pre-flight builds each
network once and checks every cell on it, before anything is queued (core/preflight.py)."""

from __future__ import annotations

import pytest

import core.models
import experiments.spec
from core.errors import ConfigError
from core.preflight import Preflight
from experiments.cli import main
from experiments.spec import expand, preflight


@pytest.fixture
def builds(monkeypatch):
    """Every network built in this test, as (model name, classes, image size); no cache carried in."""
    made: list[tuple[str, int, int]] = []
    real = core.models.build_model

    def counted(cfg, num_classes, image_size):
        made.append((cfg.name, num_classes, image_size))
        return real(cfg, num_classes, image_size)

    monkeypatch.setattr(core.models, "build_model", counted)
    monkeypatch.setattr(core.models, "_META", {})
    return made


def test_table1_paper_grid_builds_each_network_once_in_the_preflight(builds, monkeypatch):
    resolved = []
    real = experiments.spec.resolve
    monkeypatch.setattr(experiments.spec, "resolve", lambda cfg: resolved.append(cfg) or real(cfg))
    expansion = expand("table1", "paper")
    assert len(expansion.all_cells) == 48 and builds == []  # resolving 48 cells built nothing
    assert len(resolved) == 48  # each cell's config resolved once
    preflight([expansion])
    assert sorted(builds) == [("mobilenetv3", 100, 32), ("resnet50", 100, 32), ("wrn28_10", 100, 32)]
    preflight([expansion, expand("table5", "paper")])  # Table 5 shares Table 1's ResNet-50
    assert len(builds) == 3


def _grid(tmp_path, body: str) -> str:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nbase: {data.name: cifar100, model.name: resnet50}\n" + body)
    return str(path)


def test_a_network_check_fails_in_the_preflight_with_the_cell_named(tmp_path):
    grid = _grid(tmp_path, "blocks:\n  - product: {prune.method: [rst_s], prune.flops_target: [0.5, 0.01]}\n")
    expansion = expand(grid, "smoke")  # the values are fine: resolving passes
    with pytest.raises(ConfigError, match=r"mine cell \[prune.method=rst_s prune.flops_target=0.01\]: "
                                          r"RST-S prunes interior groups only"):
        preflight([expansion])
    with pytest.raises(ConfigError, match="implemented for CNNs"):
        preflight([expand(_grid(tmp_path, "blocks:\n  - set: {model.name: vit, prune.flops_target: 0.5}\n"
                                          "    product: {prune.method: [otov2]}\n"), "smoke")])


def test_preflight_stops_a_run_before_anything_is_queued(tmp_path, capsys):
    grid = _grid(tmp_path, "blocks:\n  - product: {prune.method: [rst_s], prune.flops_target: [0.01]}\n")
    code = main(["run", grid, "--profile", "smoke", "--executor", "inline", "--output-root", str(tmp_path / "out")])
    assert code == 2 and "RST-S prunes interior groups only" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()


def test_runs_queued_in_the_same_submission_count_as_present(tmp_path):
    """Table 7's fine-tuning reads the soft-only run's checkpoint: queued with it, it passes; alone
    and absent, the pre-flight names the missing checkpoint."""
    expansion = expand("table7", "smoke", output_root=str(tmp_path))
    preflight([expansion])  # the soft-only run is not done: the submission queues it first
    tuned = expansion.cells[-1].cfg
    with pytest.raises(ConfigError, match="init_from: no checkpoint.pt"):
        Preflight().check(tuned)
    Preflight([expansion.cells[0].run_dir.path]).check(tuned)
