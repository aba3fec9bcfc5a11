"""Rules that span several fields, each problem reported with its own path."""

from __future__ import annotations

import os
from typing import Any

from evenflow.config.affinity import hash_key_of
from evenflow.config.model import Config, HttpListener
from evenflow.config.tls import file_problems
from evenflow.core.address import split_host_port


def semantic_problems(config: Config) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, warnings) as (path, message) pairs, for a config the schema already accepted."""
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    used: set[str] = set()

    def need_pool(path: str, name: str) -> None:
        used.add(name)
        if name not in config.pools:
            known = ", ".join(sorted(config.pools))
            errors.append((path, f"pool {name!r} does not exist (pools: {known})"))

    names: dict[str, int] = {}
    binds: dict[tuple[str, str, int], str] = {}
    l4_users: dict[str, str] = {}  # pool → the first tcp/udp listener using it
    udp_users: set[str] = set()
    for i, listener in enumerate(config.listeners):
        where = f"listeners[{i}]"
        if listener.name in names:
            errors.append(
                (f"{where}.name", f"{listener.name!r} is also listeners[{names[listener.name]}]")
            )
        names.setdefault(listener.name, i)
        host, port = split_host_port(listener.bind)
        transport = "udp" if listener.protocol == "udp" else "tcp"  # tcp and udp ports differ
        key = (transport, host, port)
        wildcard = (transport, "0.0.0.0" if ":" not in host else "::", port)
        clash = binds.get(key) or (binds.get(wildcard) if key != wildcard else None)
        if clash is None and host in ("0.0.0.0", "::"):
            clash = next(
                (
                    w
                    for (t, h, p), w in binds.items()
                    if t == transport and p == port and (":" in h) == (":" in host)
                ),
                None,
            )
        if clash is not None:
            errors.append((f"{where}.bind", f"{listener.bind} collides with {clash}"))
        binds[key] = f"{where} ({listener.name})"
        route_names: set[str] = set()
        for j, route in enumerate(getattr(listener, "routes", ())):
            rwhere = f"{where}.routes[{j}]"
            if route.name is not None:
                if route.name in route_names:
                    errors.append((f"{rwhere}.name", f"route name {route.name!r} used twice"))
                route_names.add(route.name)
            if route.pool is not None:
                need_pool(f"{rwhere}.pool", route.pool)
                if listener.protocol != "http":
                    l4_users.setdefault(route.pool, where)
            for k, branch in enumerate(getattr(route, "split", None) or ()):
                need_pool(f"{rwhere}.split[{k}].pool", branch.pool)
        if listener.pool is not None:
            need_pool(f"{where}.pool", listener.pool)
            if listener.protocol != "http":
                l4_users.setdefault(listener.pool, where)
            if listener.protocol == "udp":
                udp_users.add(where)

    for name, where in l4_users.items():
        pool = config.pools.get(name)
        if pool is None:
            continue
        spec = hash_key_of(pool.hash_key)
        if spec is not None and spec.needs_request:
            errors.append(
                (
                    f"pools.{name}.hash_key",
                    f"{pool.hash_key} needs an HTTP request, but the tcp/udp listener {where} "
                    "uses this pool: key on client_ip",
                )
            )
        if pool.send_proxy == "v1" and where in udp_users:
            errors.append(
                (
                    f"pools.{name}.send_proxy",
                    f"PROXY v1 has no UDP form, but the udp listener {where} uses this pool: "
                    "use v2",
                )
            )
        if pool.sticky is not None and pool.sticky.cookie is not None:
            errors.append(
                (
                    f"pools.{name}.sticky.cookie",
                    f"cookie stickiness needs HTTP, but the tcp/udp listener {where} uses this "
                    "pool: use source_ip",
                )
            )
        if pool.protocol == "h2":
            errors.append(
                (
                    f"pools.{name}.protocol",
                    f"h2 speaks HTTP/2 to the backends, but the tcp/udp listener {where} relays "
                    "bytes to this pool: use a pool without protocol: h2",
                )
            )

    for name, pool in config.pools.items():
        cookie = pool.sticky.cookie if pool.sticky is not None else None
        if cookie is not None and cookie.secret_env and not os.environ.get(cookie.secret_env):
            errors.append(
                (
                    f"pools.{name}.sticky.cookie.secret_env",
                    f"environment variable {cookie.secret_env} is not set (or empty)",
                )
            )
        if not any(b.weight > 0 for b in pool.backends):
            errors.append((f"pools.{name}.backends", "at least one backend needs a weight > 0"))
        seen: dict[str, int] = {}
        for k, backend in enumerate(pool.backends):
            host, port = split_host_port(backend.address)
            canonical = f"{host}:{port}"
            if canonical in seen:
                errors.append(
                    (
                        f"pools.{name}.backends[{k}].address",
                        f"{backend.address} is also backends[{seen[canonical]}]",
                    )
                )
            seen.setdefault(canonical, k)
        if name not in used:
            warnings.append((f"pools.{name}", "pool is not used by any listener or route"))

    # TLS files: read (never used) here, so that `check` and a reload catch what the handshake
    # would otherwise discover on the first client
    for i, listener in enumerate(config.listeners):
        if isinstance(listener, HttpListener) and listener.tls is not None:
            found, noted = file_problems(listener.tls, f"listeners[{i}].tls")
            errors += found
            warnings += noted
    for name, pool in config.pools.items():
        if pool.tls is not None:
            found, noted = file_problems(pool.tls, f"pools.{name}.tls")
            errors += found
            warnings += noted
    return errors, warnings


def raw_reference_problems(data: Any) -> list[tuple[str, str]]:
    """The pool references that point nowhere, found in raw data the schema refused.

    Only what can be read safely from a half-valid file: a name a route or listener gives as
    `pool`, or in a `split`, that is not a key of `pools`.
    """
    if not isinstance(data, dict):
        return []
    pools = data.get("pools")
    names = set(pools) if isinstance(pools, dict) else None
    listeners = data.get("listeners")
    if not names or not isinstance(listeners, list):
        return []  # no pools at all is its own error; every reference would repeat it
    problems: list[tuple[str, str]] = []
    known = ", ".join(sorted(str(n) for n in names))

    def check(path: str, name: Any) -> None:
        if isinstance(name, str) and name not in names:
            problems.append((path, f"pool {name!r} does not exist (pools: {known})"))

    for i, listener in enumerate(listeners):
        if not isinstance(listener, dict):
            continue
        check(f"listeners[{i}].pool", listener.get("pool"))
        routes = listener.get("routes")
        for j, route in enumerate(routes if isinstance(routes, list) else []):
            if not isinstance(route, dict):
                continue
            check(f"listeners[{i}].routes[{j}].pool", route.get("pool"))
            split = route.get("split")
            for k, branch in enumerate(split if isinstance(split, list) else []):
                if isinstance(branch, dict):
                    check(f"listeners[{i}].routes[{j}].split[{k}].pool", branch.get("pool"))
    return problems
