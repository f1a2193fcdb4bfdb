"""The README's "your own model" snippet runs as written, on a torchvision model."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippet saves pruned.pt
    text = README.read_text()
    snippet = re.search(r"<!-- own-model -->\n```python\n(.*?)```", text, re.S).group(1)
    images = torch.randn(64, 3, 32, 32)
    labels = torch.randint(0, 10, (64,))
    loader = [(images[i:i + 16], labels[i:i + 16]) for i in range(0, 64, 16)]
    scope = {"loader": loader}
    exec(compile(snippet, "README.md", "exec"), scope)
    pruned, pruning = scope["pruned"], scope["pruning"]
    assert isinstance(pruned, torch.nn.Module) and not isinstance(pruned, type(None))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in scope["model"].parameters())
    assert pruned(images[:2]).shape == (2, 10)
    assert 0 < pruning.flops_ratio < 1
    assert (tmp_path / "pruned.pt").exists()
