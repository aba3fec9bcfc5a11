"""`evenflow run|check|schema|demo|top`: argument parsing and exit codes, nothing else.

Exit codes: 0 success, 1 could not start or run, 2 bad usage or invalid config. A user's
mistake gets one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from evenflow import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"evenflow: {message} (see `evenflow --help`)\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evenflow",
        description="evenflow: a load balancer written in Python.",
    )
    parser.add_argument("--version", action="version", version=f"evenflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", help="run evenflow with a config file")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="YAML config file")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    check = sub.add_parser("check", help="validate a config file; exit 2 with every problem")
    check.add_argument("-c", "--config", required=True, metavar="FILE", help="YAML config file")
    sub.add_parser("schema", help="print the config's JSON Schema")
    demo = sub.add_parser("demo", help="run three demo backends behind evenflow")
    demo.add_argument("--port", type=int, default=8080, help="evenflow's port (default 8080)")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    demo.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    top = sub.add_parser("top", help="a live terminal view of a running evenflow's admin API")
    top.add_argument(
        "--admin",
        default="http://127.0.0.1:9901",
        metavar="URL",
        help="the admin API's address (default http://127.0.0.1:9901)",
    )
    top.add_argument(
        "--token-env",
        metavar="NAME",
        help="environment variable holding the admin API's bearer token, when one is set",
    )
    top.add_argument(
        "--interval", default="1s", help="time between refreshes, as 500ms or 2s (default 1s)"
    )
    top.add_argument("--once", action="store_true", help="print one view and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    if args.command == "schema":
        return _schema()
    if args.command == "check":
        return _check(args.config)
    if args.command == "run":
        return _run(args.config, args.log_level)
    if args.command == "demo":
        return _demo(args.host, args.port, args.log_level)
    if args.command == "top":
        return _top(args.admin, args.token_env, args.interval, args.once)
    return 2


def _setup_logging(level: str) -> None:
    from evenflow.observability.log_writer import stderr_handler

    # a stderr pipe or terminal whose reader stops reading must not stop the event loop
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[stderr_handler(sys.stderr)],
    )


def _schema() -> int:
    from evenflow.config.model import Config

    print(json.dumps(Config.model_json_schema(), indent=2))
    return 0


def _check(path: str) -> int:
    from evenflow.config.load import ConfigError, load_file

    try:
        loaded = load_file(path)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        if len(exc.problems) > 1:
            print(f"{path}: {len(exc.problems)} problems", file=sys.stderr)
        return 2
    for where, message in loaded.warnings:
        print(f"{path}: warning: {where}: {message}", file=sys.stderr)
    config = loaded.config
    print(f"{path}: ok ({len(config.listeners)} listener(s), {len(config.pools)} pool(s))")
    return 0


def _run(path: str, log_level: str) -> int:
    from evenflow.config.load import ConfigError, load_file
    from evenflow.server import StartupError, install_event_loop, serve

    _setup_logging(log_level)
    try:
        loaded = load_file(path)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return 2
    for where, message in loaded.warnings:
        logging.getLogger("evenflow").warning("%s: %s: %s", path, where, message)
    install_event_loop()
    try:
        asyncio.run(serve(loaded.config, path))
    except StartupError as exc:
        print(f"evenflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _demo(host: str, port: int, log_level: str) -> int:
    from evenflow.config.load import ConfigError
    from evenflow.demo.run import run_demo
    from evenflow.server import StartupError, install_event_loop

    _setup_logging(log_level)
    install_event_loop()
    try:
        asyncio.run(run_demo(host, port))
    except ConfigError as exc:  # --host or --port the demo's config refuses
        print(f"evenflow demo: {exc.problems[0][1]}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"evenflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _top(admin: str, token_env: str | None, interval: str, once: bool) -> int:
    from evenflow.config.units import parse_duration
    from evenflow.top import run

    try:
        interval_s = parse_duration(interval)
    except ValueError as exc:
        print(f"evenflow top: --interval: {exc}", file=sys.stderr)
        return 2
    if interval_s < 0.1:
        print("evenflow top: --interval: at least 100ms", file=sys.stderr)
        return 2
    token = None
    if token_env is not None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            why = "is empty" if token_env in os.environ else "is not set"
            print(
                f"evenflow top: --token-env: environment variable {token_env} {why}",
                file=sys.stderr,
            )
            return 2
    try:
        return run(admin, token, interval_s, once=once)
    except KeyboardInterrupt:
        return 0
