"""The guard that runs a compiled data path only while it matches its sources."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evenflow import native


@pytest.fixture(autouse=True)
def no_choice_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test` runs the unit tests again with EVENFLOW_NATIVE=0: not these."""
    monkeypatch.delenv("EVENFLOW_NATIVE", raising=False)


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    """A package `fakepkg` with one module, on sys.path; forgotten afterwards."""
    root = tmp_path / "fakepkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "hot.py").write_text("WHERE = 'source'\n")
    sys.path.insert(0, str(tmp_path))
    yield root
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n == "fakepkg" or n.startswith("fakepkg.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def write_manifest(package: Path, modules: list[str]) -> Path:
    manifest = package / "_native.json"
    manifest.write_text(json.dumps({"modules": modules, "digest": native.source_digest(package)}))
    return manifest


def test_without_a_manifest_it_runs_as_python_and_says_how_to_build(package: Path) -> None:
    used, why = native.check(package, package / "_native.json")
    assert not used
    assert "scripts/build_native.py" in why


def test_a_build_that_matches_its_sources_is_used(package: Path) -> None:
    manifest = write_manifest(package, ["fakepkg.hot"])
    assert native.check(package, manifest) == (True, "compiled by mypyc (1 modules)")


def test_any_edited_source_makes_the_build_stale(package: Path) -> None:
    manifest = write_manifest(package, ["fakepkg.hot"])
    (package / "__init__.py").write_text("# a module that was not compiled counts too\n")
    used, why = native.check(package, manifest)
    assert not used
    assert "sources changed" in why


def test_a_build_that_compiled_nothing_gives_its_reason(package: Path) -> None:
    manifest = package / "_native.json"
    manifest.write_text(json.dumps({"modules": [], "reason": "no C compiler (cc)"}))
    assert native.check(package, manifest) == (False, "pure Python (no C compiler (cc))")


def test_the_environment_can_turn_a_good_build_off(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write_manifest(package, ["fakepkg.hot"])
    monkeypatch.setenv("EVENFLOW_NATIVE", "0")
    assert native.check(package, manifest) == (False, "pure Python (EVENFLOW_NATIVE=0)")


def test_the_finder_imports_the_source_not_the_extension_beside_it(package: Path) -> None:
    # an extension module Python would import first, and that fails to load if it ever is
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (package / f"hot{suffix}").write_bytes(b"not a shared object")
    importlib.invalidate_caches()
    with pytest.raises(ImportError):
        importlib.import_module("fakepkg.hot")
    del sys.modules["fakepkg"]
    finder = native.SourceFirst("fakepkg", package)
    sys.meta_path.insert(0, finder)
    try:
        assert importlib.import_module("fakepkg.hot").WHERE == "source"
    finally:
        sys.meta_path.remove(finder)


def test_the_finder_leaves_other_packages_alone(package: Path) -> None:
    finder = native.SourceFirst("fakepkg", package)
    assert finder.find_spec("json.decoder", [str(Path(json.__file__).parent)]) is None
    assert finder.find_spec("fakepkg", None) is None  # the package itself: the usual finders
