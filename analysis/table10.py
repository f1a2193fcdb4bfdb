"""Table 10: the methods' training efficiency, from the runs and, where it has run, the benchmark."""

from __future__ import annotations

import pandas as pd

from analysis import paper
from analysis.cells import Builder, Slot, tuples
from analysis.frame import finished, frame, label
from analysis.grid import DASH, Comparison, Grid, Row, Stat
from analysis.records import Run, RunSet
from core import catalog  # standard library only


def _device(run: Run) -> str:
    """Where a run measured its own time and memory, and which memory."""
    return f"{(run.record.get('env') or {}).get('device', '?')}, {run.metrics.get('peak_mem_kind', 'memory')}"


def _devices(slots: list[Slot]) -> str:
    done = [slot.done["run"] for slot in slots]
    kinds = (pd.concat(done) if done else pd.Series(dtype=object)).map(_device).value_counts().sort_index()
    return "; ".join(f"{kind} ({n} runs)" for kind, n in kinds.items()) or "no runs yet"


def table10_cell(rows: pd.DataFrame) -> pd.Series:
    """Table 10's (schedule, method) of each row from its Table 10 labels (missing without both)."""
    schedule, method = label(rows, "schedule"), label(rows, "method")
    return tuples(rows, schedule, method).where(schedule.notna() & method.notna())


def table10_exports(runs: RunSet) -> list[Run]:
    """The finished runs of Table 10's 1x column, every profile: whose exported networks `make bench` measures."""
    rows = frame(runs)
    rows = finished(rows[(rows["experiment"] == "table10") & (rows["cell_profile"] == rows["profile"])])
    return rows[table10_cell(rows).map(lambda cell: isinstance(cell, tuple) and cell[0] == "1x").astype(bool)] \
        .drop_duplicates("position")["run"].tolist()


def _bench_row(name: str, row: Row, values: list[tuple[float, ...]], decimals: int) -> Row:
    """`row` with its cells replaced by benchmark values, each beside the paper's number it had."""
    cells: list[Comparison | str] = []
    for cell, measured in zip(row.cells, values):
        cells.append(Comparison(Stat(measured), cell.paper if isinstance(cell, Comparison) else None, decimals))
    return Row([name], cells)


def _s2h_steps_note(bench: dict) -> str:
    """S2HPruner's steps (at the target, at initialisation, with step_memory=low) beside the
    dense step and memory of the same benchmark."""
    rows = {(row["method"], row.get("masks"), row.get("step_memory") == "low"): row
            for row in bench["training"] if "error" not in row}
    target, init, low, dense = (rows.get(key) for key in (
        ("s2hpruner", "target", False), ("s2hpruner", "init", False), ("s2hpruner", "target", True), ("dense", None, False)))
    if dense is None:
        return ""

    def own(row: dict, what: str) -> str:  # the ratio free of the machine's drift, where the row has it
        return f", {row['step_over_soft_pass']:.2f}x {what}" if "step_over_soft_pass" in row else ""

    notes = [f"{row['step_s_median'] / dense['step_s_median']:.2f}x the dense step's {dense['epoch_s']:.0f} s per epoch"
             f"{own(row, 'its own soft forward and backward pass in the same steps')}, "
             f"and {row['peak_mem_mb_train'] / dense['peak_mem_mb_train']:.2f}x its {dense['peak_mem_mb_train']:.0f} MB"
             for row in (target,) if row is not None]
    notes += [f"at initialisation {row['epoch_s']:.0f} s per epoch, {row['step_s_median'] / dense['step_s_median']:.2f}x "
              f"the dense step's{own(row, 'its own')}" for row in (init,) if row is not None]
    notes += [f"with step_memory=low {row['epoch_s']:.0f} s per epoch and {row['peak_mem_mb_train']:.0f} MB "
              f"against dense {dense['peak_mem_mb_train']:.0f} MB" for row in (low,) if row is not None]
    return f" ({'; '.join(notes)})" if notes else ""


def table10(runs: RunSet, profile: str) -> Grid:
    b = Builder(10, runs, profile, table10_cell)
    metrics = [("top1_1x", "Top-1 Acc (%) (1x training schedule)", "top1", 2),
               ("top1_2x", "Top-1 Acc (%) (2x training schedule)", "top1", 2),
               ("gpu_time_per_epoch_s", "Time per epoch (s)", "epoch_time_s", 2),
               ("peak_mem_mb_train", "Peak memory (MB) (training)", "peak_mem_mb_train", 0),
               ("peak_mem_mb_infer", "Peak memory (MB) (inference)", "peak_mem_mb_infer", 0)]
    rows = []
    methods = catalog.compared()
    layout = pd.DataFrame([(metric, method) for metric, *_ in metrics for method in methods], columns=["metric", "method"])
    references = iter(paper.join(layout, 10, "value"))
    once: list[Slot] = []
    for metric, name, field_name, decimals in metrics:
        schedule = "2x" if metric == "top1_2x" else "1x"
        cells: list[Comparison | str] = []
        for method in methods:
            reference = next(references)
            if schedule == "2x" and method == catalog.ours():
                cells.append(DASH)  # the paper runs no 2x schedule for its own method
                continue
            slot = b.slot((schedule, method), f"{'table1' if schedule == '1x' else 'table10'} resnet50 {method} 15% "
                          f"({schedule} schedule)", 0.15)
            if schedule == "1x" and all(slot is not seen for seen in once):
                once.append(slot)
            cells.append(b.entry(slot, field_name, reference, decimals=decimals, flops_mark=metric.startswith("top1")))
        rows.append(Row([name], cells))
    bench = runs.training_bench()
    exported = {row["run_id"]: row for row in (bench or {}).get("exported", []) if "error" not in row}
    benched = [[exported[run_id] for run_id in slot.done["run_id"] if run_id in exported] for slot in once]
    from_runs = [what for what, used in (("time and training memory", bench is None),
                                         ("inference memory", not any(benched))) if used]
    notes = []
    if from_runs:
        notes.append(f"{' and '.join(from_runs).capitalize()}: measured inside the 1x training runs, on: "
                     f"{_devices(once)}. The paper's were measured on its GPU; CPU memory is peak RSS. "
                     "`make bench` measures them alike for every method, the exported networks once the runs finish.")
    if bench is not None:
        # S2HPruner's row is its step with the masks at the target, where a run spends it
        measured = {row["method"]: row for row in bench["training"]
                    if "error" not in row and row.get("masks") != "init" and row.get("step_memory") != "low"}
        device = f"[bench: {bench['device']}]"
        for index, (name, field_name, decimals) in ((2, ("Time per epoch (s)", "epoch_s", 2)),
                                                    (3, ("Peak memory (MB) (training)", "peak_mem_mb_train", 0))):
            values = [measured.get(method, {}).get(field_name) for method in methods]
            rows[index] = _bench_row(f"{name} {device}", rows[index], [() if v is None else (float(v),) for v in values],
                                     decimals)
        notes.insert(0, f"Rows marked [bench]: `python -m bench` on {bench['device']} ({bench.get('date', '?')[:10]}): "
                        "the median training step at batch 64 times 782 steps, and the peak training memory "
                        f"({next(iter(measured.values()), {}).get('memory_kind', '?')}), every method in a fresh "
                        "process on synthetic CIFAR-100-shaped data. The baselines' step is the mean over their "
                        "phases weighted by the phases' steps in a paper-profile run; S2HPruner's is with its masks "
                        "at the target" + _s2h_steps_note(bench) + ".")
    if any(benched):
        rows[4] = _bench_row(f"Peak memory (MB) (inference) {device}", rows[4],
                             [tuple(row["peak_mem_mb_infer"] for row in found) for found in benched], 0)
        kinds = sorted({str(row.get("memory_kind", "?")) for found in benched for row in found})
        unmeasured = [f"{slot.description} {run_id}" for slot in once for run_id in slot.done["run_id"]
                      if run_id not in exported]
        notes.insert(1, "Inference memory [bench]: the peak of one forward pass at batch 64 of each 1x run's "
                        f"exported pruned.pt, its own tensors included ({', '.join(kinds)}), in a fresh process."
                        + (f" Not in the benchmark (run `make bench` again): {'; '.join(unmeasured)}."
                           if unmeasured else ""))
    return b.grid("Table 10: training efficiency of the methods (ResNet-50, CIFAR-100, 15 % FLOPs)", [""],
                  [catalog.card(method).short for method in methods], rows, notes=notes)  # type: ignore[union-attr]
