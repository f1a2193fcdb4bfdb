"""The paper's qualitative claims, each checked on the records of one profile: `make claims`.

A claim is one line: what the paper says, its numbers, ours, and a verdict computed from the
records alone by the rule of `analysis.verdicts` (printed under the table): `reproduced`,
`contradicted`, `inconclusive` or `not run`. Each claim compares cells of the grids, and every
cell is all its finished runs (the seeds the profile runs it at): ours gives each compared
cell's mean ± sample standard deviation and its number of runs, and the p-value where a test
was made. The thresholds ("collapses", "agree") are written into each claim's text. A claim
whose compared runs include one that breaks the working-regime rule (`core.regime`) is marked
¶, and the footer names those runs and why. Like the tables, this module reads records only (no
torch), so it runs anywhere the records are copied to.

The grids these claims read are `CLAIM_EXPERIMENTS` (Figure 3 reuses Tables 1 and 3's runs);
`make claims` runs what is missing of them on the mini profile, then prints this table.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import pandas as pd

from analysis import paper
from analysis.cells import FLOPS_TOLERANCE, REGIME_MARK, REGIME_RULE, Finder
from analysis.frame import achieved_ratio, cells_of, finished, label, option, regime_breaks, runs_of
from analysis.records import Run, RunSet
from core import catalog  # standard library only
from analysis.tables import SWITCHES
from analysis.verdicts import (NOT_RUN, RULE, VERDICTS, Outcome, all_of, collapses, compare, halfway, ordered,
                               per_run, span_threshold, spread_below)

# In the order `make claims` runs them: Table 1 (whose ResNet-50 runs `make demo` made), then the
# ResNet-50 ablations that read it, then the transformers, then Tiny ImageNet's recipes last.
CLAIM_EXPERIMENTS = ("table1", "table5", "table6", "table7", "table8", "table9", "table3", "table2")
TARGETS = (0.15, 0.35, 0.55)
HEADLINE_TARGET = 0.15
# Table 9: the paper's four seeds "agree" within this many points of top-1 and of FLOPs (its own
# span 0.12 and 0.73); the seed standard deviation that implies is the span over d2 = 2.059.
SEED_TOP1_SPAN = 1.0
SEED_FLOPS_SPAN = 2.0
CLASSES = {"cifar100": 100, "tinyimagenet": 200, "imagenet": 1000, "digits": 10, "fashion_mnist": 10}
MODELS = {"table1": ("resnet50", "mobilenetv3", "wrn28_10"), "table2": ("resnet50", "mobilenetv3", "wrn28_10"),
          "table3": ("vit", "swin")}
FIG3_MODELS = (("resnet50", "table1"), ("mobilenetv3", "table1"), ("wrn28_10", "table1"), ("vit", "table3"),
               ("swin", "table3"))


@dataclass(frozen=True)
class Claim:
    """One checked claim: where it is from, what it says, the paper's numbers, ours, the verdict,
    and the runs it compared (for the ¶ mark)."""

    source: str
    claim: str
    paper: str
    ours: str
    verdict: str
    runs: tuple[Run, ...] = field(default=(), compare=False, repr=False)


def values(runs: Sequence[Run], metric: str = "top1") -> list[float]:
    """One number per run that has it."""
    return [v for run in runs if (v := run.metric(metric)) is not None]


def cell_text(name: str, numbers: Sequence[float], fmt: str = ".2f") -> str:
    """`name 83.10 ± 2.05 (n=3)`: mean, sample standard deviation and number of runs."""
    if not numbers:
        return f"{name} - (n=0)".strip()
    text = format(statistics.fmean(numbers), fmt)
    if len(numbers) > 1:
        text += f" ± {format(statistics.stdev(numbers), fmt)}"
    return f"{name} {text} (n={len(numbers)})".strip()


def _with(text: str, test: Outcome) -> str:
    return f"{text}, {test.text()}" if test.text() else text


def _ps(tests: Sequence[Outcome], sep: str = "/") -> str:
    """The p-values of several tests (or why none was made): `0.011/0.0064/n < 3`."""
    return sep.join(f"{t.p:.2g}" if t.p is not None else (t.why or "-") for t in tests)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def chance(run: Run) -> float:
    """Top-1 of a constant guess on the run's dataset, in %."""
    classes = ((run.record.get("regime") or {}).get("classes") or CLASSES.get(run.record.get("dataset", ""), None)
               or run.option("data.options.num_classes", 100))
    return 100.0 / float(classes)


def _missing(source: str, claim: str, paper_text: str) -> Claim:
    return Claim(source, claim, paper_text, "runs missing", NOT_RUN)


# ----------------------------------------------------------------------------- Tables 1-3


def _on_target(f: Finder, table: int) -> Claim:
    experiment = f"table{table}"
    methods = catalog.compared(transformers=table == 3)
    cells: list[list[bool]] = []
    used: list[Run] = []
    off = []
    for model in MODELS[experiment]:
        for method in methods:
            for target in TARGETS:
                runs = f.find(experiment, model__name=model, method=method, prune__flops_target=target)
                used += runs
                cells.append([])
                for run in runs:
                    ratio = achieved_ratio(run)
                    cells[-1].append(ratio is not None and abs(ratio - target) <= FLOPS_TOLERANCE)
                    if not cells[-1][-1]:
                        off.append(f"{method} {model} {target:.0%} seed {run.seed}: "
                                   f"{'-' if ratio is None else f'{ratio:.3f}'}")
    test = per_run(cells, "any")
    sizes = [len(c) for c in cells]
    ours = (f"{len(used) - len(off)} of {len(used)} runs within {FLOPS_TOLERANCE}, {len(cells)} cells of "
            f"n={min(sizes)}" + (f"-{max(sizes)}" if max(sizes) != min(sizes) else "") + " runs")
    ours += f"; off: {', '.join(off[:4])}{' ...' if len(off) > 4 else ''}" if off else ""
    ours += f" ({sizes.count(0)} cells not run)" if 0 in sizes else ""
    return Claim(f"Table {table}", f"every pruning method ends within {FLOPS_TOLERANCE} of each FLOPs target "
                 "(15, 35, 55 %)", "all methods at their targets", ours, test.verdict, tuple(used))


def _headline(f: Finder, table: int, model: str) -> Claim:
    experiment = f"table{table}"
    methods = catalog.baselines(transformers=table == 3)
    t = HEADLINE_TARGET
    dataset = {1: "cifar100", 2: "tinyimagenet", 3: "cifar100"}[table]

    def paper_top1(method: str) -> float | None:
        return paper.lookup(table, "top1", dataset=dataset, model=model, method=method, flops_target=str(t))

    paper_base = {m: paper_top1(m) for m in methods}
    paper_best = max(((v, m) for m, v in paper_base.items() if v is not None), default=None)
    paper_text = f"S2HPruner {_pct(paper_top1('s2hpruner'))}" + (
        f" vs {paper_best[1]} {paper_best[0]:.2f}" if paper_best else "")
    claim = f"{model}: S2HPruner's hard network beats the best baseline (highest mean top-1) at 15 % FLOPs"
    s2h = f.find(experiment, model__name=model, method="s2hpruner", prune__flops_target=t)
    base = {m: f.find(experiment, model__name=model, method=m, prune__flops_target=t) for m in methods}
    if not values(s2h) or any(not values(runs) for runs in base.values()):
        return _missing(f"Table {table}", claim, paper_text)
    best = max(methods, key=lambda m: statistics.fmean(values(base[m])))
    test = compare(values(s2h), values(base[best]), "greater")
    ours = _with(f"{cell_text('S2HPruner', values(s2h))} vs {cell_text(best, values(base[best]))}", test)
    return Claim(f"Table {table}", claim, paper_text, ours, test.verdict, (*s2h, *base[best]))


# ----------------------------------------------------------------------------- Table 5


def _table5(f: Finder) -> list[Claim]:
    def row(number: int) -> tuple[list[Run], float | None]:
        spec = next(r for r in paper.rows(5) if int(r["row"]) == number)
        switches = {f"prune__options__{s}": spec[s] == "true" for s in SWITCHES}
        return f.find("table5", **switches), paper.number(spec["top1"])

    full, p_full = row(2)
    ours_full = values(full)
    claims = []
    for number, what in ((3, "without g_{G->hard->theta}"), (4, "without g_{L->soft->theta}")):
        runs, p = row(number)
        claim, paper_text = f"{what} the hard network collapses", f"{_pct(p)} vs {_pct(p_full)}"
        if not values(runs) or not ours_full:
            claims.append(_missing("Table 5", claim, paper_text))
            continue
        test = collapses(values(runs), ours_full, chance(full[0]))
        line = statistics.fmean(halfway(chance(full[0]), ours_full))
        text = (f"{cell_text('', values(runs))} vs Ours {cell_text('', ours_full)} (collapse: below {line:.1f}, "
                "halfway to chance, per Ours run)")
        claims.append(Claim("Table 5", claim, paper_text, _with(text, test), test.verdict, (*runs, *full)))
    runs, p = row(1)
    claim, paper_text = "adding g_{G->soft->theta} lowers the hard network's top-1", f"{_pct(p)} vs {_pct(p_full)}"
    if not values(runs) or not ours_full:
        claims.append(_missing("Table 5", claim, paper_text))
    else:
        test = compare(values(runs), ours_full, "less")
        claims.append(Claim("Table 5", claim, paper_text,
                            _with(f"{cell_text('', values(runs))} vs Ours {cell_text('', ours_full)}", test),
                            test.verdict, (*runs, *full)))
    rows = [row(n) for n in (5, 6, 7)]
    claim = "dropping g_{G->w}, g_{L->w} or both costs a little (below Ours, no collapse)"
    paper_text = f"{', '.join(_pct(p) for _, p in rows)} vs {_pct(p_full)}"
    if not ours_full or any(not values(r) for r, _ in rows):
        claims.append(_missing("Table 5", claim, paper_text))
        return claims
    below = [compare(values(r), ours_full, "less") for r, _ in rows]
    above = [compare(values(r), halfway(chance(full[0]), ours_full), "greater") for r, _ in rows]
    test = all_of(below + above)
    text = (f"{', '.join(cell_text(f'row {n}', values(r)) for n, (r, _) in zip((5, 6, 7), rows))} vs Ours "
            f"{cell_text('', ours_full)}; p below Ours {_ps(below)}, above the collapse line {_ps(above)}")
    compared = (*full, *(run for r, _ in rows for run in r))
    claims.append(Claim("Table 5", claim, paper_text, text, test.verdict, compared))
    return claims


# ----------------------------------------------------------------------------- Tables 6-9


def _table6(f: Finder) -> list[Claim]:
    names = ("ours", "alt2", "alt1")
    runs = {n: f.find("table6", prune__options__formulation=n) for n in names}
    p = {n: {k: paper.lookup(6, k, formulation=n) for k in ("js", "l2", "top1_hard")} for n in names}
    used = tuple(run for n in names for run in runs[n])
    claims = []
    for metric, column, what, ascending in (("gap_js", "js", "the JS gap", True), ("gap_l2", "l2", "the L2 gap", True),
                                           ("top1", "top1_hard", "hard top-1", False)):
        claim = f"{what} orders {'Ours < Alt 2 < Alt 1' if ascending else 'Ours > Alt 2 > Alt 1'}"
        paper_text = ", ".join(f"{n} {p[n][column]:.3g}" for n in names if p[n][column] is not None)
        cells = [values(runs[n], metric) for n in names]
        if any(not c for c in cells):
            claims.append(_missing("Table 6", claim, paper_text))
            continue
        test, pairs = ordered(cells, ascending)
        ours = ", ".join(cell_text(n, c, ".2f" if metric == "top1" else ".3g") for n, c in zip(names, cells))
        ours += f"; p (ours-alt2, alt2-alt1) {_ps(pairs, ', ')}"
        claims.append(Claim("Table 6", claim, paper_text, ours, test.verdict, used))
    return claims


def _table7(f: Finder) -> list[Claim]:
    # the fine-tuning cells are the ones labelled by their epochs (the soft-only cell by its formulation)
    rows = f.rows("table7")
    tuned = rows.assign(epochs=option(rows, "train.epochs"))[label(rows, "train.epochs").notna()]
    tuned = tuned[tuned["epochs"].notna()]
    cells = [(e, runs_of(cell, by="run_id")) for e, cell in tuned.groupby(tuned["epochs"].map(int), sort=True)]
    ours = f.find("table1", model__name="resnet50", method="s2hpruner", prune__flops_target=0.15)
    p_rows = [r for r in paper.rows(7) if r["top1_hard"]]
    p_first, p_last = paper.number(p_rows[0]["top1_hard"]), paper.number(p_rows[-1]["top1_hard"])
    p_ours = paper.lookup(1, "top1", dataset="cifar100", model="resnet50", method="s2hpruner", flops_target="0.15")
    claim = "fine-tuning a soft-only network raises its hard top-1 with the epochs"
    paper_text = f"{_pct(p_first)} after {p_rows[0]['epochs']} to {_pct(p_last)} after {p_rows[-1]['epochs']} epochs"
    if len(cells) < 2:
        rises = _missing("Table 7", claim, paper_text)
    else:
        (e0, first), (e1, last) = cells[0], cells[-1]
        test = compare(values(last), values(first), "greater")
        rises = Claim("Table 7", claim, paper_text,
                      _with(f"{cell_text('', values(first))} after {e0} to {cell_text('', values(last))} after {e1} "
                            "epochs", test), test.verdict, (*first, *last))
    claim = "fine-tuned soft-only networks stay below S2HPruner (Table 1, ResNet-50, 15 %)"
    paper_text = f"best {_pct(max(paper.number(r['top1_hard']) for r in p_rows))} vs {_pct(p_ours)}"
    if not cells or not values(ours):
        return [rises, _missing("Table 7", claim, paper_text)]
    tests = [compare(values(c), values(ours), "less") for _, c in cells]
    test = all_of(tests)
    best = max(range(len(cells)), key=lambda i: statistics.fmean(values(cells[i][1]) or [-math.inf]))
    text = _with(f"best ({cells[best][0]} epochs) {cell_text('', values(cells[best][1]))} vs "
                 f"{cell_text('', values(ours))}", tests[best])
    text += f"; each of {len(cells)} cells tested"
    below = Claim("Table 7", claim, paper_text, text, test.verdict, (*ours, *(r for _, c in cells for r in c)))
    return [rises, below]


def _table8(f: Finder) -> Claim:
    nets = ("ours", "rand1", "rand2", "rand3")
    runs = {n: f.find("table8", network=n) for n in nets}
    p = {n: paper.lookup(8, "top1", network=n) for n in nets}
    paper_text = f"ours {_pct(p['ours'])} vs random {', '.join(_pct(p[n]) for n in nets[1:])}"
    claim = "S2HPruner's architecture trained from scratch beats random ones of the same FLOPs (each of them)"
    if any(not values(r) for r in runs.values()):
        return _missing("Table 8", claim, paper_text)
    tests = [compare(values(runs["ours"]), values(runs[n]), "greater") for n in nets[1:]]
    ours = (f"{cell_text('ours', values(runs['ours']))} vs "
            + ", ".join(_with(cell_text(n, values(runs[n])), t) for n, t in zip(nets[1:], tests)))
    return Claim("Table 8", claim, paper_text, ours, all_of(tests).verdict, tuple(r for n in nets for r in runs[n]))


def _spread_text(what: str, numbers: list[float], threshold: float) -> str:
    """`what: 2.05 points (n=4, mean 83.10; 95 % CI [1.16, 7.64] vs at most 0.49; span 4.70)`."""
    s = spread_below(numbers, threshold)
    interval = "" if s.low is None else f"; 95 % CI [{s.low:.2f}, {s.high:.2f}]"
    return (f"{what}: {'-' if s.std is None else f'{s.std:.2f}'} points (n={len(numbers)}, mean "
            f"{statistics.fmean(numbers):.2f}{interval} vs at most {threshold:.2f}; span {_span(numbers):.2f})")


def _table9(f: Finder) -> Claim:
    cells = [f.find("table9", seed=s) for s in range(4)]
    p_rows = paper.rows(9)
    p_top1 = [float(r["top1"]) for r in p_rows]
    p_flops = [float(r["flops_percent"]) for r in p_rows]
    paper_text = (f"top-1 {statistics.mean(p_top1):.2f} ± {statistics.stdev(p_top1):.2f} (span {_span(p_top1):.2f}), "
                  f"FLOPs span {_span(p_flops):.2f} points")
    top1_max, flops_max = span_threshold(SEED_TOP1_SPAN), span_threshold(SEED_FLOPS_SPAN)
    claim = (f"the four seeds agree: top-1 within {SEED_TOP1_SPAN:g} point, FLOPs within {SEED_FLOPS_SPAN:g} points "
             f"of each other (seed std at most {top1_max:.2f} and {flops_max:.2f} points: span / 2.059)")
    if any(not values(cell) for cell in cells):
        return _missing("Table 9", claim, paper_text)
    runs = [run for cell in cells for run in cell]
    top1, flops = values(runs), [100 * v for v in values(runs, "flops_ratio")]
    test = all_of([spread_below(top1, top1_max).test, spread_below(flops, flops_max).test])
    ours = (_spread_text("S2HPruner's top-1 std over its seeds at 15 %", top1, top1_max) + "; "
            + _spread_text("FLOPs (%) std", flops, flops_max))
    return Claim("Table 9", claim, paper_text, ours, test.verdict, tuple(runs))


def _span(numbers: Sequence[float]) -> float:
    return max(numbers) - min(numbers) if numbers else 0.0


def trajectory(run: Run, target: float) -> tuple[int | None, bool, float | None, float | None]:
    """From a run's epoch log: the first epoch whose hard FLOPs are within the tolerance of the
    target, whether every later epoch stays within it, and the top-1 at that epoch and at the end."""
    log = [e for e in run.log() if e.get("flops_ratio") is not None and e.get("test_top1") is not None]
    reached = next((i for i, e in enumerate(log) if abs(float(e["flops_ratio"]) - target) <= FLOPS_TOLERANCE), None)
    if reached is None:
        return None, False, None, None
    stays = all(abs(float(e["flops_ratio"]) - target) <= FLOPS_TOLERANCE for e in log[reached:])
    return int(log[reached].get("epoch", reached + 1)), stays, float(log[reached]["test_top1"]), float(log[-1]["test_top1"])


def _fig3(f: Finder, model: str, experiment: str) -> Claim:
    claim = f"{model}: the hard FLOPs reach the target (15 %) and stay there while top-1 rises, in every run"
    paper_text = "reached in the first epochs, flat after (Fig. 3)"
    runs = [run for run in f.find(experiment, model__name=model, method="s2hpruner",
                                  prune__flops_target=HEADLINE_TARGET) if run.log()]
    if not runs:
        return _missing("Fig. 3", claim, paper_text)
    held, parts = [], []
    for run in sorted(runs, key=lambda r: r.seed):
        epoch, stays, at, end = trajectory(run, HEADLINE_TARGET)
        held.append(epoch is not None and stays and end > at)  # type: ignore[operator]
        if epoch is None:
            parts.append(f"seed {run.seed}: never within {FLOPS_TOLERANCE}")
            continue
        parts.append(f"seed {run.seed}: from epoch {epoch} of {len(run.log())}{'' if stays else ', leaves it later'}, "
                     f"top-1 {at:.2f} then {end:.2f}")
    test = per_run([held], "most")
    ours = f"{sum(held)} of {len(held)} runs (n={len(held)}): " + "; ".join(parts)
    return Claim("Fig. 3", claim, paper_text, ours, test.verdict, tuple(runs))


# ----------------------------------------------------------------------------- all


def _marked(claim: Claim) -> Claim:
    """The claim with ¶ on its numbers when a run it compared breaks the working-regime rule."""
    return replace(claim, ours=f"{claim.ours} {REGIME_MARK}") if any(regime_breaks(r) for r in claim.runs) else claim


def check(runs: RunSet, profile: str) -> list[Claim]:
    """Every claim, checked on `profile`'s records, in the paper's order."""
    f = Finder(runs, profile)
    claims: list[Claim] = []
    for table in (1, 2, 3):
        claims.append(_on_target(f, table))
        claims += [_headline(f, table, model) for model in MODELS[f"table{table}"]]
    claims += _table5(f)
    claims += _table6(f)
    claims += _table7(f)
    claims.append(_table8(f))
    claims.append(_table9(f))
    claims += [_fig3(f, model, experiment) for model, experiment in FIG3_MODELS]
    return [_marked(claim) for claim in claims]


def setups(runs: RunSet, profile: str) -> list[tuple[str, int]]:
    """The set-ups (`Run.compute`: torch, device, CPU threads and kernels) the finished runs of the
    claims' grids were made on, with how many runs each, most first. A claim compares runs, and
    `make demo` and `make claims` may run on different days on different hosts: across set-ups a
    short CPU S2HPruner run's top-1 moves by more than its seeds' spread (analysis/README.md)."""
    rows = pd.concat([cells_of(runs, experiment, profile) for experiment in CLAIM_EXPERIMENTS])
    counts = finished(rows).groupby("run_id", sort=False)["compute"].last().value_counts()
    return sorted(((setup, int(n)) for setup, n in counts.items()), key=lambda item: (-item[1], item[0]))


def setups_line(made_on: list[tuple[str, int]]) -> str | None:
    """One sentence under the verdicts when their runs come from more than one set-up."""
    if len(made_on) < 2:
        return None
    return (f"The runs these claims compare come from {len(made_on)} set-ups: "
            + "; ".join(f"{setup} ({n} runs)" for setup, n in made_on)
            + ". A verdict comparing runs of different set-ups may reflect the set-ups as much as the methods.")


def _describe(run: Run) -> str:
    target = "" if run.flops_target is None else f" {run.flops_target:.0%}"
    return f"{run.experiment}/{run.run_id} ({run.method} {run.model}{target} seed {run.seed})"


def regime_line(claims: list[Claim]) -> str | None:
    """The footer naming each run behind a ¶ and why it breaks the working-regime rule."""
    broken = {run.run_id or id(run): run for c in claims for run in c.runs if regime_breaks(run)}
    if not broken:
        return None
    return (f"{REGIME_MARK}: the claim compares runs that break {REGIME_RULE}: "
            + "; ".join(f"{_describe(run)}: {', '.join(regime_breaks(run))}" for run in broken.values()))


def footer(claims: list[Claim], made_on: list[tuple[str, int]] | None = None) -> list[str]:
    """The lines under the verdict table: the count of each verdict, the rule, the ¶ runs, the set-ups."""
    counts = Counter(c.verdict for c in claims)
    lines = [f"{len(claims)} claims: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS),
             "Verdict rule (analysis/verdicts.py): " + RULE]
    return lines + [line for line in (regime_line(claims), setups_line(made_on or [])) if line is not None]


def render(claims: list[Claim], profile: str, escape: Callable[[str], str] = lambda s: s.replace("|", "\\|"),
           made_on: list[tuple[str, int]] | None = None) -> str:
    """The verdict table as markdown, with a count of each verdict, the rule that decided them,
    the runs behind any ¶ and (given the runs' `setups`) a warning when they are more than one."""
    lines = [f"| source | claim | paper | ours ({profile}) | verdict |", "| --- | --- | --- | --- | --- |"]
    for c in claims:
        lines.append("| " + " | ".join(escape(x) for x in (c.source, c.claim, c.paper, c.ours, c.verdict)) + " |")
    for line in footer(claims, made_on):
        lines += ["", line]
    return "\n".join(lines)
