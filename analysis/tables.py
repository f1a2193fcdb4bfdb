"""Tables 1-10 of the paper as pure functions of run records.

Each `tableN(runs, profile)` returns a `Grid` in the paper's layout (same rows, columns and
order). A run belongs to Table N when it carries a cell label of the grid `tableN` (written by
`python -m experiments run tableN`, see `RunDir.cells`: Table 5's row 2 is Table 1's run, and
carries Table 5's labels too), and its cell is read from those labels (the switches of Table 5,
the formulation of Table 6, the epochs of Table 7, ...) or, for the benchmark tables, from the
record's model, method and target. Runs with equal keys are seeds of one cell and are averaged
(`analysis.cells`: a `seed` label never splits a cell, except Table 9's, whose columns are seeds).
Each table's key is a function of its grid's rows of the run frame (`analysis.frame`), and the
cells are one groupby of those rows; the paper's numbers of Tables 1-3 and 10 are joined onto the
table's layout from their CSV (`analysis.paper.join`).
`tests/analysis/test_tables.py` checks that every cell the experiment grids expand to lands on
exactly one cell here; `tests/analysis/test_golden.py` that the renders stay those of the code
before the frame.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

from analysis import paper
from analysis.cells import SEED_LABEL, Builder, Value, tuples
from analysis.frame import cells_of, frame, label, metric, option, profile_counts
from analysis.grid import Comparison, Grid, Group, Row, Stat
from analysis.records import Run, RunSet, majority
from analysis.table10 import table10, table10_exports  # noqa: F401 (bench.cli reads it from here)
from core import catalog  # standard library only
from core.errors import did_you_mean  # standard library only

TableFunction = Callable[[RunSet, str], Grid]
TABLES: dict[int, TableFunction] = {}  # `table(N)` fills it: the paper's ten below, a plugin's own


def table(number: int) -> Callable[[TableFunction], TableFunction]:
    """Register `tableN(runs, profile) -> Grid` as Table `number`: `python -m analysis table N`,
    `python -m analysis tables`, the report and `make tableN` (with `experiments/tableN.yaml`)
    render it. A module named in `$S2H_PLUGINS` (core/catalog.py) may register a table of its own."""
    def register(function: TableFunction) -> TableFunction:
        if TABLES.get(number, function) is not function:
            raise ValueError(f"table {number} is registered twice ({TABLES[number].__name__}, {function.__name__})")
        TABLES[number] = function
        return function
    return register


def table_numbers() -> tuple[int, ...]:
    """Every registered table's number, the plugins' included."""
    catalog.load_plugins()
    return tuple(sorted(TABLES))


CNNS = catalog.models("cnn")
TRANSFORMERS = catalog.models("transformer")
TARGETS = (0.15, 0.35, 0.55)
MODEL_NAMES = {name: label for name, (label, _) in catalog.MODELS.items()}
SWITCHES = ("g_l_theta", "g_g_hard_theta", "g_g_soft_theta", "g_l_w", "g_g_w")


def _target(value: float | None) -> float | None:
    """A FLOPs target as a cell key holds it (Python's rounding; NaN, no target, as None)."""
    return None if value is None or value != value else round(float(value), 4)


def _percent(target: float) -> str:
    return f"{round(target * 100)}%"


def _flops_percent(done: pd.DataFrame) -> pd.Series:
    """The exported network's FLOPs in % of the dense network's (Tables 4 and 9 print these)."""
    return 100 * metric(done, "flops_ratio")


def _flag(value: object) -> bool | None:
    """A boolean label ('True', 'true', 'False', ...), None when the cell has no such label."""
    return value.strip().lower() == "true" if isinstance(value, str) else None


def _by_profile(value: str) -> dict[str, str]:
    """A label of a value chosen by profile (`paper:10/smoke:1`) as {profile: value}; a plain
    value as {"": value}."""
    pairs = [part.partition(":") for part in value.split("/")]
    if all(sep for _, sep, _ in pairs):
        return {name: v for name, _, v in pairs}
    return {"": value}


# ----------------------------------------------------------------------------- Tables 1-3


def _benchmark(number: int, runs: RunSet, profile: str, models: tuple[str, ...], methods: tuple[str, ...],
               dataset: str) -> Grid:
    def key(rows: pd.DataFrame) -> pd.Series:
        dense = tuples(rows, rows["model"], "dense")
        pruned = tuples(rows, rows["model"], rows["method"], rows["flops_target"].map(_target))
        return pruned.where(rows["method"] != "dense", dense).where(rows["model"].isin(models))

    b = Builder(number, runs, profile, key)
    dense_paper = paper.join(pd.DataFrame({"model": models, "method": "dense"}), number, "top1")
    groups = []
    for model, reference in zip(models, dense_paper):
        dense = b.slot((model, "dense"), f"table{number} {model} dense")
        groups.append(Group(MODEL_NAMES[model], len(TARGETS), b.entry(dense, "top1", reference)))
    layout = pd.DataFrame([(model, method, str(target)) for method in methods for model in models for target in TARGETS],
                          columns=["model", "method", "flops_target"])
    references = iter(paper.join(layout, number, "top1"))  # in the layout's order: by method, model, target
    rows = []
    for method in methods:
        cells: list[Comparison | str] = []
        for model in models:
            for target in TARGETS:
                slot = b.slot((model, method, target), f"table{number} {model} {method} {_percent(target)}", target)
                cells.append(b.entry(slot, "top1", next(references), flops_mark=True))
        rows.append(Row([catalog.label(method)], cells))
    title = (f"Table {number}: pruning methods on {dataset}, top-1 (%) of dense and pruned networks at "
             "15/35/55 % of the dense FLOPs")
    return b.grid(title, ["Method"], [_percent(t) for t in TARGETS] * len(models), rows, groups)


@table(1)
def table1(runs: RunSet, profile: str) -> Grid:
    return _benchmark(1, runs, profile, CNNS, catalog.compared(), "CIFAR-100")


@table(2)
def table2(runs: RunSet, profile: str) -> Grid:
    return _benchmark(2, runs, profile, CNNS, catalog.compared(), "Tiny ImageNet")


@table(3)
def table3(runs: RunSet, profile: str) -> Grid:
    return _benchmark(3, runs, profile, TRANSFORMERS, catalog.compared(transformers=True), "CIFAR-100 (transformers)")


# ----------------------------------------------------------------------------- Table 4


def _extra_epochs(done: pd.DataFrame) -> pd.Series:
    """Table 4's E_ex of our runs: 0 for a run trained from scratch, unknown for one started from another's."""
    return option(done, "prune.options.init_from").map(lambda init: 0.0 if init is None else None)


@table(4)
def table4(runs: RunSet, profile: str) -> Grid:
    def key(rows: pd.DataFrame) -> pd.Series:
        pruned = tuples(rows, "s2hpruner", rows["flops_target"].map(_target)).where(rows["method"] == "s2hpruner")
        return pruned.where(rows["method"] != "dense", tuples(rows, "dense"))

    b = Builder(4, runs, profile, key)
    dense = b.slot(("dense",), "table4 resnet50 dense (the unpruned top-1)")
    dense_top1 = dense.stat("top1").mean
    rows = []
    for row in paper.rows(4):
        numbers = [paper.number(row[k]) for k in ("unpruned_top1", "top1", "top1_drop", "flops_percent",
                                                  "epochs_pruning", "epochs_extra")]
        if row["method"] != "s2hpruner":
            published = [Comparison(paper=v, decimals=0 if i >= 4 else 2, published=True) for i, v in enumerate(numbers)]
            rows.append(Row([f"{row['method']} (published)"], published))
            continue
        target = float(row["flops_target"])
        slot = b.slot(("s2hpruner", target), f"table4 resnet50 s2hpruner {_percent(target)}", target)
        unpruned = b.entry(dense, "top1", numbers[0])
        pruned = b.entry(slot, "top1", numbers[1], flops_mark=True)
        drop = b.entry(slot, lambda done: (float("nan") if dense_top1 is None else dense_top1) - metric(done, "top1"),
                       numbers[2])
        flops = b.entry(slot, _flops_percent, numbers[3])
        epochs = b.entry(slot, lambda done: option(done, "train.epochs"), numbers[4], decimals=0)
        extra = b.entry(slot, _extra_epochs, numbers[5], decimals=0)
        rows.append(Row([f"Ours ({_percent(target)} target)"], [unpruned, pruned, drop, flops, epochs, extra]))
    notes = ["Rows marked (published) are other papers' numbers as Table 4 prints them; the suite does not re-run "
             "them. Our rows: top-1 drop = our dense top-1 minus the pruned top-1; FLOPs (%) as achieved; "
             "E_pr = training epochs of the run, E_ex = extra epochs (0: S2HPruner has no pre-training or "
             "fine-tuning stage)."]
    return b.grid("Table 4: ResNet-50 on ImageNet, top-1 (%) of dense and pruned networks and the FLOPs kept",
                  ["Method"], ["Unpruned top-1 (%)", "Pruned top-1 (%)", "Top-1 drop (%)", "FLOPs (%)", "E_pr", "E_ex"],
                  rows, notes=notes)


# ----------------------------------------------------------------------------- Tables 5-8


@table(5)
def table5(runs: RunSet, profile: str) -> Grid:
    def key(rows: pd.DataFrame) -> pd.Series:
        switches = tuples(rows, *(label(rows, f"prune.options.{s}").map(_flag) for s in SWITCHES))
        return switches.map(lambda found: None if None in found else found)

    b = Builder(5, runs, profile, key)
    rows = []
    for row in paper.rows(5):
        switches = tuple(row[s] == "true" for s in SWITCHES)
        name = " ".join(f"{s}={'on' if on else 'off'}" for s, on in zip(SWITCHES, switches))
        slot = b.slot(switches, f"table5 row {row['row']} ({name})", 0.15)
        marks = ["✓" if on else "✗" for on in switches]
        rows.append(Row(marks, [b.entry(slot, "top1", paper.number(row["top1"]), flops_mark=True)]))
    label_columns = ["g L→θ⊙w→θ", "g G→θ⟨m̂⟩→θ", "g G→θ⊙w→θ", "g L→θ⊙w→w", "g G→θ⊙w→w"]
    notes = ["Columns: the five gradient terms of Algorithm 1 (prune.options.g_l_theta, g_g_hard_theta, "
             "g_g_soft_theta, g_l_w, g_g_w); g R→w is always on. FLOPs target 15 %."]
    return b.grid("Table 5: the influence of each gradient term of Algorithm 1 (ResNet-50, CIFAR-100, 15 % FLOPs)",
                  label_columns, ["Top-1 Acc (%)"], rows, notes=notes)


@table(6)
def table6(runs: RunSet, profile: str) -> Grid:
    def key(rows: pd.DataFrame) -> pd.Series:
        return label(rows, "prune.options.formulation")

    b = Builder(6, runs, profile, key)
    rows = []
    for row in paper.rows(6):
        formulation = row["formulation"]
        slot = b.slot(formulation, f"table6 {formulation}", 0.15)
        cells: list[Comparison | str] = [
            b.entry(slot, "gap_js", paper.number(row["js"]), scientific=True),
            b.entry(slot, "gap_l2", paper.number(row["l2"]), scientific=True),
            b.entry(slot, "top1_original", paper.number(row["top1_original"])),
            b.entry(slot, "top1_soft", paper.number(row["top1_soft"])),
            b.entry(slot, "top1", paper.number(row["top1_hard"]), flops_mark=True),
        ]
        rows.append(Row([{"alt1": "Alt 1", "alt2": "Alt 2", "ours": "Ours"}[formulation]], cells))
    notes = ["JS and L2: the gap between the hard network and its direct supervision (Alt 1: the 0.1 label-smoothed "
             "ground truth; Alt 2: the original network; Ours: the soft network), averaged over the test set. "
             "θ, θ⊙w, θ⟨m̂⟩: top-1 of the original, soft and hard networks."]
    return b.grid("Table 6: gap of the alternative formulations of problem 1 (ResNet-50, CIFAR-100, 15 % FLOPs)",
                  ["Method"], ["JS", "L2", "θ", "θ⊙w", "θ⟨m̂⟩"], rows, notes=notes)


def _fine_tuning(epochs: object, run: Run) -> tuple[str, int] | None:
    """Table 7's fine-tuning cell of a run by its `train.epochs` label: the paper's epochs (a plain
    label's value, else the run's own); None for a cell without that label."""
    if not isinstance(epochs, str):
        return None
    by_profile = _by_profile(epochs)
    return "fine_tune", int(by_profile.get("paper", by_profile.get("", run.option("train.epochs"))))


@table(7)
def table7(runs: RunSet, profile: str) -> Grid:
    def key(rows: pd.DataFrame) -> pd.Series:
        tuned = pd.Series(list(map(_fine_tuning, label(rows, "train.epochs"), rows["run"])), index=rows.index,
                          dtype=object)
        return tuned.where(label(rows, "prune.options.formulation") != "soft_only", tuples(rows, "soft_only"))

    b = Builder(7, runs, profile, key)
    paper_rows = paper.rows(7)
    soft_only = b.slot(("soft_only",), "table7 soft-only network (trained alone)", 0.15)
    paper_epochs = [int(r["epochs"]) for r in paper_rows if int(r["epochs"]) > 0]
    # Our epochs per column: the grid's label for this profile, from the runs or the grid's manifest.
    ours: dict[int, int] = {}
    for labels in [*runs.manifest_labels("table7", profile), *cells_of(runs, "table7", profile)["labels"]]:
        if "train.epochs" in labels:
            epochs = _by_profile(labels["train.epochs"])
            if profile in epochs and "paper" in epochs:
                ours[int(epochs["paper"])] = int(epochs[profile])
    soft_cells: list[Comparison | str] = [b.entry(soft_only, "top1_soft", paper.lookup(7, "top1_soft", epochs="0"))]
    hard_cells: list[Comparison | str] = [b.entry(soft_only, "top1", None)]
    columns = ["0 (soft-only)"]
    for paper_e in paper_epochs:
        ours_e = ours.get(paper_e, paper_e if profile == "paper" else None)
        slot = b.slot(("fine_tune", paper_e), f"table7 fine-tune {paper_e if ours_e is None else ours_e} epochs", 0.15)
        soft_cells.append(b.entry(slot, "top1_soft", paper.lookup(7, "top1_soft", epochs=str(paper_e))))
        hard_cells.append(b.entry(slot, "top1", paper.lookup(7, "top1_hard", epochs=str(paper_e)), flops_mark=True))
        columns.append(str(paper_e) if ours_e in (paper_e, None) else f"{paper_e} (ours: {ours_e})")
    notes = ["Columns: fine-tuning epochs of Algorithm 1 (0.1x learning rate) from the soft-only network; "
             "column 0 is the soft-only network itself (the paper's 79.41 % is in its caption)."]
    return b.grid("Table 7: top-1 (%) of the soft and hard networks after fine-tuning a soft-only network",
                  ["Top-1 Acc (%)"], columns, [Row(["θ⊙w (soft)"], soft_cells), Row(["θ⟨m̂⟩ (hard)"], hard_cells)],
                  notes=notes)


@table(8)
def table8(runs: RunSet, profile: str) -> Grid:
    def key(rows: pd.DataFrame) -> pd.Series:
        return label(rows, "network")

    b = Builder(8, runs, profile, key)
    cells: list[Comparison | str] = []
    columns = []
    for row in paper.rows(8):
        network = row["network"]
        slot = b.slot(network, f"table8 {network}", 0.15)
        cells.append(b.entry(slot, "top1", paper.number(row["top1"]), flops_mark=True))
        columns.append("Ours" if network == "ours" else f"Rand {network[-1]}")
    notes = ["Rand k: random per-group widths at 15 % FLOPs (seed k); Ours: the widths S2HPruner found (Table 1's "
             "ResNet-50 15 % run); each trained from scratch."]
    return b.grid("Table 8: pruned ResNet-50 architectures (15 % FLOPs) trained from scratch, CIFAR-100",
                  ["Network"], columns, [Row(["Top-1 Acc (%)"], cells)], notes=notes)


# ----------------------------------------------------------------------------- Table 9 (Table 10: analysis.table10)


@table(9)
def table9(runs: RunSet, profile: str) -> Grid:
    def key(rows: pd.DataFrame) -> pd.Series:
        return label(rows, SEED_LABEL).map(lambda seed: int(seed) if isinstance(seed, (str, int)) else None)

    b = Builder(9, runs, profile, key)
    paper_rows = paper.rows(9)
    top1_cells: list[Comparison | str] = []
    flops_cells: list[Comparison | str] = []
    means_top1, means_flops = [], []
    for seed, row in enumerate(paper_rows):
        slot = b.slot(seed, f"table9 #{seed + 1}", 0.15)
        top1_cells.append(b.entry(slot, "top1", paper.number(row["top1"]), flops_mark=True))
        flops_cells.append(b.entry(slot, _flops_percent, paper.number(row["flops_percent"])))
        means_top1.append(top1_cells[-1].ours.mean)  # type: ignore[union-attr]
        means_flops.append(flops_cells[-1].ours.mean)  # type: ignore[union-attr]
    paper_top1 = [float(r["top1"]) for r in paper_rows]
    paper_flops = [float(r["flops_percent"]) for r in paper_rows]
    top1_cells.append(Comparison(Stat(tuple(v for v in means_top1 if v is not None)), sum(paper_top1) / len(paper_top1)))
    flops_cells.append(Comparison(Stat(tuple(v for v in means_flops if v is not None)), sum(paper_flops) / len(paper_flops)))
    columns = [f"#{i + 1}" for i in range(len(paper_rows))] + ["mean ± std"]
    notes = ["#k is seed k-1 (#1 is Table 1's run). The last column is the mean and sample standard deviation over "
             "the seeds present (the paper's column: the mean of its four runs)."]
    return b.grid("Table 9: S2HPruner's robustness to the random seed (ResNet-50, CIFAR-100, 15 % FLOPs)",
                  ["Exp"], columns, [Row(["Top-1 Acc (%)"], top1_cells), Row(["FLOPs (%)"], flops_cells)], notes=notes)


table(10)(table10)  # defined in analysis/table10.py, which this module imports


# ----------------------------------------------------------------------------- any grid

GRID_METRICS: tuple[tuple[str, Value, int], ...] = (
    ("Top-1 (%)", "top1", 2), ("FLOPs ratio", "flops_ratio", 3),
    ("Params (M)", lambda done: metric(done, "params") / 1e6, 3))


def _cell_key(labels: dict[str, Any]) -> str:
    """A grid's cell as text: its labels less the seed (a cell's seeds are one row)."""
    return json.dumps({k: v for k, v in labels.items() if k != SEED_LABEL}, sort_keys=True)


def grid_table(runs: RunSet, experiment: str, profile: str | None = None, grid_file: str | None = None) -> Grid:
    """Any grid, one's own included, from the labels its runs carry: a row per cell (the grid's
    axes as label columns, in the order the manifest of its last expansion lists the cells, else
    as the runs carry them), then top-1, FLOPs ratio and parameters, averaged over seeds."""
    profile = profile or majority(profile_counts(runs, experiment))
    b = Builder(0, runs, profile, lambda rows: rows["labels"].map(_cell_key), experiment)
    cells = runs.manifest_labels(experiment, profile) or list(cells_of(runs, experiment, profile)["labels"])
    order = list(dict.fromkeys(map(_cell_key, cells)))
    axes = list(dict.fromkeys(k for labels in cells for k in labels if k != SEED_LABEL))
    rows = []
    for cell_key in order:
        labels = json.loads(cell_key)
        targets = b.index.get(cell_key, b.empty)["flops_target"].dropna()
        slot = b.slot(cell_key, f"{experiment} " + (" ".join(f"{k}={v}" for k, v in labels.items()) or "(single cell)"),
                      float(targets.iloc[0]) if len(targets) else None)
        entries: list[Comparison | str] = [b.entry(slot, value, None, decimals=decimals, flops_mark=value == "top1")
                                           for _, value, decimals in GRID_METRICS]
        rows.append(Row([labels.get(axis, "") for axis in axes], entries))
    grid = b.grid(f"{experiment}: top-1, FLOPs and parameters per cell", axes or ["cell"],
                  [name for name, _, _ in GRID_METRICS], rows)
    grid.grid_file = grid_file or experiment
    return grid


def grid_name(path_or_name: str) -> str:
    """The `name:` of a grid YAML file, or the argument itself when it is a name."""
    path = Path(path_or_name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ValueError(f"grid file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a grid file holds a mapping (name:, base:, blocks:, ...), not a {type(data).__name__}")
        return str(data.get("name") or path.stem)
    return path_or_name


def known_grid(runs: RunSet, name: str) -> None:
    """A grid named on the command line must be one the records or manifests know; a misspelled
    name is a one-line ValueError with the closest known one, not an empty table."""
    known = {None if pd.isna(e) else e for e in frame(runs)["experiment"]} | {e for e, _ in runs.manifests}
    if name in known:
        return
    hint = did_you_mean(name, sorted(str(k) for k in known) + [f"table{n}" for n in TABLES])
    raise ValueError(f"no runs or manifest of a grid named {name!r} in these results{hint}")


def choose_profile(runs: RunSet, number: int) -> str:
    """The profile of most of the table's runs (paper on a tie or with none): the default view."""
    return majority(profile_counts(runs, f"table{number}"))


def build(number: int, runs: RunSet, profile: str | None = None) -> Grid:
    """Table `number` from `runs` (profile chosen by `choose_profile` when not given)."""
    if number not in table_numbers():
        raise ValueError(f"no table {number}: the tables are {', '.join(map(str, table_numbers()))}")
    return TABLES[number](runs, profile or choose_profile(runs, number))


TIDY_COLUMNS = ("table", "profile", "row", "column", "ours", "std", "n", "paper", "diff", "published", "failed", "marks")


def tidy_frame(grid: Grid) -> pd.DataFrame:
    """The tidy form: one row per entry (row, column, ours, std, n, paper, diff, ...), its values
    kept as Python objects (None where there is none), so that the CSV prints each as Python does
    and an integer never as 3.0."""
    return pd.DataFrame([(grid.number, grid.profile, row, column, entry.ours.mean, entry.ours.std, entry.ours.n,
                          entry.paper, entry.diff, entry.published, entry.failed, entry.marks)
                         for row, column, entry in grid.entries()], columns=list(TIDY_COLUMNS), dtype=object)
