"""The paper's qualitative claims, each checked on the records of one profile: `make claims`.

A claim is one line: what the paper says, its numbers, ours, and a verdict computed from the
records alone: `reproduced`, `not reproduced`, or `not run` (a run the check needs has no
finished record). The checks are the claims as the paper states them, with the thresholds
written into each claim's text, so a reader can see what "collapses" or "agree" was taken to
mean. Like the tables, this module reads records only (no torch), so it runs anywhere the
records are copied to.

The grids these claims read are `CLAIM_EXPERIMENTS` (Figure 3 reuses Tables 1 and 3's runs);
`make claims` runs what is missing of them on the mini profile, then prints this table.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

from analysis import paper
from analysis.records import Run, RunSet
from analysis.tables import FLOPS_TOLERANCE, SWITCHES, achieved_ratio, labelled

# In the order `make claims` runs them: Table 1 (whose ResNet-50 runs `make demo` made), then the
# ResNet-50 ablations that read it, then the transformers, then Tiny ImageNet's recipes last.
CLAIM_EXPERIMENTS = ("table1", "table5", "table6", "table7", "table8", "table9", "table3", "table2")
REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"
BASELINES = ("rst_s", "group_sl", "otov2", "refill")
TARGETS = (0.15, 0.35, 0.55)
HEADLINE_TARGET = 0.15
# Table 9: the seeds "agree" when their top-1 spans at most this many points and their FLOPs
# at most this many percentage points (the paper's four seeds span 0.12 and 0.73).
SEED_TOP1_SPAN = 1.0
SEED_FLOPS_SPAN = 2.0
CLASSES = {"cifar100": 100, "tinyimagenet": 200, "imagenet": 1000, "digits": 10}
MODELS = {"table1": ("resnet50", "mobilenetv3", "wrn28_10"), "table2": ("resnet50", "mobilenetv3", "wrn28_10"),
          "table3": ("vit", "swin")}
FIG3_MODELS = (("resnet50", "table1"), ("mobilenetv3", "table1"), ("wrn28_10", "table1"), ("vit", "table3"),
               ("swin", "table3"))


@dataclass(frozen=True)
class Claim:
    """One checked claim: where it is from, what it says, the paper's numbers, ours, the verdict."""

    source: str
    claim: str
    paper: str
    ours: str
    verdict: str


class Finder:
    """The finished runs of one profile by experiment and labels (labels compared as text)."""

    def __init__(self, runs: RunSet, profile: str) -> None:
        self.runs, self.profile = runs, profile
        self._cache: dict[str, list[tuple[Run, dict[str, str]]]] = {}

    def labelled(self, experiment: str) -> list[tuple[Run, dict[str, str]]]:
        """(run, labels) of every finished run filling a cell of `experiment`'s grid."""
        if experiment not in self._cache:
            self._cache[experiment] = [(r, lb) for r, lb in labelled(self.runs, experiment, self.profile) if r.done]
        return self._cache[experiment]

    def find(self, experiment: str, **labels: object) -> list[Run]:
        """Runs whose cell labels match (`prune__flops_target=0.15` for the label `prune.flops_target`)."""
        wanted = {key.replace("__", "."): value for key, value in labels.items()}
        return [run for run, lb in self.labelled(experiment) if all(_same(lb.get(k), v) for k, v in wanted.items())]

    def one(self, experiment: str, **labels: object) -> Run | None:
        found = self.find(experiment, **labels)
        return found[0] if found else None


def _same(label: str | None, wanted: object) -> bool:
    if label is None:
        return False
    if isinstance(wanted, bool):  # grids label switches True/False
        return label.strip().lower() == str(wanted).lower()
    if isinstance(wanted, float):
        try:
            return abs(float(label) - wanted) < 1e-9
        except ValueError:
            return False
    return label == str(wanted)


def _top1(run: Run | None, metric: str = "top1") -> float | None:
    return None if run is None else run.metric(metric)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def chance(run: Run) -> float:
    """Top-1 of a constant guess on the run's dataset, in %."""
    classes = CLASSES.get(run.record.get("dataset", ""), None) or run.option("data.options.num_classes", 100)
    return 100.0 / float(classes)


def _verdict(holds: bool | None) -> str:
    return NOT_RUN if holds is None else (REPRODUCED if holds else NOT_REPRODUCED)


# ----------------------------------------------------------------------------- Tables 1-3


def _on_target(f: Finder, table: int) -> Claim:
    experiment = f"table{table}"
    methods = BASELINES + ("s2hpruner",) if table != 3 else ("rst_s", "s2hpruner")
    expected = len(MODELS[experiment]) * len(methods) * len(TARGETS)
    found, off = 0, []
    for model in MODELS[experiment]:
        for method in methods:
            for target in TARGETS:
                for run in f.find(experiment, model__name=model, method=method, prune__flops_target=target):
                    found += 1
                    ratio = achieved_ratio(run)
                    if ratio is None or abs(ratio - target) > FLOPS_TOLERANCE:
                        off.append(f"{method} {model} {target:.0%}: {'-' if ratio is None else f'{ratio:.3f}'}")
    ours = f"{found - len(off)} of {expected} runs within {FLOPS_TOLERANCE}"
    ours += f"; off: {', '.join(off[:4])}{' ...' if len(off) > 4 else ''}" if off else ""
    holds = None if found < expected and not off else not off
    return Claim(f"Table {table}", f"every pruning method ends within {FLOPS_TOLERANCE} of each FLOPs target "
                 "(15, 35, 55 %)", "all methods at their targets", ours + ("" if found == expected else " (runs missing)"),
                 _verdict(holds))


def _headline(f: Finder, table: int, model: str) -> Claim:
    experiment = f"table{table}"
    methods = BASELINES if table != 3 else ("rst_s",)
    t = HEADLINE_TARGET
    dataset = {1: "cifar100", 2: "tinyimagenet", 3: "cifar100"}[table]

    def paper_top1(method: str) -> float | None:
        return paper.lookup(table, "top1", dataset=dataset, model=model, method=method, flops_target=str(t))

    ours_s2h = _top1(f.one(experiment, model__name=model, method="s2hpruner", prune__flops_target=t))
    ours_base = {m: _top1(f.one(experiment, model__name=model, method=m, prune__flops_target=t)) for m in methods}
    paper_base = {m: paper_top1(m) for m in methods}
    paper_best = max(((v, m) for m, v in paper_base.items() if v is not None), default=None)
    paper_text = f"S2HPruner {_pct(paper_top1('s2hpruner'))}" + (
        f" vs {paper_best[1]} {paper_best[0]:.2f}" if paper_best else "")
    if ours_s2h is None or any(v is None for v in ours_base.values()):
        return Claim(f"Table {table}", f"{model}: S2HPruner's hard network beats the best baseline at 15 % FLOPs",
                     paper_text, "runs missing", NOT_RUN)
    best_value, best_method = max((v, m) for m, v in ours_base.items())  # type: ignore[type-var]
    return Claim(f"Table {table}", f"{model}: S2HPruner's hard network beats the best baseline at 15 % FLOPs",
                 paper_text, f"S2HPruner {ours_s2h:.2f} vs {best_method} {best_value:.2f}",
                 _verdict(ours_s2h > best_value))


# ----------------------------------------------------------------------------- Table 5


def _table5(f: Finder) -> list[Claim]:
    def row(number: int) -> tuple[Run | None, float | None]:
        spec = next(r for r in paper.rows(5) if int(r["row"]) == number)
        switches = {f"prune__options__{s}": spec[s] == "true" for s in SWITCHES}
        run = f.one("table5", **switches)
        return run, paper.number(spec["top1"])

    full, p_full = row(2)
    claims = []
    for number, what in ((3, "without g_{G->hard->theta}"), (4, "without g_{L->soft->theta}")):
        run, p = row(number)
        ours = _top1(run)
        holds = None
        text = "runs missing"
        if run is not None and full is not None:
            line = (chance(full) + _top1(full)) / 2  # type: ignore[operator]
            holds = ours < line  # type: ignore[operator]
            text = f"{_pct(ours)} vs {_pct(_top1(full))} (collapse: below {line:.1f}, halfway to chance)"
        claims.append(Claim("Table 5", f"{what} the hard network collapses", f"{_pct(p)} vs {_pct(p_full)}", text,
                            _verdict(holds)))
    run, p = row(1)
    holds = None if run is None or full is None else _top1(run) < _top1(full)  # type: ignore[operator]
    claims.append(Claim("Table 5", "adding g_{G->soft->theta} lowers the hard network's top-1",
                        f"{_pct(p)} vs {_pct(p_full)}",
                        "runs missing" if holds is None else f"{_pct(_top1(run))} vs {_pct(_top1(full))}", _verdict(holds)))
    rows = [row(n) for n in (5, 6, 7)]
    if full is None or any(r is None for r, _ in rows):
        ours, holds = "runs missing", None
    else:
        line = (chance(full) + _top1(full)) / 2  # type: ignore[operator]
        values = [_top1(r) for r, _ in rows]
        holds = all(line <= v < _top1(full) for v in values)  # type: ignore[operator]
        ours = f"{', '.join(_pct(v) for v in values)} vs {_pct(_top1(full))}"
    claims.append(Claim("Table 5", "dropping g_{G->w}, g_{L->w} or both costs a little (below Ours, no collapse)",
                        f"{', '.join(_pct(p) for _, p in rows)} vs {_pct(p_full)}", ours, _verdict(holds)))
    return claims


# ----------------------------------------------------------------------------- Tables 6-9


def _table6(f: Finder) -> list[Claim]:
    names = ("ours", "alt2", "alt1")
    runs = {n: f.one("table6", prune__options__formulation=n) for n in names}
    p = {n: {k: paper.lookup(6, k, formulation=n) for k in ("js", "l2", "top1_hard")} for n in names}
    claims = []
    for metric, column, what, ascending in (("gap_js", "js", "the JS gap", True), ("gap_l2", "l2", "the L2 gap", True),
                                           ("top1", "top1_hard", "hard top-1", False)):
        order = "Ours < Alt 2 < Alt 1" if ascending else "Ours > Alt 2 > Alt 1"
        paper_text = ", ".join(f"{n} {p[n][column]:.3g}" for n in names if p[n][column] is not None)
        values = {n: _top1(r, metric) for n, r in runs.items()}
        if any(v is None for v in values.values()):
            claims.append(Claim("Table 6", f"{what} orders {order}", paper_text, "runs missing", NOT_RUN))
            continue
        v = [values[n] for n in names]
        holds = v[0] < v[1] < v[2] if ascending else v[0] > v[1] > v[2]  # type: ignore[operator]
        claims.append(Claim("Table 6", f"{what} orders {order}", paper_text,
                            ", ".join(f"{n} {values[n]:.3g}" for n in names), _verdict(holds)))
    return claims


def _table7(f: Finder) -> list[Claim]:
    # the fine-tuning cells are the ones labelled by their epochs (the soft-only cell by its formulation)
    tuned = [(run.option("train.epochs"), run) for run, labels in f.labelled("table7") if "train.epochs" in labels]
    tuned = [(e, r) for e, r in tuned if e is not None]
    tuned.sort(key=lambda item: item[0])
    ours = _top1(f.one("table1", model__name="resnet50", method="s2hpruner", prune__flops_target=0.15))
    p_rows = [r for r in paper.rows(7) if r["top1_hard"]]
    p_first, p_last = paper.number(p_rows[0]["top1_hard"]), paper.number(p_rows[-1]["top1_hard"])
    p_ours = paper.lookup(1, "top1", dataset="cifar100", model="resnet50", method="s2hpruner", flops_target="0.15")
    if len(tuned) < 2:
        rises = Claim("Table 7", "fine-tuning a soft-only network raises its hard top-1 with the epochs",
                      f"{_pct(p_first)} after {p_rows[0]['epochs']} to {_pct(p_last)} after {p_rows[-1]['epochs']} epochs",
                      "runs missing", NOT_RUN)
    else:
        first, last = tuned[0], tuned[-1]
        rises = Claim("Table 7", "fine-tuning a soft-only network raises its hard top-1 with the epochs",
                      f"{_pct(p_first)} after {p_rows[0]['epochs']} to {_pct(p_last)} after {p_rows[-1]['epochs']} epochs",
                      f"{_pct(_top1(first[1]))} after {first[0]} to {_pct(_top1(last[1]))} after {last[0]} epochs",
                      _verdict(_top1(last[1]) > _top1(first[1])))  # type: ignore[operator]
    best = max((_top1(r) for _, r in tuned), default=None)
    holds = None if best is None or ours is None else best < ours
    below = Claim("Table 7", "fine-tuned soft-only networks stay below S2HPruner (Table 1, ResNet-50, 15 %)",
                  f"best {_pct(max(paper.number(r['top1_hard']) for r in p_rows))} vs {_pct(p_ours)}",
                  "runs missing" if holds is None else f"best {_pct(best)} vs {_pct(ours)}", _verdict(holds))
    return [rises, below]


def _table8(f: Finder) -> Claim:
    values = {n: _top1(f.one("table8", network=n)) for n in ("ours", "rand1", "rand2", "rand3")}
    p = {n: paper.lookup(8, "top1", network=n) for n in values}
    paper_text = f"ours {_pct(p['ours'])} vs random {', '.join(_pct(p[n]) for n in ('rand1', 'rand2', 'rand3'))}"
    if any(v is None for v in values.values()):
        return Claim("Table 8", "S2HPruner's architecture trained from scratch beats random ones of the same FLOPs",
                     paper_text, "runs missing", NOT_RUN)
    rand = [values[n] for n in ("rand1", "rand2", "rand3")]
    return Claim("Table 8", "S2HPruner's architecture trained from scratch beats random ones of the same FLOPs",
                 paper_text, f"ours {_pct(values['ours'])} vs random {', '.join(_pct(v) for v in rand)}",
                 _verdict(values["ours"] > max(rand)))  # type: ignore[operator, type-var]


def _span(values: Iterable[float]) -> float:
    values = list(values)
    return max(values) - min(values)


def _table9(f: Finder) -> Claim:
    runs = [f.one("table9", seed=s) for s in range(4)]
    p_rows = paper.rows(9)
    p_top1 = [float(r["top1"]) for r in p_rows]
    p_flops = [float(r["flops_percent"]) for r in p_rows]
    paper_text = (f"top-1 {statistics.mean(p_top1):.2f} ± {statistics.stdev(p_top1):.2f} (span {_span(p_top1):.2f}), "
                  f"FLOPs span {_span(p_flops):.2f} points")
    claim = (f"the four seeds agree: top-1 within {SEED_TOP1_SPAN:g} point, FLOPs within {SEED_FLOPS_SPAN:g} points "
             "of each other")
    if any(r is None for r in runs):
        return Claim("Table 9", claim, paper_text, "runs missing", NOT_RUN)
    top1 = [_top1(r) for r in runs]
    flops = [100 * r.metric("flops_ratio") for r in runs]  # type: ignore[union-attr, operator]
    ours = (f"top-1 {statistics.mean(top1):.2f} ± {statistics.stdev(top1):.2f} (span {_span(top1):.2f}), "  # type: ignore[arg-type]
            f"FLOPs span {_span(flops):.2f} points")
    return Claim("Table 9", claim, paper_text, ours,
                 _verdict(_span(top1) <= SEED_TOP1_SPAN and _span(flops) <= SEED_FLOPS_SPAN))  # type: ignore[arg-type]


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
    claim = f"{model}: the hard FLOPs reach the target (15 %) and stay there while top-1 rises"
    paper_text = "reached in the first epochs, flat after (Fig. 3)"
    run = f.one(experiment, model__name=model, method="s2hpruner", prune__flops_target=HEADLINE_TARGET)
    if run is None or not run.log():
        return Claim("Fig. 3", claim, paper_text, "run missing", NOT_RUN)
    epoch, stays, at, end = trajectory(run, HEADLINE_TARGET)
    if epoch is None:
        return Claim("Fig. 3", claim, paper_text, f"never within {FLOPS_TOLERANCE} of the target", NOT_REPRODUCED)
    epochs = len(run.log())
    ours = (f"within {FLOPS_TOLERANCE} from epoch {epoch} of {epochs}{'' if stays else ', but leaves it later'}; "
            f"top-1 {at:.2f} then, {end:.2f} at the end")
    return Claim("Fig. 3", claim, paper_text, ours, _verdict(stays and end > at))  # type: ignore[operator]


# ----------------------------------------------------------------------------- all


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
    return claims


def setups(runs: RunSet, profile: str) -> list[tuple[str, int]]:
    """The set-ups (`Run.compute`: torch, device, CPU threads and kernels) the finished runs of the
    claims' grids were made on, with how many runs each, most first. A claim compares runs, and
    `make demo` and `make claims` may run on different days on different hosts: across set-ups a
    short CPU S2HPruner run's top-1 moves by more than its seeds' spread (README)."""
    found = {run.run_id: run for experiment in CLAIM_EXPERIMENTS
             for run, _ in labelled(runs, experiment, profile) if run.done}
    counts = Counter(run.compute for run in found.values())
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def setups_line(made_on: list[tuple[str, int]]) -> str | None:
    """One sentence under the verdicts when their runs come from more than one set-up."""
    if len(made_on) < 2:
        return None
    return (f"The runs these claims compare come from {len(made_on)} set-ups: "
            + "; ".join(f"{setup} ({n} runs)" for setup, n in made_on)
            + ". A verdict comparing runs of different set-ups may reflect the set-ups as much as the methods.")


def render(claims: list[Claim], profile: str, escape: Callable[[str], str] = lambda s: s.replace("|", "\\|"),
           made_on: list[tuple[str, int]] | None = None) -> str:
    """The verdict table as markdown, with a count of each verdict under it (and, given the runs'
    `setups`, a warning when they are more than one)."""
    lines = [f"| source | claim | paper | ours ({profile}) | verdict |", "| --- | --- | --- | --- | --- |"]
    for c in claims:
        lines.append("| " + " | ".join(escape(x) for x in (c.source, c.claim, c.paper, c.ours, c.verdict)) + " |")
    counts = {v: sum(c.verdict == v for c in claims) for v in (REPRODUCED, NOT_REPRODUCED, NOT_RUN)}
    lines += ["", f"{len(claims)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items())]
    if (line := setups_line(made_on or [])) is not None:
        lines += ["", line]
    return "\n".join(lines)
