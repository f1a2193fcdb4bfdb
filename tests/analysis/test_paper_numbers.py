"""The transcription of the paper's tables (results/paper/*.csv): shape, and every number
re-read from the paper's text."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAPER_DIR = ROOT / "results" / "paper"
PAPER_TEXT = ROOT.parent / "shared" / "paper" / "s2hpruner-neurips2024.txt"
METHODS = ["rst_s", "group_sl", "otov2", "refill", "s2hpruner"]
PAPER_NAMES = {"rst_s": "RST-S [1]", "group_sl": "Group-SL [14]", "otov2": "OTOv2 [6]", "refill": "Refill [5]", "s2hpruner": "Ours"}


def rows(table: int) -> list[dict[str, str]]:
    with open(PAPER_DIR / f"table{table}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", line)]


@pytest.fixture(scope="module")
def text() -> list[str]:
    if not PAPER_TEXT.exists():
        pytest.skip(f"the paper's text is not at {PAPER_TEXT}")
    return PAPER_TEXT.read_text().splitlines()


def after(text: list[str], anchor: str, prefix: str) -> str:
    start = next(i for i, line in enumerate(text) if anchor in line)
    return next(line for line in text[start:] if line.startswith(prefix))


@pytest.mark.parametrize(("table", "models", "methods"), [
    (1, ["resnet50", "mobilenetv3", "wrn28_10"], METHODS),
    (2, ["resnet50", "mobilenetv3", "wrn28_10"], METHODS),
    (3, ["vit", "swin"], ["rst_s", "s2hpruner"]),
])
def test_benchmark_tables(text, table, models, methods):
    data = rows(table)
    assert len(data) == len(models) * (1 + 3 * len(methods))
    assert {r["model"] for r in data} == set(models) and {r["method"] for r in data} == {"dense", *methods}
    assert {float(r["flops_target"]) for r in data if r["method"] != "dense"} == {0.15, 0.35, 0.55}
    header = numbers(after(text, f"Table {table}:", "MethodResNet" if table < 3 else "MethodViT"))
    assert [float(r["top1"]) for r in data if r["method"] == "dense"] == header
    for method in methods:
        printed = numbers(after(text, f"Table {table}:", PAPER_NAMES[method]))
        ours = [float(r["top1"]) for r in data if r["method"] == method]
        assert ours == printed, method


def test_table4_every_row_with_its_epochs(text):
    data = rows(4)
    start = next(i for i, line in enumerate(text) if line.startswith("Method Unpruned top-1"))
    printed = text[start + 1 : start + 1 + len(data)]
    assert len(data) == 46 and sum(r["method"] == "s2hpruner" for r in data) == 5
    for row, line in zip(data, printed):
        name = "Ours" if row["method"] == "s2hpruner" else row["method"]
        assert line.startswith(name + " ") or line.startswith(name + "[") or line.split(" [")[0] == name, (row, line)
        cells = [c for c in line.split("]")[-1].split()] if "[" in line else line.split()[1:]
        expected = [row[k] or "-" for k in ("unpruned_top1", "top1", "top1_drop", "flops_percent", "epochs_pruning", "epochs_extra")]
        assert cells == expected, line
    assert [float(r["flops_target"]) for r in data if r["method"] == "s2hpruner"] == [0.15, 0.25, 0.35, 0.55, 0.75]


def test_table5_switches_and_accuracies(text):
    data = rows(5)
    start = next(i for i, line in enumerate(text) if "Table 5:" in line)
    printed = [line for line in text[start:start + 12] if re.match(r"^[✓x] ", line)]
    assert len(data) == len(printed) == 7
    keys = ["g_l_theta", "g_g_hard_theta", "g_g_soft_theta", "g_l_w", "g_g_w"]
    for row, line in zip(data, printed):
        marks = line.split()[:5]
        assert [row[k] == "true" for k in keys] == [m == "✓" for m in marks]
        assert float(row["top1"]) == numbers(line)[-1]


def test_tables_6_to_10(text):
    t6 = {r["formulation"]: r for r in rows(6)}
    for name, label in (("alt1", "Alt 1"), ("alt2", "Alt 2"), ("ours", "Ours")):
        line = after(text, "Table 6:", label + " ")
        printed = numbers(line)
        values = [float(t6[name][k]) for k in ("js", "l2", "top1_original", "top1_soft", "top1_hard") if t6[name][k]]
        assert values == printed, line
    t7 = rows(7)
    assert [int(r["epochs"]) for r in t7] == [0, 10, 50, 100, 250, 500]
    soft = numbers(after(text, "Table 7:", "Top-1 Acc (%)θ⊙w"))
    hard = numbers(after(text, "Table 7:", "θ⟨ˆm⟩76"))
    assert [float(r["top1_soft"]) for r in t7[1:]] == soft and [float(r["top1_hard"]) for r in t7[1:]] == hard
    assert t7[0]["top1_soft"] == "79.41" and "solely trained soft network before fine-tuning is 79.41%" in " ".join(text)
    assert [float(r["top1"]) for r in rows(8)] == numbers(after(text, "Table 8:", "Top-1 Acc (%)"))
    t9 = rows(9)
    assert [float(r["top1"]) for r in t9] == numbers(after(text, "Table 9:", "Top-1 Acc (%)"))
    assert [float(r["flops_percent"]) for r in t9] == numbers(after(text, "Table 9:", "FLOPs (%)"))
    t10 = rows(10)
    assert {r["method"] for r in t10} == set(METHODS) and len(t10) == 25
    for metric, label in (("top1_1x", "Top-1 Acc (%) (1x"), ("top1_2x", "Top-1 Acc (%) (2x"), ("gpu_time_per_epoch_s", "GPU time per epoch"),
                          ("peak_mem_mb_train", "Peak GPU memory (MB) (training)"), ("peak_mem_mb_infer", "Peak GPU memory (MB) (inference)")):
        line = after(text, "Table 10:", label)
        printed = [float(x) for x in re.findall(r"(?<![\dx(])\d+(?:\.\d+)?(?![\dx])", line.split(")")[-1])]
        ours = [float(r["value"]) for r in t10 if r["metric"] == metric and r["value"]]
        assert ours == printed, line
