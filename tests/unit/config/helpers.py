"""Small configs to break one piece at a time, and the problems the loader reports for them."""

from __future__ import annotations

import copy
from typing import Any

from evenflow.config.load import ConfigError, Loaded, load_data

SOURCE = "test.yaml"

MINIMAL: dict[str, Any] = {
    "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "routes": [{"pool": "web"}]}],
    "pools": {"web": {"backends": ["10.0.0.1:8000"]}},
}


def config(**top: Any) -> dict[str, Any]:
    """MINIMAL with `listener` merged, `routes` and `pools` replaced, other top-level keys added."""
    data = copy.deepcopy(MINIMAL)
    listener = data["listeners"][0]
    listener.update(top.pop("listener", {}))
    if "routes" in top:
        listener["routes"] = top.pop("routes")
    if "pools" in top:
        data["pools"] = top.pop("pools")
    data.update(top)
    return data


def with_route(**route: Any) -> dict[str, Any]:
    """MINIMAL whose single route is `route` (pool web unless given)."""
    if "split" not in route:
        route.setdefault("pool", "web")
    return config(routes=[route])


def with_backends(*backends: Any, **pool: Any) -> dict[str, Any]:
    return config(pools={"web": {"backends": list(backends), **pool}})


def load(data: dict[str, Any], env: dict[str, str] | None = None) -> Loaded:
    return load_data(data, SOURCE, {} if env is None else env)


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Every (path, message) the loader reports; fails the test if the config is accepted."""
    try:
        load(data, env)
    except ConfigError as exc:
        assert exc.source == SOURCE
        return exc.problems
    raise AssertionError("the config was accepted")


def problem(data: dict[str, Any], env: dict[str, str] | None = None) -> tuple[str, str]:
    """The one problem the loader reports for `data`."""
    found = problems(data, env)
    assert len(found) == 1, found
    return found[0]
