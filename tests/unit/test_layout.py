"""Packaging checks (ARCHITECTURE.md §2): names resolve here, the package list is complete.

Owns: checking that each top-level package imports from this repository (the names are generic:
a stray `chain` in site-packages must never win), that every folder with `__init__.py` under them
is listed in `[tool.setuptools] packages` (and nothing listed is missing), that no folder of
modules lacks `__init__.py`, that each top-level package ships `py.typed` (PEP 561), and that the
console scripts point at callables. Must not: build or install anything.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
TOP_LEVEL = ["chain", "p2p", "mempool", "vdf", "training", "linguachaind", "linguachain_cli"]
SETUPTOOLS: dict[str, Any] = PYPROJECT["tool"]["setuptools"]
LISTED: list[str] = SETUPTOOLS["packages"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS.get("package-dir", {})


def source_dir(top: str) -> Path:
    return ROOT / PACKAGE_DIR.get(top, top)


def package_folders(top: str) -> dict[str, Path]:
    """Dotted name -> folder, for every folder with `__init__.py` under `top`."""
    base = source_dir(top)
    found: dict[str, Path] = {}
    for init in sorted(base.rglob("__init__.py")):
        rel = init.parent.relative_to(base)
        if "__pycache__" in rel.parts:
            continue
        found[".".join((top, *rel.parts))] = init.parent
    return found


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_package_resolves_inside_this_repository(name: str) -> None:
    spec = importlib.util.find_spec(name)
    assert spec is not None, f"{name} is not importable: run scripts/bootstrap"
    assert spec.origin is not None, f"{name} is a namespace package: its __init__.py is missing"
    module = importlib.import_module(name)
    assert module.__file__ is not None
    path = Path(module.__file__).resolve()
    assert path.is_relative_to(ROOT), (
        f"{name} resolves to {path}, outside {ROOT}: a foreign package shadows it"
    )
    assert path.parent == source_dir(name)


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_every_package_folder_is_listed(name: str) -> None:
    missing = sorted(set(package_folders(name)) - set(LISTED))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def test_every_listed_package_exists() -> None:
    existing = {pkg for top in TOP_LEVEL for pkg in package_folders(top)}
    assert not sorted(set(LISTED) - existing), "pyproject.toml lists packages that have no __init__.py"
    assert sorted(LISTED) == sorted(set(LISTED)), "a package is listed twice"
    assert {p.split(".")[0] for p in LISTED} == set(TOP_LEVEL)


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_no_folder_of_modules_lacks_init(name: str) -> None:
    base = source_dir(name)
    loose = sorted(
        str(d.relative_to(ROOT))
        for d in {p.parent for p in base.rglob("*.py")}
        if "__pycache__" not in d.parts and not (d / "__init__.py").exists()
    )
    assert not loose, f"folders with modules but no __init__.py (they would not be installed): {loose}"


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_package_is_typed(name: str) -> None:
    assert (source_dir(name) / "py.typed").exists(), f"{name}/py.typed is missing (PEP 561)"


def test_package_data_ships_py_typed() -> None:
    assert "py.typed" in SETUPTOOLS["package-data"]["*"]


SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]


def test_console_scripts_are_declared() -> None:
    assert set(SCRIPTS) == {"linguachaind", "linguachain-cli"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_script_target_is_a_callable_in_this_repository(script: str) -> None:
    module_name, _, attr = SCRIPTS[script].partition(":")
    assert attr, f"{script}: entry point {SCRIPTS[script]!r} needs module:function"
    spec = importlib.util.find_spec(module_name)
    assert spec is not None, f"{script}: module {module_name} does not exist"
    assert spec.origin is not None
    assert Path(spec.origin).resolve().is_relative_to(ROOT)
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr, None)), f"{script}: {module_name}.{attr} is not a callable"


def test_installed_entry_points_match_pyproject() -> None:
    try:
        dist = importlib.metadata.distribution("linguachain")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("linguachain is not installed in this environment (run scripts/bootstrap)")
    installed = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert installed == SCRIPTS, "installed console scripts are stale: re-run scripts/bootstrap"


def test_test_file_names_are_unique_across_tiers() -> None:
    """pytest imports test modules by basename (no packages under tests/): two tiers holding the same
    file name stop collection of the whole suite ("import file mismatch")."""
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a basename"
        seen[path.name] = path
