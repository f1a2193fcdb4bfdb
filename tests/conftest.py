"""Shared test helpers: tiny, fast configurations of the real code paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Every run a test starts trains on one thread, in this process or in a child (`python -m core
# run`, an executor's worker): the entry points size torch's threads from $S2H_THREADS
# (core/env.py), and the setting meant for real runs (every CPU of the machine) must not reach a
# test. Two pytest workers share the machine (`make test`: -n 2); a tiny network on two threads
# beside another worker runs an order of magnitude slower than on one.
os.environ["S2H_THREADS"] = "1"
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import pytest
import torch

from core.config import RunConfig
from core.resolve import load
from core.export import load_pruned

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


@pytest.fixture
def interrupted_and_reference(tiny, tmp_path, monkeypatch):
    """`interrupted_and_reference(pruner_class, at_step, *overrides)` -> (reference, resumed) run dirs.

    The reference runs straight through; the other gets a real SIGUSR2 after step `at_step`
    (through a wrapped `train_step`), stops with its checkpoint, and is run again to the end;
    `between(run_dir)`, if given, sees the stopped run's folder before it resumes.
    """
    import os
    import signal

    from core.engine import RunInterrupted, run

    def go(cls, at_step: int, *overrides: str, between=None):
        reference = run(tiny(*overrides, f"output_root={tmp_path / 'reference'}"), handle_signals=False).run_dir
        original = cls.train_step

        def signalling(self, inputs, targets, epoch, step):
            result = original(self, inputs, targets, epoch, step)
            if step + 1 == at_step:
                os.kill(os.getpid(), signal.SIGUSR2)
            return result

        cfg = tiny(*overrides)
        monkeypatch.setattr(cls, "train_step", signalling)
        with pytest.raises(RunInterrupted):
            run(cfg)
        monkeypatch.setattr(cls, "train_step", original)
        if between is not None:
            from core.records import RunDir

            between(RunDir.for_config(cfg))
        return reference, run(cfg).run_dir

    return go


def same_export(a, b) -> bool:
    """Whether two run folders exported bit-identical networks."""
    wa, wb = (load_pruned(d.export).state_dict() for d in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture
def exports_equal():
    return same_export


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """`plugin(name, source, registry)`: a module outside the suite, written under this test's tmp
    folder and named in `$S2H_PLUGINS` (core/catalog.py), as a user's own module would be; what
    it registers in `registry` (a `core.registry.Registry`, or a plain dict such as
    `analysis.tables.TABLES`) and declares in the catalog is forgotten after the test."""
    from core import catalog

    names: list[str] = []
    dicts: list[tuple[dict, dict]] = []

    def write(name: str, source: str, registry) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setenv(catalog.PLUGINS_VARIABLE, name)
        if isinstance(registry, dict):  # its registration goes with the test
            dicts.append((registry, dict(registry)))
        else:
            monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        names.append(name)
        return name

    yield write
    for registry, before in dicts:
        registry.clear()
        registry.update(before)
    for name in names:
        catalog.forget(name, module=name)
        sys.modules.pop(name, None)
