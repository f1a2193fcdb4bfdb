"""Figures 3-9 from hand-made run folders: files written, panels counted, runs selected right."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from analysis import figures
from analysis.figures import FIGURE_NUMBERS, build_figure, render_figure, source_run, width_trajectory
from analysis.records import load_runs

EXPERIMENTS = {"resnet50": "table1", "mobilenetv3": "table1", "wrn28_10": "table1", "vit": "table3", "swin": "table3"}
GROUPS = {"resnet50": 7, "mobilenetv3": 5, "wrn28_10": 4, "vit": 6, "swin": 3}
KINDS = ["residual", "interior", "mlp", "head", "head-dim"]
PER_MODEL = {5: "resnet50", 6: "mobilenetv3", 7: "wrn28_10", 8: "vit", 9: "swin"}


def make_run(root: Path, model: str, *, run_id: str | None = None, profile: str = "smoke", seed: int = 0,
             method: str = "s2hpruner", target: float = 0.15, formulation: str | None = "ours",
             status: str = "done", experiment: str | None = None, width_lines: int = 5, epochs: int = 3,
             kept_offset: int = 0) -> Path:
    """A run folder as the engine writes it, small enough to draw in milliseconds."""
    experiment = experiment or EXPERIMENTS[model]
    run_id = run_id or f"{model}-{profile}-{method}-{target}-{formulation}-{seed}-{status}"
    folder = root / "runs" / experiment / run_id
    folder.mkdir(parents=True)
    n = GROUPS[model]
    sizes = [8 * (g + 1) for g in range(n)]
    options: dict[str, Any] = {} if formulation is None else {"formulation": formulation}
    record = {"run_id": run_id, "experiment": experiment, "profile": profile, "status": status,
              "method": method, "model": model, "dataset": "synthetic", "flops_target": target,
              "seed": seed, "metrics": {"top1": 50.0}, "config": {"prune": {"options": options}}}
    (folder / "record.json").write_text(json.dumps(record))
    log = []
    for epoch in range(1, epochs + 1):
        log.append({"epoch": epoch, "step": 10 * epoch, "lr": 0.1, "train_loss": 1.0,
                    "test_top1": None if epoch == 2 else 10.0 * epoch,
                    "flops_ratio": 1.0 - 0.25 * epoch, "time_s": 0.1,
                    "widths": [s - epoch - kept_offset for s in sizes]})
    (folder / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    widths = [{"step": 3 * (i + 1), "epoch": 1, "widths": [s - i - kept_offset for s in sizes], "flops_ratio": 0.5}
              for i in range(width_lines)]
    (folder / "widths.jsonl").write_text("".join(json.dumps(e) + "\n" for e in widths))
    architecture = {"model": model, "flops_target": target, "flops_ratio": 0.151, "flops_ratio_prunable": 0.14,
                    "groups": [{"name": f"block{g}", "kind": KINDS[g % len(KINDS)], "size": s, "kept": s // 2}
                               for g, s in enumerate(sizes)]}
    (folder / "architecture.json").write_text(json.dumps(architecture))
    return folder


@pytest.fixture
def full(tmp_path: Path) -> Path:
    for model in EXPERIMENTS:
        make_run(tmp_path, model)
    return tmp_path


def check_files(result: figures.FigureResult, out: Path, stem: str) -> None:
    assert [p.name for p in result.paths] == [f"{stem}.png", f"{stem}.pdf"]
    png, pdf = (out / f"{stem}.png").read_bytes(), (out / f"{stem}.pdf").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000


def data_axes(fig) -> list:
    """Axes that are panels: visible, and not the right-hand twin of a Fig. 3 panel."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_ylabel() != "top-1 accuracy (%)"]


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.mark.parametrize("number", FIGURE_NUMBERS)
def test_every_figure_renders_with_all_runs(full: Path, tmp_path: Path, number: int) -> None:
    out = tmp_path / "figs"
    result = render_figure(number, load_runs(full), "smoke", out)
    check_files(result, out, f"fig{number}-smoke")
    expected = 5 if number in (3, 4) else GROUPS[PER_MODEL[number]]
    assert result.panels == expected
    assert result.missing == []
    assert result.number == number and result.title.startswith(f"Figure {number}:")
    assert "\n" not in result.title
    assert plt.get_fignums() == []  # closed after saving


@pytest.mark.parametrize("number", FIGURE_NUMBERS)
def test_panels_match_the_drawn_axes(full: Path, number: int) -> None:
    fig, result = build_figure(number, load_runs(full), "smoke")
    try:
        assert len(data_axes(fig)) == result.panels
        assert not any(t.startswith("no run") for t in texts(fig))
    finally:
        plt.close(fig)


def test_fig3_plots_percent_and_skips_nulls(full: Path) -> None:
    fig, _ = build_figure(3, load_runs(full), "smoke")
    try:
        first = fig.axes[0]
        flops = first.get_lines()[0]
        assert list(flops.get_xdata()) == [1.0, 2.0, 3.0]
        assert list(flops.get_ydata()) == pytest.approx([75.0, 50.0, 25.0])
        twin = next(ax for ax in fig.axes if ax.get_ylabel() == "top-1 accuracy (%)")
        top1 = twin.get_lines()[0]
        assert list(top1.get_xdata()) == [1.0, 3.0]  # epoch 2 was not evaluated (null)
        assert list(top1.get_ydata()) == pytest.approx([10.0, 30.0])
        assert first.get_xlabel() == "epoch" and "FLOPs" in first.get_ylabel()
    finally:
        plt.close(fig)


def test_fig4_bars_are_size_and_kept(full: Path) -> None:
    fig, _ = build_figure(4, load_runs(full), "smoke")
    try:
        ax = fig.axes[0]  # ResNet-50
        heights = [bar.get_height() for bar in ax.patches]
        sizes = [8 * (g + 1) for g in range(GROUPS["resnet50"])]
        assert heights == sizes + [s // 2 for s in sizes]
        assert [bar.get_x() + bar.get_width() / 2 for bar in ax.patches[: len(sizes)]] == pytest.approx(
            list(range(1, len(sizes) + 1)))
        assert ax.get_ylabel() == "channels / units"
    finally:
        plt.close(fig)


@pytest.mark.parametrize("number", FIGURE_NUMBERS)
def test_missing_runs_are_reported_and_noted(tmp_path: Path, number: int) -> None:
    for model in ("resnet50", "mobilenetv3", "vit"):
        make_run(tmp_path, model)
    out = tmp_path / "figs"
    result = render_figure(number, load_runs(tmp_path), "smoke", out)
    check_files(result, out, f"fig{number}-smoke")
    if number in (3, 4):
        assert result.panels == 5
        assert result.missing == ["table1 wrn28_10 s2hpruner 15% (profile smoke)",
                                  "table3 swin s2hpruner 15% (profile smoke)"]
    elif PER_MODEL[number] in ("wrn28_10", "swin"):
        assert result.panels == 1
        assert len(result.missing) == 1 and PER_MODEL[number] in result.missing[0]
    else:
        assert result.panels == GROUPS[PER_MODEL[number]] and result.missing == []
    fig, _ = build_figure(number, load_runs(tmp_path), "smoke")
    try:
        notes = [t for t in texts(fig) if t.startswith("no run")]
        assert notes == [f"no run: make fig{number}"] * len(result.missing)
        assert len(data_axes(fig)) == result.panels
    finally:
        plt.close(fig)


def test_nothing_at_all_still_renders(tmp_path: Path) -> None:
    for number in FIGURE_NUMBERS:
        result = render_figure(number, load_runs(tmp_path / "empty"), "paper", tmp_path)
        check_files(result, tmp_path, f"fig{number}")
        assert result.missing and all(line.endswith("(profile paper)") for line in result.missing)


def test_width_fallback_to_log(tmp_path: Path) -> None:
    folder = make_run(tmp_path, "resnet50", width_lines=1)
    run = load_runs(tmp_path).runs[0]
    trajectory = width_trajectory(run)
    assert trajectory.source == "log.jsonl"
    assert trajectory.steps == [10, 20, 30]
    assert trajectory.widths[0] == [8 * (g + 1) - 1 for g in range(GROUPS["resnet50"])]
    fig, result = build_figure(5, load_runs(tmp_path), "smoke")
    try:
        assert any("log.jsonl" in note for note in result.notes)
        assert "log.jsonl" in fig.get_suptitle()
        line = fig.axes[2].get_lines()[0]  # group 3
        assert list(line.get_xdata()) == [10, 20, 30]
        assert list(line.get_ydata()) == [23, 22, 21]
        assert result.panels == GROUPS["resnet50"]
    finally:
        plt.close(fig)
    (folder / "widths.jsonl").unlink()  # absent file: the same fallback
    assert width_trajectory(load_runs(tmp_path).runs[0]).source == "log.jsonl"


def test_widths_jsonl_preferred_when_it_has_a_curve(tmp_path: Path) -> None:
    make_run(tmp_path, "swin", width_lines=4)
    trajectory = width_trajectory(load_runs(tmp_path).runs[0])
    assert trajectory.source == "widths.jsonl"
    assert trajectory.steps == [3, 6, 9, 12]
    fig, result = build_figure(9, load_runs(tmp_path), "smoke")
    try:
        assert not any("log.jsonl" in note for note in result.notes)
        assert list(fig.axes[0].get_lines()[0].get_ydata()) == [8, 7, 6, 5]
        assert fig.axes[0].get_title() == "1: residual"
    finally:
        plt.close(fig)


def test_group_count_without_architecture(tmp_path: Path) -> None:
    folder = make_run(tmp_path, "vit")
    (folder / "architecture.json").unlink()
    fig, result = build_figure(8, load_runs(tmp_path), "smoke")
    plt.close(fig)
    assert result.panels == GROUPS["vit"]


def test_smoke_label_and_paper_without(full: Path, tmp_path: Path) -> None:
    label = "profile: smoke (synthetic data, not comparable with the paper)"
    assert figures.profile_label("smoke") == label
    assert figures.profile_label("paper") is None
    assert label in figures.suptitle_text(3, "smoke")
    assert "profile" not in figures.suptitle_text(3, "paper")
    fig, result = build_figure(4, load_runs(full), "smoke")
    try:
        assert label in fig.get_suptitle() and label in result.notes
    finally:
        plt.close(fig)
    for model in EXPERIMENTS:
        make_run(full, model, profile="paper")
    fig, result = build_figure(4, load_runs(full), "paper")
    try:
        assert "profile" not in fig.get_suptitle() and result.notes == [] and result.missing == []
    finally:
        plt.close(fig)
    result = render_figure(4, load_runs(full), "paper", tmp_path / "paper")
    check_files(result, tmp_path / "paper", "fig4")


def test_only_the_standard_15_percent_run_is_picked(tmp_path: Path) -> None:
    decoys = [
        dict(method="group_sl"),
        dict(target=0.35),
        dict(formulation="alt1"),
        dict(profile="paper"),
        dict(status="failed"),
        dict(experiment="table5"),
    ]
    for i, decoy in enumerate(decoys):
        make_run(tmp_path, "resnet50", run_id=f"decoy{i}", **decoy)
    runs = load_runs(tmp_path)
    assert source_run(runs, "smoke", "resnet50") is None
    make_run(tmp_path, "resnet50", run_id="standard", seed=5)
    assert source_run(load_runs(tmp_path), "smoke", "resnet50").run_id == "standard"
    assert source_run(load_runs(tmp_path), "paper", "resnet50").run_id == "decoy3"  # right for its own profile
    assert source_run(load_runs(tmp_path), "smoke", "vit") is None


def test_paper_profile_decoy_is_found_for_paper(tmp_path: Path) -> None:
    make_run(tmp_path, "resnet50", run_id="paperrun", profile="paper")
    assert source_run(load_runs(tmp_path), "paper", "resnet50").run_id == "paperrun"
    assert source_run(load_runs(tmp_path), "smoke", "resnet50") is None


def test_missing_formulation_counts_as_ours(tmp_path: Path) -> None:
    make_run(tmp_path, "mobilenetv3", run_id="legacy", formulation=None)
    assert source_run(load_runs(tmp_path), "smoke", "mobilenetv3").run_id == "legacy"


def test_lowest_seed_is_drawn(tmp_path: Path) -> None:
    make_run(tmp_path, "wrn28_10", run_id="a-seed2", seed=2, kept_offset=2)
    make_run(tmp_path, "wrn28_10", run_id="b-seed0", seed=0, kept_offset=0)
    make_run(tmp_path, "wrn28_10", run_id="c-seed1", seed=1, kept_offset=1)
    runs = load_runs(tmp_path)
    assert source_run(runs, "smoke", "wrn28_10").seed == 0
    assert source_run(runs.runs[::-1], "smoke", "wrn28_10").seed == 0  # any iterable of runs
    fig, _ = build_figure(7, runs, "smoke")
    try:
        assert list(fig.axes[0].get_lines()[0].get_ydata()) == [8, 7, 6, 5, 4]  # seed 0's widths
    finally:
        plt.close(fig)


def test_unknown_figure_number(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown figure 2"):
        render_figure(2, load_runs(tmp_path), "paper", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_other_profile_named_in_files(full: Path, tmp_path: Path) -> None:
    result = render_figure(6, load_runs(full), "mine", tmp_path / "x")
    assert [p.name for p in result.paths] == ["fig6-mine.png", "fig6-mine.pdf"]
    assert result.missing == ["table1 mobilenetv3 s2hpruner 15% (profile mine)"]
    assert "profile: mine" in result.notes[0]


def test_no_training_code_imported() -> None:
    source = Path(figures.__file__).read_text()
    for banned in ("import torch", "from core", "from method", "from baselines", "from experiments",
                   "import core", "import method", "import baselines", "import experiments"):
        assert banned not in source
    assert "analysis.figures" in sys.modules
