"""Whether the data path runs compiled by mypyc, and the guard that keeps a stale build out.

`scripts/build_native.py` (run by `make test` and `make bench`) compiles the data-path modules
with mypyc into C extension modules beside their sources, then writes MANIFEST: a digest of
every evenflow source file the build read. Compiled or not, the code is the same typed Python;
compiled, a proxied request costs about a third fewer instructions (bench/instructions.py).

Python imports an extension module in preference to the source beside it, so a source edited
after the build would silently run as the old code. `import evenflow` calls `activate()`, which
compares the manifest with the sources. When they differ, when there is no manifest, or when
EVENFLOW_NATIVE=0 is set, it puts a finder first on sys.meta_path that imports every evenflow
module from its .py file. The digest covers all of evenflow, not only the compiled modules:
compiled code checks the types of what it receives, so a changed annotation elsewhere matters.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "_native.json"
DISABLE_VARIABLE = "EVENFLOW_NATIVE"  # "0": run as pure Python even when a build is present

# set by activate(): what runs, and why in a few words (`evenflow run` logs it at start)
compiled = False
status = "pure Python (not activated)"


def source_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over every .py file of the package: its path relative to the package, and bytes."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def read_manifest(manifest: Path = MANIFEST) -> dict[str, object] | None:
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check(package_dir: Path = PACKAGE_DIR, manifest: Path = MANIFEST) -> tuple[bool, str]:
    """(use the compiled modules?, why) for the package at `package_dir`."""
    if os.environ.get(DISABLE_VARIABLE, "") == "0":
        return False, f"pure Python ({DISABLE_VARIABLE}=0)"
    data = read_manifest(manifest)
    if data is None:
        return False, "pure Python (no compiled build: scripts/build_native.py makes one)"
    modules = data.get("modules")
    if not isinstance(modules, list) or not modules:
        return False, f"pure Python ({data.get('reason', 'the build compiled nothing')})"
    if data.get("digest") != source_digest(package_dir):
        return False, "pure Python (sources changed since the compiled build; rebuild it)"
    return True, f"compiled by mypyc ({len(modules)} modules)"


class SourceFirst(importlib.abc.MetaPathFinder):
    """Imports the modules under `package_dir` from their .py files, never an extension beside."""

    def __init__(self, package: str, package_dir: Path) -> None:
        self.prefix = package + "."
        self.package_dir = str(package_dir)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(self.prefix) or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            if not entry.startswith(self.package_dir):
                continue
            source = os.path.join(entry, leaf + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None  # a package or a name that is not ours: the usual finders decide


def activate() -> None:
    """Decide, once, before any data-path module is imported, whether compiled code may run."""
    global compiled, status
    compiled, status = check()
    if not compiled and not any(isinstance(f, SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceFirst(__package__ or "evenflow", PACKAGE_DIR))
