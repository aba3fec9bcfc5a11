"""Compile evenflow's data path with mypyc, in place: `.venv/bin/python scripts/build_native.py`.

The modules in NATIVE_MODULES are evenflow's per-request code: plain, strictly typed Python that
mypyc turns into C extension modules, written beside their sources (and ignored by git). What
that buys is measured by bench/instructions.py: see ARCHITECTURE.md.

Then it writes evenflow/_native.json: the modules and a digest of every evenflow source. At
`import evenflow`, evenflow/native.py uses the compiled modules only while that digest matches
the sources; after any edit evenflow runs as pure Python until this script runs again (make
test and make bench run it; it does nothing when the build in place matches the sources).
A build that failed is tried again the next time.

It needs mypy (which brings mypyc: a test dependency) and a C compiler. Without them, or when
the compiler fails, it says why, leaves no extension module behind, records the reason in the
manifest, and exits 0: evenflow then runs as pure Python and says so at start. --require turns
that into exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "evenflow"
sys.path.insert(0, str(ROOT))

from evenflow.native import MANIFEST, read_manifest, source_digest  # noqa: E402  (the package, not installed)

# The per-request path of HTTP/1.1 and of HTTP/2's server side, and what they call on every
# request. A module belongs here
# when it is hot and all it receives is what its annotations say (compiled code checks them).
NATIVE_MODULES = [
    "evenflow/proxy/http1/downstream.py",
    "evenflow/proxy/http1/exchange.py",
    "evenflow/proxy/http1/framing.py",
    "evenflow/proxy/http1/heads.py",
    "evenflow/proxy/http1/response_head.py",
    "evenflow/proxy/http1/upstream.py",
    "evenflow/proxy/http2/client_stream.py",
    "evenflow/proxy/http2/downstream.py",
    "evenflow/proxy/http2/downstream_fields.py",
    "evenflow/proxy/http2/engine.py",
    "evenflow/proxy/http2/events.py",
    "evenflow/proxy/http2/field_decoder.py",
    "evenflow/proxy/http2/field_encoder.py",
    "evenflow/proxy/http2/guard.py",
    "evenflow/proxy/watchdog.py",
    "evenflow/core/backend.py",
    "evenflow/core/pool.py",
    "evenflow/core/request.py",
    "evenflow/routing/table.py",
    "evenflow/runtime/snapshot.py",
    "evenflow/policies/headers.py",
    "evenflow/balancing/base.py",
    "evenflow/balancing/least_conn.py",
    "evenflow/balancing/power_of_two.py",
    "evenflow/balancing/random_pick.py",
    "evenflow/balancing/round_robin.py",
    "evenflow/balancing/weighted_round_robin.py",
    "evenflow/observability/access_log.py",
    "evenflow/observability/combined_lines.py",
    "evenflow/observability/json_lines.py",
    "evenflow/observability/log_numbers.py",
    "evenflow/observability/stats.py",
    "evenflow/observability/tracing.py",
    "evenflow/tls/transport.py",
]
MODULE_NAMES = [path.removesuffix(".py").replace("/", ".") for path in NATIVE_MODULES]
GROUP = "evenflow._native"  # the shared library: evenflow/_native__mypyc.<abi>.so
BUILD_TEMP = ROOT / "build" / "native"  # mypyc writes its C to build/, as it always does
BUILD_LOG = ROOT / "build" / "native.log"


def remove_previous() -> None:
    """Every extension module under the package and the manifest: a build starts clean, and a
    failed one leaves nothing half-made to be imported."""
    MANIFEST.unlink(missing_ok=True)
    for suffix in (".so", ".pyd"):
        for path in PACKAGE.rglob(f"*{suffix}"):
            path.unlink()


def write_manifest(modules: list[str], reason: str = "") -> None:
    fields: dict[str, object] = {"modules": modules, "digest": source_digest(PACKAGE)}
    if reason:
        fields["reason"] = reason
    MANIFEST.write_text(json.dumps(fields, indent=1) + "\n")


def compiler_missing() -> str:
    compiler = os.environ.get("CC", "cc").split()[0]
    return "" if shutil.which(compiler) else f"no C compiler ({compiler} is not on PATH)"


def compile_in_place() -> None:
    """mypyc writes the C, setuptools' build_ext compiles it next to the sources."""
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped,unused-ignore]

    extensions = mypycify(
        NATIVE_MODULES,
        opt_level="3",
        group_name=GROUP,
        multi_file=True,  # several C files, compiled in parallel below
    )
    for extension in extensions:
        # mypyc puts a dotted group's header in a directory its multi-file C does not look in
        extension.include_dirs.append(str(Path("build", *GROUP.split(".")[:-1])))
    distribution = Distribution({"name": "evenflow", "ext_modules": extensions})
    build_ext = distribution.get_command_obj("build_ext")
    build_ext.inplace = True
    build_ext.parallel = os.cpu_count() or 1
    build_ext.build_temp = str(BUILD_TEMP / "temp")
    distribution.run_command("build_ext")


def up_to_date() -> bool:
    """A build of these modules from exactly these sources is in place."""
    manifest = read_manifest()
    return (
        manifest is not None
        and manifest.get("modules") == MODULE_NAMES
        and manifest.get("digest") == source_digest(PACKAGE)
        and all(any(ROOT.glob(f"{path.removesuffix('.py')}.*.so")) for path in NATIVE_MODULES)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require", action="store_true", help="exit 1 when it cannot compile")
    parser.add_argument("--force", action="store_true", help="build even when up to date")
    args = parser.parse_args()
    os.chdir(ROOT)  # mypyc takes the module paths, and pyproject.toml's mypy settings, from here
    if not args.force and up_to_date():
        print("build_native: the compiled build matches the sources")
        return 0
    remove_previous()
    started = time.monotonic()
    reason = compiler_missing()
    if not reason:
        try:
            import mypyc  # noqa: F401
        except ImportError:
            reason = "mypyc is not installed (it comes with mypy, a test dependency)"
    if not reason:
        # mypyc's and the compiler's lines go to build/native.log; the terminal gets them
        # only when something failed
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output):
                compile_in_place()
        except (Exception, SystemExit) as exc:  # a compiler error, a mypy error: say which
            remove_previous()
            print(output.getvalue()[-4000:], file=sys.stderr)
            detail = str(exc).strip().splitlines()
            reason = f"mypyc could not compile it ({detail[-1] if detail else type(exc).__name__})"
        finally:
            BUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
            BUILD_LOG.write_text(output.getvalue())
    if reason:
        write_manifest([], reason)
        print(f"build_native: evenflow stays pure Python: {reason}", file=sys.stderr)
        return 1 if args.require else 0
    write_manifest(MODULE_NAMES)
    print(
        f"build_native: {len(MODULE_NAMES)} modules compiled in {time.monotonic() - started:.0f} s "
        f"(output: {BUILD_LOG.relative_to(ROOT)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
