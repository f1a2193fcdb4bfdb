"""Tiny experiment grids for the dispatch tests (the smoke recipe, shrunk further)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHRINK = ["data.options.train_size=64", "data.options.test_size=16", "train.epochs=1", "train.batch_size=16", "progress=false"]


@pytest.fixture
def grid(tmp_path):
    """`grid(text)`: a user grid file in this test's folder; returns its path as a string."""

    def write(body: str, name: str = "mine") -> str:
        path = Path(tmp_path) / f"{name}.yaml"
        path.write_text(f"name: {name}\n" + body)
        return str(path)

    return write
