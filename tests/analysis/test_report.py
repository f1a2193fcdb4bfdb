"""`make report` on whatever records exist: none, or a few hand-made ones."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from analysis.records import load_runs
from analysis.report import write_report
from tests.analysis.test_tables import record


def test_report_with_no_records(tmp_path):
    md_path, html_path = write_report(load_runs(tmp_path), tmp_path)
    md, page = md_path.read_text(), html_path.read_text()
    assert "no run records yet" in md and "Profile:" not in md  # nothing ran: the paper profile, unlabelled
    assert all(f"### Table {n}:" in md for n in range(1, 11)) and md.count("![Figure") == 7
    assert "Table 1 (paper): 48 of 48 runs missing or failed: `python -m experiments run table1 --profile paper`" in md
    assert page.count("<table>") == 11 and page.count("<img ") == 7 and page.rstrip().endswith("</html>")
    # the claims section: every claim listed, none run
    assert "## The paper's claims" in md and "| Table 5 | without g_{G->hard->theta} the hard network collapses" in md
    assert "27 claims: 0 reproduced, 0 contradicted, 0 inconclusive, 27 not run" in md and ">not run</td>" in page
    assert "not reproduced" not in md and "not reproduced" not in page
    # the rule that decides the verdicts, under the table in both forms
    assert "Verdict rule (analysis/verdicts.py): Not run when a compared cell has no finished run. Two cells: Welch's" in md
    assert "<p>Verdict rule (analysis/verdicts.py): Not run when a compared cell" in page
    assert all((tmp_path / "figures" / f"fig{n}.png").stat().st_size > 0 for n in range(3, 10))


def test_report_of_smoke_runs_names_profile_environment_and_missing(tmp_path):
    for seed in (0, 1):
        folder = tmp_path / "runs" / "table9" / f"run{seed}"
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps(record("table9", seed=seed, top1=70.0 + seed, profile="smoke", labels={"seed": str(seed)})))
    # a third seed computed with other CPU kernels on one thread: its own environment line
    third = record("table9", seed=2, top1=72.0, profile="smoke", labels={"seed": "2"})
    third["env"].update(threads=1, cpu_kernels="AVX2")
    (tmp_path / "runs" / "table9" / "run2").mkdir(parents=True)
    (tmp_path / "runs" / "table9" / "run2" / "record.json").write_text(json.dumps(third))
    (tmp_path / "runs" / "table1" / "queued").mkdir(parents=True)
    md_path, html_path = write_report(load_runs(tmp_path), tmp_path)
    md = md_path.read_text()
    assert md.startswith("# S2HPruner reproduction report (smoke profile)") and md.count("Profile: smoke") >= 11
    assert "- table9 (smoke): 3 done" in md and "1 run folders without a record" in md
    assert "python 3.11.7, torch 2.x, cuda none, cpu (x86_64), git abc (2 runs)" in md
    assert "python 3.11.7, torch 2.x, cuda none, cpu (x86_64), threads 1, AVX2 kernels, git abc (1 runs)" in md
    assert "The runs these claims compare come from 2 set-ups: torch 2.x, cuda none, cpu (x86_64) (2 runs); " in md
    assert "A verdict comparing runs of different set-ups" in html_path.read_text()
    assert "- Table 9 (smoke): 1 of 4 runs missing or failed" in md and "- Figure 3 (smoke): 5 source runs missing: `make fig3 PROFILE=smoke`" in md
    assert "70.00 (79.77, -9.77)" in md and "70.00 (79.77, -9.77)" in html_path.read_text()
    assert (tmp_path / "figures" / "fig3-smoke.pdf").exists()


def test_cli_report_and_figure(tmp_path):
    run = [sys.executable, "-m", "analysis"]
    done = subprocess.run([*run, "report", "--results", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "report.md" in done.stdout
    done = subprocess.run([*run, "figure", "3", "--results", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "missing: table1 resnet50" in done.stdout and "make fig3" not in done.stderr
    bad = subprocess.run([*run, "figure", "2"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: no figure 2: the suite draws figures 3-9"


def test_report_lists_an_unreadable_record_and_drops_a_torn_log_line(tmp_path):
    good = tmp_path / "runs" / "table9" / "good"
    good.mkdir(parents=True)
    (good / "record.json").write_text(json.dumps(record("table9", seed=0, top1=70.0, profile="smoke", labels={"seed": "0"})))
    (good / "log.jsonl").write_text('{"epoch": 1, "top1": 50.0}\n{"epoch": 2, "to')  # killed mid-write
    bad = tmp_path / "runs" / "table9" / "bad"
    bad.mkdir(parents=True)
    (bad / "record.json").write_text('{"status": "do')
    runs = load_runs(tmp_path)
    assert [run.path for run in runs.runs] == [good] and [folder for folder, _ in runs.unreadable] == [bad]
    with pytest.warns(UserWarning, match="unterminated last line"):
        assert runs.runs[0].log() == [{"epoch": 1, "top1": 50.0}]
    md = write_report(runs, tmp_path)[0].read_text()
    assert f"- unreadable record, left out: {bad}/record.json (JSONDecodeError:" in md and "- table9 (smoke): 1 done" in md
