"""Figures 3-9 of the paper as pure functions of run records, written as PNG and PDF.

Every figure reads the S2HPruner runs at a 15% FLOPs target (one per architecture, see
`source_run`) through `analysis.records` only: no torch, no training code, so `make figures`
renders in seconds on a laptop. A missing run never stops a figure: its panel says which make
target produces it, and the returned `FigureResult.missing` lists it for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes or CI; must precede the pyplot import

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from analysis.records import Run, RunSet  # noqa: E402

FIGURE_NUMBERS = (3, 4, 5, 6, 7, 8, 9)

# (model, display name, experiment whose grid holds its 15% S2HPruner run), in the paper's order.
ARCHITECTURES: tuple[tuple[str, str, str], ...] = (
    ("resnet50", "ResNet-50", "table1"),
    ("mobilenetv3", "MobileNetV3", "table1"),
    ("wrn28_10", "WRN28-10", "table1"),
    ("vit", "ViT", "table3"),
    ("swin", "Swin", "table3"),
)
DISPLAY = {model: name for model, name, _ in ARCHITECTURES}
EXPERIMENT = {model: experiment for model, _, experiment in ARCHITECTURES}
SOURCE_EXPERIMENTS = tuple(sorted(set(EXPERIMENT.values())))
# Figures 5-9 show one architecture each, in the order of ARCHITECTURES.
PER_MODEL_FIGURE = {5 + i: model for i, (model, _, _) in enumerate(ARCHITECTURES)}

METHOD = "s2hpruner"
FLOPS_TARGET = 0.15
FORMULATION = "ours"

TITLES = {
    3: "Figure 3: FLOPs and top-1 per epoch (hard network)",
    4: "Figure 4: kept vs total width per group at 15% FLOPs",
    **{n: f"Figure {n}: kept width per group over training ({DISPLAY[m]})" for n, m in PER_MODEL_FIGURE.items()},
}

# One look for every figure: sized for a 7-inch-wide page, small ticks so dense grids stay legible.
STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "figure.titlesize": 9,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "pdf.fonttype": 42,  # embed TrueType so the PDF text stays editable/searchable
}
FIGURE_WIDTH = 7.0
FLOPS_COLOR = "tab:blue"
TOP1_COLOR = "tab:red"
TOTAL_COLOR = "#d0d7e1"
KIND_COLORS = {
    "residual": "#1f4e79",
    "interior": "#2e7d32",
    "mlp": "#8e3b96",
    "head": "#c15a00",
    "head-dim": "#b71c1c",
}
OTHER_KIND_COLOR = "#444444"
SUBPLOT_LETTERS = "abcde"


@dataclass
class FigureResult:
    """What one rendered figure holds, for the CLI and the report."""

    number: int
    paths: list[Path]
    panels: int
    missing: list[str]
    title: str
    # Lines printed under the title (profile warning, data fallbacks); empty for a clean paper figure.
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------- selection


def source_run(runs: RunSet | Iterable[Run], profile: str, model: str) -> Run | None:
    """The run a figure draws for `model`: done, S2HPruner, 15% target, standard formulation.

    Several seeds of that setting are replicas; the lowest seed is drawn so the figure does not
    change when more seeds finish.
    """
    pool = runs.runs if isinstance(runs, RunSet) else list(runs)
    experiment = EXPERIMENT.get(model)
    candidates = [
        run
        for run in pool
        if run.done
        and run.profile == profile
        and run.experiment == experiment
        and run.model == model
        and run.method == METHOD
        and run.flops_target is not None
        and math.isclose(run.flops_target, FLOPS_TARGET, abs_tol=1e-9)
        and (run.option("prune.options.formulation") or FORMULATION) == FORMULATION
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda run: (run.seed, run.run_id))


def missing_line(model: str, profile: str) -> str:
    """How the report names a source run that is not there yet."""
    return f"{EXPERIMENT[model]} {model} {METHOD} {FLOPS_TARGET:.0%} (profile {profile})"


def profile_label(profile: str) -> str | None:
    """The warning every non-paper figure carries, so a smoke plot is never mistaken for a result."""
    if profile == "paper":
        return None
    if profile == "smoke":
        return "profile: smoke (synthetic data, not comparable with the paper)"
    if profile == "mini":
        return "profile: mini (digits, narrow networks: not comparable with the paper)"
    return f"profile: {profile} (not comparable with the paper)"


def suptitle_text(number: int, profile: str, notes: Iterable[str] = ()) -> str:
    """The figure's title line followed by its notes (the profile warning first)."""
    lines = [figure_title(number)]
    label = profile_label(profile)
    if label:
        lines.append(label)
    lines.extend(note for note in notes if note != label)
    return "\n".join(lines)


def figure_title(number: int) -> str:
    if number not in TITLES:
        known = ", ".join(str(n) for n in FIGURE_NUMBERS)
        raise ValueError(f"unknown figure {number}: the suite draws figures {known}")
    return TITLES[number]


def output_paths(number: int, profile: str, out_dir: Path) -> list[Path]:
    """`fig{N}.png/.pdf`, with the profile in the name when it is not paper (never overwritten by smoke)."""
    stem = f"fig{number}" if profile == "paper" else f"fig{number}-{profile}"
    return [Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.pdf"]


# ------------------------------------------------------------------------------- data readers


@dataclass
class WidthTrajectory:
    """Kept units per group over training steps, and where they were read from."""

    steps: list[int]
    widths: list[list[int]]  # one list per step, one entry per group
    source: str  # "widths.jsonl" or "log.jsonl"

    @property
    def groups(self) -> int:
        return max((len(row) for row in self.widths), default=0)


def width_trajectory(run: Run) -> WidthTrajectory:
    """widths.jsonl when it has a curve (>= 2 points); else the per-epoch widths of log.jsonl.

    Short smoke runs log fewer steps than `widths_every`, so the epoch log is the only curve.
    """
    entries = [e for e in run.widths() if e.get("widths") is not None and e.get("step") is not None]
    source = "widths.jsonl"
    if len(entries) < 2:
        entries = [e for e in run.log() if e.get("widths") is not None and e.get("step") is not None]
        source = "log.jsonl"
    entries.sort(key=lambda e: e["step"])
    return WidthTrajectory([int(e["step"]) for e in entries], [list(e["widths"]) for e in entries], source)


def _percent(value: Any, scale: float) -> float | None:
    return None if value is None else float(value) * scale


def _series(log: list[dict[str, Any]], key: str, scale: float) -> tuple[list[float], list[float]]:
    """(epochs, values) of one log column, with the epochs that did not record it left out."""
    xs, ys = [], []
    for entry in log:
        value = _percent(entry.get(key), scale)
        if value is not None and entry.get("epoch") is not None and math.isfinite(value):
            xs.append(float(entry["epoch"]))
            ys.append(value)
    return xs, ys


# ----------------------------------------------------------------------------------- drawing


def _note(ax: Axes, text: str) -> None:
    """A centred message in an otherwise empty panel."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _compact(value: float, _pos: int | None = None) -> str:
    """Tick labels like 200k or 1.5M, so iteration axes fit in a small panel."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _panel_title(index: int, model: str) -> str:
    return f"({SUBPLOT_LETTERS[index]}) {DISPLAY[model]}"


def _five_panel_grid(fig: Figure, rows: int, cols: int) -> list[Axes]:
    """Five panels in a rows x cols grid; unused cells are removed, not counted."""
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for extra in axes[len(ARCHITECTURES):]:
        extra.remove()
    return axes[: len(ARCHITECTURES)]


def _draw_fig3(fig: Figure, runs: RunSet, profile: str, notes: list[str], missing: list[str]) -> int:
    axes = _five_panel_grid(fig, 2, 3)
    handles: list[Any] = []
    for index, ((model, _, _), ax) in enumerate(zip(ARCHITECTURES, axes)):
        ax.set_title(_panel_title(index, model))
        run = source_run(runs, profile, model)
        if run is None:
            missing.append(missing_line(model, profile))
            _note(ax, "no run: make fig3")
            continue
        log = run.log()
        flops = _series(log, "flops_ratio", 100.0)
        top1 = _series(log, "test_top1", 1.0)
        if not flops[0] and not top1[0]:
            _note(ax, "no FLOPs or top-1\nin log.jsonl")
            continue
        (flops_line,) = ax.plot(*flops, color=FLOPS_COLOR, marker=".", markersize=3, label="FLOPs (%)")
        target = ax.axhline(FLOPS_TARGET * 100, color=FLOPS_COLOR, linestyle=":", linewidth=0.8,
                            label="FLOPs target")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("FLOPs (% of dense)", color=FLOPS_COLOR)
        ax.tick_params(axis="y", colors=FLOPS_COLOR)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        twin = ax.twinx()
        (top1_line,) = twin.plot(*top1, color=TOP1_COLOR, marker=".", markersize=3, label="top-1 (%)")
        twin.set_ylim(bottom=0)
        twin.grid(False)
        twin.set_ylabel("top-1 accuracy (%)", color=TOP1_COLOR)
        twin.tick_params(axis="y", colors=TOP1_COLOR)
        handles = [flops_line, target, top1_line]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return len(axes)


def _draw_fig4(fig: Figure, runs: RunSet, profile: str, notes: list[str], missing: list[str]) -> int:
    axes = list(fig.subplots(len(ARCHITECTURES), 1, squeeze=False).flat)
    kinds_seen: dict[str, Any] = {}
    for index, ((model, _, _), ax) in enumerate(zip(ARCHITECTURES, axes)):
        title = _panel_title(index, model)
        run = source_run(runs, profile, model)
        if run is None:
            missing.append(missing_line(model, profile))
            ax.set_title(title)
            _note(ax, "no run: make fig4")
            continue
        architecture = run.architecture()
        groups = (architecture or {}).get("groups") or []
        if not groups:
            ax.set_title(title)
            _note(ax, "no architecture.json in the run folder")
            continue
        ratio = (architecture or {}).get("flops_ratio")
        ax.set_title(title if ratio is None else f"{title}: hard network at {float(ratio):.1%} FLOPs")
        positions = list(range(1, len(groups) + 1))
        sizes = [int(g.get("size", 0)) for g in groups]
        kept = [int(g.get("kept", 0)) for g in groups]
        kinds = [str(g.get("kind", "other")) for g in groups]
        total_bars = ax.bar(positions, sizes, width=0.8, color=TOTAL_COLOR, label="total")
        kinds_seen.setdefault("total", total_bars)
        colors = [KIND_COLORS.get(kind, OTHER_KIND_COLOR) for kind in kinds]
        ax.bar(positions, kept, width=0.55, color=colors)
        for kind in kinds:
            if kind not in kinds_seen:
                kinds_seen[kind] = plt.Rectangle((0, 0), 1, 1, color=KIND_COLORS.get(kind, OTHER_KIND_COLOR))
        ax.set_xlim(0.4, len(groups) + 0.6)
        ax.set_ylabel("channels / units")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=20, integer=True))
        ax.grid(axis="x", visible=False)
    if axes:
        axes[-1].set_xlabel("group index (layer)")
    if kinds_seen:
        labels = [name if name == "total" else f"kept: {name}" for name in kinds_seen]
        fig.legend(list(kinds_seen.values()), labels, loc="outside lower center",
                   ncols=min(len(labels), 6), frameon=False)
    return len(axes)


def _draw_width_grid(fig: Figure, number: int, runs: RunSet, profile: str, notes: list[str],
                     missing: list[str]) -> int:
    model = PER_MODEL_FIGURE[number]
    run = source_run(runs, profile, model)
    if run is None:
        missing.append(missing_line(model, profile))
        fig.set_layout_engine("constrained")
        _note(fig.subplots(), f"no run: make fig{number}")
        return 1
    trajectory = width_trajectory(run)
    architecture = run.architecture() or {}
    groups = architecture.get("groups") or []
    count = len(groups) or trajectory.groups
    if not trajectory.steps or count == 0:
        fig.set_layout_engine("constrained")
        _note(fig.subplots(), "no widths in widths.jsonl or log.jsonl")
        return 1
    if trajectory.source == "log.jsonl":
        notes.append("per-epoch widths from log.jsonl (widths.jsonl has fewer than 2 entries)")
    cols = min(6, count)
    rows = math.ceil(count / cols)
    # Fixed margins in inches instead of constrained layout: measuring every tick label of 36
    # panels costs about a second per save, and these panels all have the same small labels.
    title_lines = 1 + len(notes)
    top, bottom, left, right = 0.25 + 0.18 * title_lines, 0.45, 0.55, 0.1
    cell_height = 1.05
    height = top + bottom + cell_height * rows
    fig.set_size_inches(FIGURE_WIDTH, height)
    fig.subplots_adjust(left=left / FIGURE_WIDTH, right=1 - right / FIGURE_WIDTH, bottom=bottom / height,
                        top=1 - top / height, wspace=0.45, hspace=0.4)
    # No sharex: matplotlib lays out shared tick labels pairwise, which is quadratic in the panel
    # count; every group shares the same steps anyway.
    cells = list(fig.subplots(rows, cols, squeeze=False).flat)
    for extra in cells[count:]:
        extra.remove()
    for group, ax in enumerate(cells[:count]):
        info = groups[group] if group < len(groups) else {}
        label = info.get("kind") or info.get("name") or ""
        ax.set_title(f"{group + 1}: {label}" if label else f"layer {group + 1}", fontsize=6, pad=2)
        points = [(step, row[group]) for step, row in zip(trajectory.steps, trajectory.widths) if group < len(row)]
        if not points:
            _note(ax, "no data")
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, drawstyle="steps-post", color=KIND_COLORS.get(info.get("kind", ""), FLOPS_COLOR),
                linewidth=1.0)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
        ax.xaxis.set_major_formatter(FuncFormatter(_compact))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
        ax.tick_params(labelsize=5, pad=1, length=2, labelbottom=group + cols >= count)
    fig.supxlabel("training iteration (step)", fontsize=7, y=0.08 / height, va="bottom")
    fig.supylabel("kept channels / units", fontsize=7, x=0.08 / FIGURE_WIDTH, ha="left")
    return count


def build_figure(number: int, runs: RunSet, profile: str) -> tuple[Figure, FigureResult]:
    """Draw figure `number` without saving it (tests inspect it; the caller must close it).

    The result's `paths` is empty until `render_figure` writes the files.
    """
    title = figure_title(number)
    notes: list[str] = []
    missing: list[str] = []
    label = profile_label(profile)
    if label:
        notes.append(label)
    with matplotlib.rc_context(STYLE):
        if number == 3:
            fig = plt.figure(figsize=(FIGURE_WIDTH, 5.0), layout="constrained")
            panels = _draw_fig3(fig, runs, profile, notes, missing)
        elif number == 4:
            fig = plt.figure(figsize=(FIGURE_WIDTH, 9.0), layout="constrained")
            panels = _draw_fig4(fig, runs, profile, notes, missing)
        else:
            fig = plt.figure(figsize=(FIGURE_WIDTH, 3.0))  # the grid sets its own margins
            panels = _draw_width_grid(fig, number, runs, profile, notes, missing)
        fig.suptitle(suptitle_text(number, profile, notes))
    return fig, FigureResult(number=number, paths=[], panels=panels, missing=missing, title=title, notes=notes)


def render_figure(number: int, runs: RunSet, profile: str, out_dir: Path) -> FigureResult:
    """Draw figure `number` from the `profile` runs and write it as PNG and PDF under `out_dir`."""
    figure_title(number)  # fail on an unknown number before touching the output folder
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, result = build_figure(number, runs, profile)
    try:
        paths = output_paths(number, profile, out_dir)
        with matplotlib.rc_context(STYLE):
            for index, path in enumerate(paths):
                fig.savefig(path)
                if index == 0:
                    # Keep the layout the first save computed: redoing it for the PDF doubles the time.
                    fig.set_layout_engine("none")
    finally:
        plt.close(fig)
    result.paths = paths
    return result
