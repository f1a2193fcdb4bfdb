"""`python -m analysis`: render the paper's tables, figures and a report from run records.

    python -m analysis table 1 [--format md|csv|tex|html] [--profile smoke|mini|paper] [--out FILE]
    python -m analysis table my_grid.yaml [...]     # a grid of your own, from its runs' cell labels
    python -m analysis tables  [--profile ...]      # every table, into results/tables/
    python -m analysis figure 3 [--profile ...]     # results/figures/fig3.png and .pdf
    python -m analysis figures [--profile ...]
    python -m analysis report  [--profile ...]      # results/report.md and results/report.html
    python -m analysis claims  [--profile ...]      # the paper's claims, each with its verdict (make claims)

Records are read from `<results>/runs/*/*/record.json` (`--results`, default `results`). Without
`--profile` each table uses the profile with the most records among its runs (paper on a tie or
when there are none) and says which. Exit status 2 on bad input, with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.records import PROFILES, load_runs, majority_profile
from analysis.render import FORMATS, render
from analysis.tables import build, grid_name, grid_table, known_grid, table_numbers

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--profile", choices=PROFILES, help="which runs to show (default: the one most runs have)")
        sub.add_argument("--results", default="results", help="the results folder holding runs/ (default: results)")

    table = commands.add_parser("table", help="print one table")
    table.add_argument("number", help="1-10, or a grid of your own: its YAML file or name (run with python -m experiments)")
    table.add_argument("--format", choices=FORMATS, default="md")
    table.add_argument("--out", help="write to this file instead of printing")
    common(table)
    tables = commands.add_parser("tables", help="write every table as md, csv and tex into <results>/tables/")
    common(tables)
    figure = commands.add_parser("figure", help="draw one figure into <results>/figures/ (PNG and PDF)")
    figure.add_argument("number", type=int, help="3-9")
    common(figure)
    figures = commands.add_parser("figures", help="draw every figure")
    common(figures)
    report = commands.add_parser("report", help="write <results>/report.md and report.html")
    common(report)
    claims = commands.add_parser("claims", help="check the paper's claims on the records; print the verdicts "
                                                "and write <results>/claims-<profile>.md")
    common(claims)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "table" and args.number.isdigit():
            args.number = int(args.number)
            if args.number not in table_numbers():
                raise ValueError(f"no table {args.number}: the tables are {', '.join(map(str, table_numbers()))}")
        elif args.command == "table":
            args.grid = grid_name(args.number)
        if args.command == "figure" and not 3 <= args.number <= 9:
            raise ValueError(f"no figure {args.number}: the suite draws figures 3-9")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = load_runs(args.results)
    results = Path(args.results)
    if args.command == "table" and not isinstance(args.number, int):
        try:
            known_grid(runs, args.grid)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "table":
        grid = build(args.number, runs, args.profile) if isinstance(args.number, int) else \
            grid_table(runs, args.grid, args.profile, args.number)
        text = render(grid, args.format)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
            print(f"wrote {args.out}")
        else:
            print(text, end="")
        return 0
    if args.command == "tables":
        out = results / "tables"
        out.mkdir(parents=True, exist_ok=True)
        for number in table_numbers():
            grid = build(number, runs, args.profile)
            for fmt in ("md", "csv", "tex"):
                (out / f"table{number}-{grid.profile}.{fmt}").write_text(render(grid, fmt))
            print(f"table {number} ({grid.profile}): {grid.expected_runs - len(grid.missing)} of {grid.expected_runs} "
                  f"runs -> {out}/table{number}-{grid.profile}.{{md,csv,tex}}")
        return 0
    if args.command in ("figure", "figures"):
        from analysis.figures import FIGURE_NUMBERS, SOURCE_EXPERIMENTS, render_figure

        numbers = [args.number] if args.command == "figure" else list(FIGURE_NUMBERS)
        profile = args.profile or majority_profile(runs, SOURCE_EXPERIMENTS)
        for number in numbers:
            result = render_figure(number, runs, profile, results / "figures")
            print(f"{result.title} ({profile}): {', '.join(str(p) for p in result.paths)}")
            for line in result.missing:
                print(f"  missing: {line}; produce it with: python -m experiments run fig{number} --profile {profile}")
        return 0
    if args.command == "claims":
        from analysis.claims import CLAIM_EXPERIMENTS, check, setups
        from analysis.claims import render as render_claims

        profile = args.profile or majority_profile(runs, CLAIM_EXPERIMENTS)
        text = render_claims(check(runs, profile), profile, made_on=setups(runs, profile))
        results.mkdir(parents=True, exist_ok=True)
        (results / f"claims-{profile}.md").write_text(f"# The paper's claims on the {profile} profile\n\n{text}\n")
        print(text)
        print(f"wrote {results / f'claims-{profile}.md'}")
        return 0
    from analysis.report import write_report

    paths = write_report(runs, results, args.profile)
    print("wrote " + " and ".join(str(p) for p in paths))
    return 0
