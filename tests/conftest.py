"""Shared test helpers: tiny, fast configurations of the real code paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.config import RunConfig, load

# Small enough to train an epoch in well under a second on one CPU core, big enough to learn.
TINY = [
    "model.name=resnet50",
    "model.width=0.0625",
    "data.name=synthetic",
    "data.options.image_size=16",
    "data.options.train_size=96",
    "data.options.test_size=48",
    "train.epochs=2",
    "train.batch_size=16",
    "train.eval_batch_size=48",
    "progress=false",
]


def tiny_config(root: Path, *overrides: str) -> RunConfig:
    return load([*TINY, f"output_root={root}", *overrides])


@pytest.fixture
def tiny_args(tmp_path):
    """The tiny config as `key=value` arguments, for `python -m core run` subprocesses."""
    return lambda *overrides: [*TINY, f"output_root={tmp_path / 'results'}", *overrides]


@pytest.fixture
def tiny(tmp_path):
    """`tiny(*overrides)`: a resolved tiny config writing under this test's tmp folder."""
    return lambda *overrides: tiny_config(tmp_path / "results", *overrides)


@pytest.fixture(autouse=True)
def _single_thread():
    """Deterministic, and fair to the two cores of a CI machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
