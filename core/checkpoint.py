"""Checkpoints, and the random-number state that a resumed run must pick up exactly.

Checkpoints hold tensors and primitives only, so `torch.load(..., weights_only=True)` reads
them: no pickled code runs when a run resumes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.files import atomic_write


def save_torch(obj: Any, path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle))


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA generator states as tensors and primitives."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
