"""Code versions: any change to what runs makes a new one, docstrings and comments do not."""

from __future__ import annotations

from pathlib import Path

from core.version import ROOT, code_version, package_version, packages_of, staleness

MODULE = '''"""A module."""

def step(x):
    """Doubles."""
    return 2 * x  # a comment
'''


def _version(root: Path, text: str, extra: dict[str, str] | None = None) -> str:
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    (root / "pkg" / "algo.py").write_text(text)
    for name, body in (extra or {}).items():
        (root / "pkg" / name).write_text(body)
    package_version.cache_clear()
    return package_version("pkg", root)


def test_docstrings_comments_and_layout_keep_the_version_code_changes_it(tmp_path):
    base = _version(tmp_path, MODULE)
    assert _version(tmp_path, MODULE.replace("Doubles.", "Twice the input.").replace("# a comment", "")) == base
    assert _version(tmp_path, MODULE.replace("return 2 * x", "return (2 *\n            x)")) == base
    assert _version(tmp_path, MODULE.replace("2 * x", "3 * x")) != base
    assert _version(tmp_path, MODULE, {"other.py": "Y = 1\n"}) != base  # a new module counts too


def test_each_method_covers_core_and_its_own_package():
    assert packages_of("core.dense") == ("core",)
    assert packages_of("method.pruner") == ("core", "method")
    assert packages_of("baselines.rst_s") == ("core", "baselines")
    package_version.cache_clear()
    ours, theirs = code_version(("core", "method")), code_version(("core", "baselines"))
    assert ours != theirs and len(ours) == 12
    assert (ROOT / "core" / "engine.py").exists()  # hashed from the checkout itself


def test_staleness_names_the_reason():
    current = code_version(("core",))
    assert staleness({"code": {"version": current, "packages": ["core"]}}) == ""
    assert staleness({}) == "stale: no code version recorded"
    assert staleness({"code": {"version": "abc", "packages": ["core"]}}).startswith("stale: code abc, this checkout")
    mixed = {"code": {"version": current, "packages": ["core"], "started_with": "abc"}}
    assert "resumed across code versions" in staleness(mixed)


def test_a_run_resumed_under_other_code_says_it_mixes_versions(interrupted_and_reference, monkeypatch):
    import core.engine
    from core.dense import DensePruner

    def code_changes(run_dir):  # a code change lands while the run is stopped
        real = core.engine.run_code
        monkeypatch.setattr(core.engine, "run_code", lambda cfg: {**real(cfg), "version": "feedfacecafe"})

    reference, resumed = interrupted_and_reference(DensePruner, 3, "train.epochs=2", between=code_changes)
    code = resumed.read_record()["code"]
    assert code["version"] == "feedfacecafe" and code["started_with"] == code_version(("core",))
    assert "started_with" not in reference.read_record()["code"]
    assert "resumed across code versions" in staleness(resumed.read_record())
