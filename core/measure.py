"""Counting and measuring networks: FLOPs, parameters, peak memory.

FLOPs are what `torch.utils.flop_counter.FlopCounterMode` counts for one input at the
dataset's resolution (two FLOPs per multiply-add of convolutions and matrix products,
attention included), the counter the run-record contract names; only ratios of such counts
are compared with the paper.

Memory is read from the CUDA allocator on a GPU and from the process's resident set on a CPU;
records say which (`peak_mem_kind`). A run's training peak is the whole process's peak
(network, optimizer state, activations, and on a CPU the interpreter and data too); its
inference figure is the exported network's weights plus the extra memory an evaluation pass
at the evaluation batch size takes. Table 10's controlled measurements are the benchmark's
job (`make bench`), which runs each network alone.
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode


def _register_cpu_attention_flops() -> None:
    """Count CPU fused attention like the CUDA kernels (FlopCounterMode knows only the latter).

    Without this, a transformer's attention products count on a GPU and not on a CPU, and
    FLOPs in records would depend on the device they were measured on.
    """
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(op)
    def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


_register_cpu_attention_flops()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate without leaving a trace: eval mode inside, the previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def count_flops(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """FLOPs of one forward pass of one image, by FlopCounterMode."""
    dtype = next(model.parameters()).dtype
    x = torch.zeros(1, channels, image_size, image_size, device=device_of(model), dtype=dtype)
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timing and memory read after it); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_kind(device: torch.device) -> str:
    return "cuda_peak_allocated" if device.type == "cuda" else "cpu_peak_rss"


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: the CUDA allocator's, or the process's resident-set high-water mark."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    # Linux resets VmHWM to the current RSS when "5" is written here.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def tensor_mb(model: nn.Module) -> float:
    """Size of a network's parameters and buffers."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _proc_status_mb(field: str) -> float | None:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def current_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _proc_status_mb("VmRSS") or 0.0


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MemoryPeak:
    """What a block of code takes at its peak above the memory in use when it began.

    `with MemoryPeak(device) as peak: ...` then `peak.extra_mb`: the CUDA allocator's peak, or
    on a CPU the resident set's high-water mark (reset on entry), minus the memory in use at
    entry. A network already in memory is in that baseline; add `tensor_mb` to count it.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base_mb = 0.0
        self.extra_mb = 0.0

    def __enter__(self) -> "MemoryPeak":
        self.base_mb = current_memory_mb(self.device)
        reset_peak_memory(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        self.extra_mb = peak_memory_mb(self.device) - self.base_mb
