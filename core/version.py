"""The code version a run's numbers come from: a hash of the code that computes them.

Chosen over per-method version constants bumped by hand because a forgotten bump is exactly
the silent mix of old and new results this exists to catch. What is hashed:

- the packages a run executes: `core` (engine, data, models, substrate) and the package of its
  method (`method` for S2HPruner, `baselines` for the baselines; a dense run needs `core`
  only), so a fix in a baseline does not mark S2HPruner's runs stale, and back;
- each module's syntax tree without its docstrings (`ast.dump`), so editing a comment or a
  docstring, or re-wrapping lines, keeps the version, while any change to what runs makes a new
  one;
- less the modules that cannot change a number: the command lines, `make clean`, the
  user-loop API, and the lease and version modules themselves.

A refactor that keeps results also makes a new version: that errs on the side of a rerun
offered (`--rerun stale` is the user's choice), never of a stale number passed silently.
Standard library only: the analysis compares versions without importing torch.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION_LENGTH = 12
# Modules that do not take part in computing a run's numbers (paths relative to ROOT).
NOT_RESULTS = frozenset({
    "core/__main__.py", "core/cli.py", "core/clean.py", "core/console.py", "core/lease.py", "core/version.py",
    "core/groups/__main__.py", "core/groups/cli.py", "core/regime.py", "method/api.py",
})


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=None)
def package_version(package: str, root: Path = ROOT) -> str:
    """The hash of one package's result-relevant code (see the module docstring)."""
    digest = hashlib.sha256()
    for path in sorted((root / package).rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in NOT_RESULTS:
            continue
        tree = _strip_docstrings(ast.parse(path.read_text(), filename=relative))
        digest.update(relative.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()[:VERSION_LENGTH]


def code_version(packages: tuple[str, ...] | list[str]) -> str:
    """The version of a run that executes `packages` (e.g. ("core", "method"))."""
    if len(packages) == 1:
        return package_version(packages[0])
    joined = "+".join(f"{p}:{package_version(p)}" for p in sorted(packages))
    return hashlib.sha256(joined.encode()).hexdigest()[:VERSION_LENGTH]


def packages_of(factory_module: str) -> tuple[str, ...]:
    """The packages a method registered in `factory_module` executes: core and its own."""
    top = factory_module.split(".")[0]
    return ("core",) if top == "core" else ("core", top)


def code_of(record: dict) -> tuple[str, ...] | None:
    """(packages...) a record's code version covers, None for records from before versions."""
    code = record.get("code")
    return tuple(code["packages"]) if isinstance(code, dict) and code.get("packages") else None


def staleness(record: dict) -> str:
    """'' for a record of this checkout's code, else why it is stale (for status lines and tables)."""
    packages = code_of(record)
    if packages is None:
        return "stale: no code version recorded"
    if "started_with" in record["code"]:
        return f"stale: resumed across code versions ({record['code']['started_with']} then {record['code']['version']})"
    current = code_version(packages)
    if record["code"].get("version") != current:
        return f"stale: code {record['code'].get('version')}, this checkout {current}"
    return ""
