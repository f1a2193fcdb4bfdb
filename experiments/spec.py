"""Experiment files: a paper table or figure as a grid of run configs, expanded before submission.

An experiment is one YAML file (`experiments/<name>.yaml`, or any path in the same format):

    name: table1
    title: "Table 1: pruning methods on CIFAR-100"
    gpu_hours: {paper: 2900}          # the estimate shown by `python -m experiments list`
    base: {data.name: cifar100}       # dotted config keys, common to every cell
    bundles:                          # named override sets, used as axis values below
      method:
        s2hpruner: {prune.method: s2hpruner, prune.options.mask_rule: expected_width}
        rst_s: {prune.method: rst_s}
    blocks:                           # the cells are the union of the blocks' cells
      - product: {model.name: [resnet50, wrn28_10], method: [s2hpruner, rst_s],
                  prune.flops_target: [0.15, 0.35, 0.55]}
      - set: {prune.method: dense}    # overrides for this block only
        product: {model.name: [resnet50, wrn28_10]}
      - zip: {seed: [1, 2, 3], ...}   # equal-length lists, taken together (one cell per position)

A block's cells are the product of its `product` axes times the rows of its `zip` axes. An
axis named like a config key takes values; an axis named like a bundle takes bundle names.

A value may be:
- a plain value;
- `{paper: x, mini: y, smoke: z}`: chosen by profile;
- `{times: k}`: k times the value the key has below it (the recipe's), e.g. Table 10's
  double schedule `train.epochs: {times: 2}` (integers are rounded, at least 1);
- on the `method` axis, `{catalog: compared}` (Tables 1-3's rows: the baselines, then
  S2HPruner; `transformers: true` for Table 3's) or `{catalog: baselines}`: the methods
  `core.catalog` declares, each with its card's bundle unless the file defines that bundle;
- `{run: {experiment: table1, where: {model.name: resnet50, method: s2hpruner, ...}}}`: the run
  (`run:<experiment>/<run_id>`, found under the output root when the run starts) of the one
  matching cell of that experiment (same profile and overrides); the cell
  then needs that run, which is added to this experiment's cells if it is another's.

A cell's config is built in layers: the embedded defaults, the profile's recipe for its
(data.name, model.name) from `recipes.yaml` and its keys for the cell's `prune.method` (the
file's `methods` section), `base`, the block's `set`, the axis values (the
`mini` and `smoke` profiles then put their offline dataset, the recipe's `data.*` keys, in place
of the cell's own), then the command line's `key=value` overrides (`method:key=value` applies to cells of that method only)
and `--sweep` axes. A cell may set `experiment` to another experiment's name: it then *is*
that experiment's run (same run id, same folder), reused instead of trained again.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from core import catalog
from core.config import PROFILES, RunConfig, compose
from core.preflight import Preflight
from core.resolve import resolve
from core.errors import ConfigError, did_you_mean
from core.records import RunDir, run_ref
from experiments.recipes import RECIPES, dataset_recipe, method_recipe, profile_seeds

HERE = Path(__file__).resolve().parent
# The grids' profiles: `paper` is Appendix A; `mini` (real images shipped in a package, digits)
# and `smoke` (synthetic images) are its laptop-sized stand-ins, which replace each cell's dataset.
GRID_PROFILES = ("smoke", "mini", "paper")
OFFLINE_PROFILES = ("smoke", "mini")
METHOD_AXIS = "method"
CATALOG_LISTS = {"compared": catalog.compared, "baselines": catalog.baselines}
KNOWN_KEYS = {"name", "title", "make", "gpu_hours", "base", "bundles", "blocks", "notes"}
BLOCK_KEYS = {"set", "product", "zip"}


@dataclass
class Cell:
    """One run of an experiment: its labels, its config and the runs it needs first."""

    owner: str  # the experiment file it was expanded from
    labels: dict[str, str]
    layers: dict[str, Any]  # dotted key -> value, before the command-line overrides
    overrides: list[str] = field(default_factory=list)
    cfg: RunConfig | None = None
    needs: list["Cell"] = field(default_factory=list)

    @property
    def experiment(self) -> str:
        return str(self.layers.get("experiment", self.owner))

    @property
    def reused(self) -> bool:
        return self.experiment != self.owner

    @property
    def run_dir(self) -> RunDir:
        assert self.cfg is not None, "cell not validated"
        return RunDir.for_config(self.cfg)

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.labels.items()) or "(single cell)"


@dataclass
class Experiment:
    name: str
    path: Path
    title: str
    gpu_hours: dict[str, float]
    base: dict[str, Any]
    bundles: dict[str, dict[str, dict[str, Any]]]
    blocks: list[dict[str, Any]]
    header: str


def experiment_names() -> list[str]:
    """table1 ... table10, then fig3 ... fig9."""
    names = [p.stem for p in HERE.glob("*.yaml") if p.name != RECIPES.name]
    return sorted(names, key=lambda n: (not n.startswith("table"), int("".join(filter(str.isdigit, n)) or 0), n))


def find(name_or_path: str) -> Path:
    """An experiment by name (`table1`) or the path of a user's own YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not path.is_file():
            raise ConfigError(f"experiment file not found: {path}")
        return path
    path = HERE / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown experiment {name_or_path!r}{did_you_mean(name_or_path, experiment_names())}; "
                          "`python -m experiments list` shows them")
    return path


def _read(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    header = "\n".join(line[1:].strip() for line in itertools.takewhile(lambda l: l.startswith("#"), text.splitlines()))
    return data, header


def load_experiment(name_or_path: str) -> Experiment:
    path = find(name_or_path)
    data, header = _read(path.resolve())
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
    blocks = data.get("blocks") or [{}]
    for i, block in enumerate(blocks):
        bad = set(block) - BLOCK_KEYS
        if bad:
            raise ConfigError(f"{path}: block {i + 1} has unknown key(s) {sorted(bad)}; known: {sorted(BLOCK_KEYS)}")
    return Experiment(
        name=str(data.get("name", path.stem)),
        path=path,
        title=str(data.get("title", path.stem)),
        gpu_hours=dict(data.get("gpu_hours") or {}),
        base=dict(data.get("base") or {}),
        bundles=dict(data.get("bundles") or {}),
        blocks=blocks,
        header=header,
    )


# ----------------------------------------------------------------------------- expansion


def _block_cells(exp: Experiment, block: dict[str, Any]) -> Iterable[tuple[dict[str, str], dict[str, Any]]]:
    """(labels, values) of each cell of one block, before recipes and references."""
    product = dict(block.get("product") or {})
    zipped = dict(block.get("zip") or {})
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise ConfigError(f"{exp.path}: the lists of a `zip` block must have equal lengths, got {sorted(lengths)}")
    rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())] if zipped else [{}]
    axes = [(axis, _catalog_values(exp, axis, values)) for axis, values in product.items()]
    bundles_of = {axis: _bundles(exp, axis) for axis in [*product, *zipped]}  # None: a config key
    for combo in itertools.product(*(values for _, values in axes)):
        for row in rows:
            labels: dict[str, str] = {}
            values: dict[str, Any] = dict(block.get("set") or {})
            for axis, value in [*zip((a for a, _ in axes), combo), *row.items()]:
                bundles = bundles_of[axis]
                if bundles is not None:
                    if value not in bundles:
                        raise ConfigError(f"{exp.path}: axis {axis!r} has no bundle {value!r}; known: {sorted(bundles)}")
                    values.update(bundles[value])
                    labels[axis] = str(value)
                elif "." in axis or axis in {f.name for f in dataclasses.fields(RunConfig)}:
                    values[axis] = value
                    labels[axis] = _label(value)
                else:
                    raise ConfigError(f"{exp.path}: axis {axis!r} is neither a config key nor a bundle")
            yield labels, values


def _bundles(exp: Experiment, axis: str) -> dict[str, dict[str, Any]] | None:
    """The bundles an axis takes: the file's, and for `method` every declared method's card
    (`core.catalog`; the file's own bundle of a name wins)."""
    if axis != METHOD_AXIS:
        return exp.bundles.get(axis)
    cards = {name: card.cell for name in catalog.compared() if (card := catalog.card(name)) is not None}
    return {**cards, **exp.bundles.get(axis, {})}


def _catalog_values(exp: Experiment, axis: str, values: Any) -> list[Any]:
    """An axis's list of values; `{catalog: compared | baselines, transformers: true}` on the
    `method` axis is the catalog's methods (so a declared baseline joins every grid that
    compares the methods, with no grid file edited)."""
    if not isinstance(values, dict):
        return list(values)
    if axis != METHOD_AXIS or set(values) - {"catalog", "transformers"} or values.get("catalog") not in CATALOG_LISTS:
        raise ConfigError(f"{exp.path}: axis {axis!r} takes a list, or on {METHOD_AXIS!r} "
                          f"{{catalog: {' | '.join(CATALOG_LISTS)}, transformers: true}}; got {values}")
    return list(CATALOG_LISTS[values["catalog"]](bool(values.get("transformers", False))))


def _label(value: Any) -> str:
    if isinstance(value, dict) and set(value) <= set(PROFILES):
        return "/".join(f"{k}:{v}" for k, v in value.items())
    if isinstance(value, dict) and "times" in value:
        return f"x{value['times']}"
    return str(value)


def _resolve_value(key: str, value: Any, below: dict[str, Any], profile: str, where: str) -> Any:
    if isinstance(value, dict) and value and set(value) <= set(PROFILES):
        if profile not in value:
            raise ConfigError(f"{where}: {key} has no value for profile {profile!r}")
        return _resolve_value(key, value[profile], below, profile, where)
    if isinstance(value, dict) and set(value) == {"times"}:
        if key not in below:
            raise ConfigError(f"{where}: {key}: {{times: ...}} needs a value from the recipe to scale")
        scaled = below[key] * value["times"]
        return max(1, round(scaled)) if isinstance(below[key], int) else scaled
    return value


@dataclass
class Expansion:
    """The cells of an experiment at a profile, validated; reused runs of other experiments included."""

    experiment: Experiment
    profile: str
    cells: list[Cell]  # this experiment's own cells, in file order
    extra: list[Cell]  # other experiments' cells these need (referenced runs)

    @property
    def all_cells(self) -> list[Cell]:
        return [*self.extra, *self.cells]


def preflight(expansions: Iterable[Expansion]) -> None:
    """The pre-flight step of a submission (`core.preflight`), before anything is queued: each
    network of its cells built once, every cell checked on it; the runs the submission queues
    (every cell not yet done) count as present for the cells that read them. A problem raises
    with the cell named."""
    cells = list({str(c.run_dir.path): c for e in expansions for c in e.all_cells}.values())
    flight = Preflight(str(c.run_dir.path) for c in cells if c.run_dir.status() != "done")
    for cell in cells:
        try:
            flight.check(cell.cfg)
        except ConfigError as exc:
            raise ConfigError(f"{cell.experiment} cell [{cell.describe()}]: {exc}") from None


def expand(
    name_or_path: str,
    profile: str = "smoke",
    overrides: Iterable[str] = (),
    sweeps: Iterable[str] = (),
    output_root: str | None = None,
    validate: bool = True,
    _stack: tuple[str, ...] = (),
) -> Expansion:
    """Every cell of an experiment with its resolved config; the first bad cell raises, named."""
    if profile not in GRID_PROFILES:
        raise ConfigError(f"--profile must be one of {', '.join(GRID_PROFILES)}, got {profile!r}")
    exp = load_experiment(name_or_path)
    if exp.name in _stack:
        raise ConfigError(f"{exp.path}: circular run references through {' -> '.join(_stack)}")
    overrides, sweeps = list(overrides), list(sweeps)
    raw = [cell for block in exp.blocks for cell in _block_cells(exp, block)]
    raw = _apply_sweeps(raw, sweeps)
    raw = _replicate_seeds(raw, 1 if "seed" in exp.base else profile_seeds(profile))

    cells: list[Cell] = []
    extra: dict[str, Cell] = {}
    pools: dict[str, list[Cell]] = {}  # other experiments' cells, expanded once for all references
    for labels, values in raw:
        where = f"{exp.name} cell [{' '.join(f'{k}={v}' for k, v in labels.items())}]"
        layered = {**exp.base, **values}
        dataset, model = layered.get("data.name"), layered.get("model.name")
        recipe = dataset_recipe(profile, dataset, model)
        if recipe is None:
            raise ConfigError(f"{where}: recipes.yaml has no {profile} recipe for data.name={dataset} model.name={model} "
                              "(nor its dataset family's)")
        merged: dict[str, Any] = {**recipe, **method_recipe(profile, layered.get("prune.method"))}
        needs: list[Cell] = []
        for key, value in layered.items():
            if isinstance(value, dict) and set(value) == {"run"}:
                source = _reference(value["run"], exp, cells, profile, overrides, output_root, validate, (*_stack, exp.name), where,
                                    labels.get("seed"), pools)
                if source.reused or source.owner != exp.name:
                    extra.setdefault(str(source.run_dir.path), source)
                needs.append(source)
                merged[key] = run_ref(source.cfg)  # by experiment and run id: the same under any output root
            else:
                merged[key] = _resolve_value(key, value, merged, profile, where)
        if profile in OFFLINE_PROFILES:  # the offline dataset stands in for the cell's own
            merged.pop("data.image_size", None)
            merged.update({k: v for k, v in recipe.items() if k.startswith("data.")})
        cell = Cell(exp.name, labels, merged, _cell_overrides(overrides, merged), needs=needs)
        cell.cfg = _build(cell, profile, output_root, where, validate)
        cells.append(cell)
    _check_method_prefixes(exp, overrides, {str(c.layers.get("prune.method", "dense")) for c in cells})
    return Expansion(exp, profile, cells, list(extra.values()))


def _check_method_prefixes(exp: Experiment, overrides: list[str], methods: set[str]) -> None:
    """A `method:key=value` override whose method no cell of the grid has would silently apply to
    nothing (a misspelled `s2hprunr:`): a one-line error naming the grid's methods instead."""
    for item in overrides:
        head, sep, _ = item.partition(":")
        if sep and "=" not in head and head not in methods:
            raise ConfigError(f"{item}: no cell of {exp.name} has prune.method={head}"
                              f"{did_you_mean(head, sorted(methods))}; its methods: {', '.join(sorted(methods))}")


def _replicate_seeds(raw: list[tuple[dict[str, str], dict[str, Any]]], seeds: int) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Each cell once per seed, labelled with it, where the profile runs several and the cell does
    not choose its seed itself (Table 9's seed axis; a grid whose base sets one is not replicated)."""
    if seeds <= 1:
        return raw
    out = []
    for labels, values in raw:
        if "seed" in labels or "seed" in values:
            out.append((labels, values))
        else:
            out += [({**labels, "seed": str(s)}, {**values, "seed": s}) for s in range(seeds)]
    return out


def _apply_sweeps(raw: list[tuple[dict[str, str], dict[str, Any]]], sweeps: list[str]) -> list[tuple[dict[str, str], dict[str, Any]]]:
    for sweep in sweeps:
        if "=" not in sweep:
            raise ConfigError(f"--sweep {sweep!r} is not of the form key=v1,v2,...")
        key, _, text = sweep.partition("=")
        values = [yaml.safe_load(v) for v in text.split(",")] if text else []
        if not values:
            raise ConfigError(f"--sweep {sweep!r} lists no values")
        raw = [({**labels, key: str(v)}, {**values_, key: v}) for labels, values_ in raw for v in values]
    return raw


def _cell_overrides(overrides: list[str], layered: dict[str, Any]) -> list[str]:
    """Command-line overrides that apply to this cell: all plain ones, and `method:key=value`
    ones whose method is the cell's."""
    chosen = []
    for item in overrides:
        head, sep, rest = item.partition(":")
        if sep and "=" not in head:
            if layered.get("prune.method", "dense") == head:
                chosen.append(rest)
        else:
            chosen.append(item)
    return chosen


def _build(cell: Cell, profile: str, output_root: str | None, where: str, validate: bool) -> RunConfig:
    """The typed, validated config of a cell; a problem raises with the cell named."""
    nested: dict[str, Any] = {}
    for key, value in cell.layers.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {key} goes inside a value")
        node[leaf] = value
    nested.setdefault("experiment", cell.owner)
    nested["profile"] = profile
    if output_root is not None:
        nested["output_root"] = output_root
    try:
        cfg = compose([(nested, "experiment")], cell.overrides)
        return resolve(cfg) if validate else cfg
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _reference(spec: dict[str, Any], exp: Experiment, own: list[Cell], profile: str, overrides: list[str],
               output_root: str | None, validate: bool, stack: tuple[str, ...], where: str, seed: str | None = None,
               pools: dict[str, list[Cell]] | None = None) -> Cell:
    """The one cell a `{run: {experiment, where}}` value points at; where the profile runs
    several seeds, the one of the referring cell's seed."""
    target = str(spec.get("experiment", exp.name))
    wanted = {k: str(v) for k, v in (spec.get("where") or {}).items()}
    # Another experiment's cells are matched unvalidated (validation is the slow part), then
    # the one match is validated.
    pools = {} if pools is None else pools
    if target == exp.name:
        pool = own
    elif target in pools:
        pool = pools[target]
    else:
        pool = pools[target] = expand(target, profile, overrides, (), output_root, False, stack).cells
    matches = [c for c in pool if all(c.labels.get(k) == v for k, v in wanted.items())]
    if len(matches) > 1 and seed is not None:
        matches = [c for c in matches if c.labels.get("seed") == seed]
    if len(matches) != 1:
        raise ConfigError(f"{where}: the run reference {spec} matches {len(matches)} cells of {target} (it must match one; "
                          "a reference to this experiment's own cells must come after them)")
    source = matches[0]
    if target != exp.name:
        source.cfg = _build(source, profile, output_root, where, validate)
    return source
