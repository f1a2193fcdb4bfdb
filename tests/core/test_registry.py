from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.registry import Registry


def test_registry_lookup_and_suggestion():
    registry: Registry = Registry("widget")

    @registry.register("round")
    def round_widget():
        """A round widget."""

    assert registry.names() == ["round"]
    assert registry.get("round").summary == "A round widget"
    with pytest.raises(ConfigError, match="did you mean 'round'"):
        registry.get("rund")


def test_missing_plugin_package_is_tolerated_but_broken_plugins_are_not(tmp_path, monkeypatch):
    assert Registry("x", plugins=("no_such_plugin_package",)).names() == []
    (tmp_path / "broken_plugin.py").write_text("import no_such_dependency_inside\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError):
        Registry("x", plugins=("broken_plugin",)).names()
