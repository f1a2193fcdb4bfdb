"""Where the soft and hard forward passes of a step run: one stream, or two (Appendix F).

Appendix F overlaps the soft and the hard network's passes on two CUDA streams. With
`prune.options.streams=two` the hard forward pass is issued on a side stream that waits only
for what the step computed before the soft pass (the masks and their hard positions), so on a
GPU it can run while the soft pass still runs on the current stream; the current stream then
waits for the side stream before it reads the hard outputs. The backward passes need no
arrangement: autograd runs each node's backward on the stream its forward ran on and
synchronises with the calling stream (PyTorch's "stream semantics of backward passes").
Python still issues the soft pass before the hard one, so random draws (dropout, drop-path)
come in the sequential step's order.

What may differ from the sequential step: only the BatchNorm running statistics, which both
passes update in place and which, on two streams, may be read and written in another order.
In training mode BatchNorm normalises with the batch's own statistics, so no output and no
gradient reads them, and every evaluated or exported network has them recomputed first
(`method.evaluation.recalibrate_bn`).

Off by default until `python -m bench gpu-check` has compared it with the sequential step on
a GPU (bench/README.md, "GPU check"). Without CUDA the same code runs with torch's CPU stream
stand-ins, which order nothing: the step is then the sequential one, which the tests check.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

STREAMS = ("one", "two")


class PassStreams:
    """The side stream of the hard pass (`two`), or nothing to arrange (`one`). The stream is
    made on the device of the first step's batch (the model may move after the method is built)."""

    def __init__(self, mode: str) -> None:
        self.two = mode == "two"
        self.cuda = False
        self.device: torch.device | None = None
        self.side = None

    def _current(self):  # type: ignore[no-untyped-def]
        return torch.cuda.current_stream(self.device) if self.cuda else torch.cpu.current_stream()

    def _stream(self, stream):  # type: ignore[no-untyped-def]
        return torch.cuda.stream(stream) if self.cuda else torch.cpu.stream(stream)

    def fork(self, device: torch.device) -> None:
        """Mark the point of the current stream the hard pass may start from (before the soft pass)."""
        if not self.two:
            return
        if self.side is None or device != self.device:
            self.device, self.cuda = device, device.type == "cuda"
            self.side = torch.cuda.Stream(device) if self.cuda else torch.cpu.Stream()
        self.side.wait_stream(self._current())

    @contextlib.contextmanager
    def hard(self, *inputs: torch.Tensor) -> Iterator[None]:
        """Issue the hard pass on the side stream; `inputs`, made on the current stream, are kept
        alive until the side stream is done with them."""
        if self.side is None:
            yield
            return
        for tensor in inputs:
            if tensor.is_cuda:
                tensor.record_stream(self.side)
        with self._stream(self.side):
            yield

    def join(self, *outputs: torch.Tensor) -> None:
        """The current stream waits for the side stream; `outputs`, made there, are kept alive
        until the current stream is done with them."""
        if self.side is None:
            return
        current = self._current()
        current.wait_stream(self.side)
        for tensor in outputs:
            if tensor.is_cuda:
                tensor.record_stream(current)
