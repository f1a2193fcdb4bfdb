from __future__ import annotations

import dataclasses

import pytest

from core.config import DEMO, RunConfig, demo_overrides, to_dict
from core.resolve import from_dict, load, result_fields
from core.errors import ConfigError
from core.records import run_id


def _error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(list(overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_resolve_with_typed_options():
    cfg = load()
    assert isinstance(cfg, RunConfig)
    assert cfg.model.options == {"stem": "auto"}
    assert cfg.data.options == {"test_fraction": 0.2}
    assert cfg.prune.method == "dense" and cfg.prune.options == {}


def test_the_default_model_is_the_papers_full_width_network():
    assert RunConfig().model.width == 1.0 and load().model.width == 1.0


def test_demo_layer_only_for_a_bare_command_line(tmp_path):
    """The demo's narrow width applies when the command line changes nothing that affects results."""
    assert list(DEMO) == ["model.width=0.25", "experiment=demo", "profile=smoke"]  # disposable: make clean removes it
    for bare in ([], ["output_root=/x", "progress=false", "experiment=mine", "train.device=cpu", "data.workers=2"]):
        assert demo_overrides(bare) == list(DEMO), bare
        cfg = load([*demo_overrides(bare), *bare])
        assert cfg.model.width == 0.25 and cfg.profile == "smoke" and cfg.experiment == ("mine" if bare else "demo")
    for changing in (["train.epochs=2"], ["model.name=vit"], ["model.options.stem=imagenet"], ["data.name=cifar100"],
                     ["trian.epochs=3"]):
        assert demo_overrides(changing) == [], changing
    own = load(["train.epochs=2"])  # any other run is the user's own: never disposable by default
    assert (own.experiment, own.profile) == ("custom", "custom")
    path = tmp_path / "run.yaml"
    path.write_text("progress: false\n")
    assert demo_overrides([], [path]) == []


def test_overrides_and_files_merge_in_order(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  name: vit\ntrain:\n  epochs: 5\n  milestones: [2, 4]\n")
    cfg = load(["train.epochs=7"], [path])
    assert cfg.model.name == "vit" and cfg.train.epochs == 7 and cfg.train.milestones == [2, 4]
    assert cfg.model.options["num_heads"] == 12  # the ViT's typed defaults were filled in


def test_misspelled_key_names_the_key_and_suggests():
    message = _error("train.epoch=3")
    assert "train.epoch" in message and "epochs" in message


def test_misspelled_option_key_is_caught_by_the_model_schema():
    message = _error("model.name=vit", "model.options.dpeth=3")
    assert "model.options.dpeth" in message and "depth" in message


def test_wrong_type_names_the_key():
    message = _error("train.epochs=ten")
    assert "train.epochs" in message and "ten" in message
    assert "model.options.depth" in _error("model.name=vit", "model.options.depth=deep")


@pytest.mark.parametrize(
    ("override", "word"),
    [
        ("model.name=resnet5", "resnet50"),
        ("data.name=cifar10", "cifar100"),
        ("train.optimizer=adam", "adamw"),
        ("train.schedule=cosin", "cosine"),
        ("prune.method=s2h", "dense"),
    ],
)
def test_unknown_names_list_the_known_ones(override, word):
    message = _error(override)
    assert override.split("=")[1] in message and word in message


@pytest.mark.parametrize("target", ["0", "-0.1", "1.5", "0.0"])
def test_flops_target_outside_unit_interval(target):
    assert "prune.flops_target" in _error(f"prune.flops_target={target}")


def test_dense_rejects_a_pruning_target():
    assert "dense" in _error("prune.flops_target=0.5")


@pytest.mark.parametrize(
    "overrides",
    [
        ["train.schedule=step"],  # no milestones
        ["train.schedule=step", "train.milestones=[5,3]"],  # not increasing
        ["train.epochs=0"],
        ["train.warmup_epochs=8"],
        ["seed=-1"],
        ["experiment=a/b"],
        ["train.device=gpu"],
        ["model.options.stem=tiny"],
        ["model.name=vit", "model.options.patch_size=5"],  # 32 px is no multiple of 5
        ["model.name=swin", "data.image_size=24"],  # 6 tokens cannot be merged twice
        ["not_a_pair"],
    ],
)
def test_impossible_values_are_rejected(overrides):
    _error(*overrides)


def test_round_trip_through_plain_dict():
    cfg = load(["model.name=swin", "seed=3", "train.milestones=[1]", "train.schedule=step"])
    assert from_dict(to_dict(cfg)) == cfg


def test_run_id_ignores_paths_and_cosmetics_but_not_results():
    base = load()
    same = [
        "output_root=/elsewhere",
        "experiment=other",
        "data.root=/datasets",
        "data.workers=4",
        "progress=false",
        "train.device=cpu",
        "train.eval_batch_size=17",
    ]
    for override in same:
        assert run_id(load([override])) == run_id(base), override
    for override in ["seed=1", "train.lr=0.1", "model.width=0.5", "profile=paper", "data.train_limit=100"]:
        assert run_id(load([override])) != run_id(base), override


def test_seed_zero_differs_from_seed_one_and_is_valid():
    assert load(["seed=0"]).seed == 0
    assert run_id(load(["seed=0"])) != run_id(load(["seed=1"]))


def test_result_fields_drop_exactly_the_non_result_keys():
    kept = result_fields(load())
    assert "output_root" not in kept and "experiment" not in kept
    assert "root" not in kept["data"] and "workers" not in kept["data"]
    assert kept["train"]["lr"] == 0.02
    all_fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(kept) == all_fields - {"experiment", "output_root", "progress", "save_module"}


def test_option_fields_flagged_as_not_changing_results_leave_the_run_id_alone():
    """S2HPruner's `widths_every` only sets how often widths are logged: same run id and setting;
    an option that changes results (mask_lr) changes both; the seed changes the run id only."""
    from core.records import setting_id

    base = load(["prune.method=s2hpruner", "prune.flops_target=0.5"])
    logged = load(["prune.method=s2hpruner", "prune.flops_target=0.5", "prune.options.widths_every=7"])
    assert logged.prune.options["widths_every"] == 7 and "widths_every" not in result_fields(logged)["prune"]["options"]
    assert run_id(logged) == run_id(base) and setting_id(logged) == setting_id(base)
    other = load(["prune.method=s2hpruner", "prune.flops_target=0.5", "prune.options.mask_lr=1.0"])
    assert run_id(other) != run_id(base) and setting_id(other) != setting_id(base)
    reseeded = load(["prune.method=s2hpruner", "prune.flops_target=0.5", "seed=3"])
    assert run_id(reseeded) != run_id(base) and setting_id(reseeded) == setting_id(base)
