"""`make report`: every table and figure, the runs' environment and what is missing, in one page.

Writes `<results>/report.md` and `<results>/report.html` (figures beside them in
`<results>/figures/`). It renders whatever records exist, none included: an empty results
folder gives a report of dashes that says which commands fill it.
"""

from __future__ import annotations

import html
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from analysis.claims import check as check_claims
from analysis.claims import footer as claims_footer
from analysis.claims import render as render_claims
from analysis.claims import setups
from analysis.grid import Grid
from analysis.records import RunSet, majority_profile
from analysis.render import html_table, markdown
from analysis.tables import build, table_numbers

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}th,td{border-top:1px solid #ccc;padding:3px 8px}
thead th{border-bottom:2px solid #444}td.num{text-align:right;white-space:nowrap}.profile{color:#a33}
ul.footer{font-size:12px;color:#444}li.sub{margin-left:1.5em;list-style:circle}img{max-width:100%}"""


def environments(runs: RunSet) -> list[tuple[str, int]]:
    """Distinct (python, torch, cuda, device, CPU threads and kernels, git) of the runs, with how
    many runs each."""
    counts: Counter[str] = Counter()
    for run in runs.runs:
        env = run.record.get("env") or {}
        sha = str(env.get("git_sha") or "?")[:10] + (" (dirty)" if env.get("git_dirty") else "")
        counts[f"python {env.get('python', '?')}, {run.compute}, git {sha}"] += 1
    return sorted(counts.items(), key=lambda item: -item[1])


def run_counts(runs: RunSet) -> list[str]:
    counts: Counter[tuple[str, str, str]] = Counter((r.profile, r.experiment, r.status) for r in runs.runs)
    lines = [f"{experiment} ({profile}): {n} {status}" for (profile, experiment, status), n in sorted(counts.items())]
    if runs.unfinished:
        lines.append(f"{len(runs.unfinished)} run folders without a record (queued, running or interrupted)")
    lines += [f"unreadable record, left out: {folder}/record.json ({why})" for folder, why in runs.unreadable]
    return lines or ["no run records yet"]


def missing_cells(grids: list[Grid], figures: list, profile: str) -> list[tuple[str, str | None]]:
    """(what is missing, the command that makes it) per table and figure; no command when complete."""
    lines: list[tuple[str, str | None]] = []
    for grid in grids:
        count = len(grid.missing) + len(grid.failed)
        lines.append((f"Table {grid.number} ({grid.profile}): complete", None) if not count else
                     (f"Table {grid.number} ({grid.profile}): {count} of {grid.expected_runs} runs missing or failed:",
                      grid.command))
    for result in figures:
        lines.append((f"Figure {result.number} ({profile}): complete", None) if not result.missing else
                     (f"Figure {result.number} ({profile}): {len(result.missing)} source runs missing:",
                      f"make fig{result.number} PROFILE={profile}"))
    return lines


def write_report(runs: RunSet, results: Path, profile: str | None = None) -> list[Path]:
    from analysis.figures import FIGURE_NUMBERS, render_figure

    results.mkdir(parents=True, exist_ok=True)
    # One profile for the whole report (the one most runs have, unless asked): a page that mixed
    # smoke and paper tables would invite comparing them.
    profile = profile or majority_profile(runs, {run.experiment for run in runs.runs})
    grids: list[Grid] = [build(number, runs, profile) for number in table_numbers()]
    figures = [render_figure(number, runs, profile, results / "figures") for number in FIGURE_NUMBERS]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    envs = [f"{env} ({n} runs)" for env, n in environments(runs)] or ["no runs yet"]
    gaps = missing_cells(grids, figures, profile)

    label = grids[0].profile_line()
    md = ["# S2HPruner reproduction report" + ("" if profile == "paper" else f" ({profile} profile)"), "",
          f"Generated {stamp} from `{results}/runs/` by `python -m analysis report`. Our numbers are computed from "
          "the run records; the paper's appear beside them as the reference.", ""]
    md += [f"**{label}**", ""] if label else []
    md += ["## Runs", ""] + [f"- {line}" for line in run_counts(runs)]
    md += ["", "## Environment of the runs", ""] + [f"- {env}" for env in envs]
    md += ["", "## Missing cells", ""] + [f"- {what}" + (f" `{command}`" if command else "") for what, command in gaps]
    claims, made_on = check_claims(runs, profile), setups(runs, profile)
    md += ["", "## The paper's claims", "", "Each checked on this profile's records (`make claims` runs their grids "
           "on the mini profile).", "", render_claims(claims, profile, made_on=made_on)]
    md += ["", "## Tables", ""]
    for grid in grids:
        md += [markdown(grid, heading="### "), ""]
    md += ["## Figures", ""]
    for result in figures:
        png = result.paths[0].relative_to(results)
        md += [f"### {result.title}", "", f"![{result.title}]({png})", ""]
        md += [f"- missing: {line}" for line in result.missing] + ([""] if result.missing else [])
    md_path = results / "report.md"
    md_path.write_text("\n".join(md) + "\n")

    esc = html.escape
    body = [f"<h1>S2HPruner reproduction report</h1><p>Generated {esc(stamp)} from <code>{esc(str(results))}/runs/"
            "</code>. Our numbers are computed from the run records; the paper's appear beside them as the "
            "reference.</p>", f"<p class='profile'><strong>{esc(label)}</strong></p>" if label else "", "<h2>Runs</h2><ul>" + "".join(f"<li>{esc(x)}</li>" for x in run_counts(runs)) + "</ul>",
            "<h2>Environment of the runs</h2><ul>" + "".join(f"<li>{esc(env)}</li>" for env in envs) + "</ul>",
            "<h2>Missing cells</h2><ul>"]
    body += [f"<li>{esc(what)}" + (f" <code>{esc(command)}</code>" if command else "") + "</li>" for what, command in gaps]
    body.append("</ul><h2>The paper's claims</h2><table><tr><th>source</th><th>claim</th><th>paper</th>"
                f"<th>ours ({esc(profile)})</th><th>verdict</th></tr>")
    body += ["<tr>" + "".join(f"<td>{esc(x)}</td>" for x in (c.source, c.claim, c.paper, c.ours, c.verdict)) + "</tr>"
             for c in claims]
    body.append("</table>" + "".join(f"<p>{esc(line)}</p>" for line in claims_footer(claims, made_on)))
    body.append("<h2>Tables</h2>")
    body += [html_table(grid) for grid in grids]
    body.append("<h2>Figures</h2>")
    for result in figures:
        png = result.paths[0].relative_to(results)
        body.append(f"<h3>{esc(result.title)}</h3><img src='{esc(str(png))}' alt='{esc(result.title)}'>")
    html_path = results / "report.html"
    html_path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>S2HPruner reproduction report"
                         f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return [md_path, html_path]
