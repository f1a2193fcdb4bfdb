"""Live curves in TensorBoard, beside a run's `log.jsonl`: `tensorboard --logdir results/runs`.

Researchers watch training where timm, Lightning and torch-pruning put it, in TensorBoard; the
suite's own `log.jsonl` stays the source the analysis reads. Rank 0 writes, under
`<run folder>/tensorboard/`:

- `train/loss` every `TRAIN_EVERY` steps (the step's loss, not a mean);
- per epoch, at its last step, every number of the epoch's log line: `train/loss_epoch`,
  `train/top1`, `test/top1` (the hard network) and `test/top1_soft` where evaluated, `flops/ratio`
  (the hard network's), `lr`, and the method's own (`mask_lr`, `loss_soft`, `gap_js`, ...);
- for pruners, each group's kept width (`widths/g00`, ...) per epoch, and each pruning decision
  at its step (`decision/train_loss`, the running loss it was made on, with its name as text).

A resumed run opens its writer with `purge_step` one past its checkpoint: TensorBoard's readers
then drop what the interrupted attempt wrote after the checkpoint, so no step appears twice.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

TRAIN_EVERY = 10  # steps between two `train/loss` points
FOLDER = "tensorboard"
# log line keys -> TensorBoard tags (the rest keep their key under `epoch/`)
TAGS = {"train_loss": "train/loss_epoch", "train_top1": "train/top1", "test_top1": "test/top1",
        "test_top1_soft": "test/top1_soft", "test_top1_original": "test/top1_original", "flops_ratio": "flops/ratio",
        "flops_ratio_prunable": "flops/ratio_prunable", "flops_ratio_soft": "flops/ratio_soft", "lr": "lr"}
SKIP = {"epoch", "step", "time_s", "eval_time_s", "widths"}


class Curves:
    """One run's TensorBoard writer (see the module docstring); `enabled=False` writes nothing."""

    def __init__(self, run_folder: Path, resumed_at: int = 0, enabled: bool = True) -> None:
        self.writer = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_folder) / FOLDER), purge_step=resumed_at + 1 if resumed_at else None)

    def step(self, step: int, loss: float) -> None:
        """After the `step`-th step (1-based) of the run."""
        if self.writer is not None and step % TRAIN_EVERY == 0:
            self.writer.add_scalar("train/loss", loss, step)

    def decision(self, step: int, what: str, train_loss: float | None) -> None:
        if self.writer is None:
            return
        if train_loss is not None:
            self.writer.add_scalar("decision/train_loss", train_loss, step)
        self.writer.add_text("decision", what, step)

    def epoch(self, entry: dict[str, Any]) -> None:
        """An epoch's log line, at its last step."""
        if self.writer is None:
            return
        step = int(entry["step"])
        for key, value in entry.items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, numbers.Number):
                continue
            self.writer.add_scalar(TAGS.get(key, f"epoch/{key}"), float(value), step)
        for index, width in enumerate(entry.get("widths") or []):
            self.writer.add_scalar(f"widths/g{index:02d}", width, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
