"""The admin API over real sockets: reading state, every operator action, and their errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from admin_support import Start, backend_url, base_config, by_address

from evenflow.demo.backend import DemoBackend

pytestmark = pytest.mark.timeout(20)

NOT_A_DURATION = "is not a duration: write it with a unit, as 250ms, 5s, 2m or 1h"

# --- reading state ----------------------------------------------------------------------------


async def test_pools_and_pool_show_every_backend(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    a, b, c = (backends[name].address for name in "abc")

    answer = await run.admin.get("/api/v1/pools")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    pools = {pool["name"]: pool for pool in answer.json()["pools"]}
    assert set(pools) == {"web", "api"}
    assert set(by_address(pools["web"])) == {a, b}
    assert set(by_address(pools["api"])) == {c}

    web = (await run.admin.get("/api/v1/pools/web")).json()
    assert (web["algorithm"], web["usable"], web["panic"]) == ("round_robin", 2, False)
    backend = by_address(web)[a]
    assert backend["state"] == "healthy"
    assert (backend["weight"], backend["config_weight"], backend["in_flight"]) == (1, 1, 0)

    one = await run.admin.get(backend_url("web", a))
    assert one.status_code == 200
    assert one.json()["address"] == a


async def test_unknown_pool_backend_and_endpoint_are_404(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    a = backends["a"].address
    cases = [
        ("GET", "/api/v1/pools/nope", "no pool 'nope'"),
        ("GET", backend_url("nope", a), "no pool 'nope'"),
        ("POST", backend_url("nope", a, "drain"), "no pool 'nope'"),
        ("POST", backend_url("web", "10.9.9.9:1", "enable"), "has no backend '10.9.9.9:1'"),
        ("POST", backend_url("api", a, "disable"), f"has no backend '{a}'"),
        ("DELETE", backend_url("web", "10.9.9.9:1"), "has no backend"),
        ("POST", "/api/v1/pools/nope/backends", "no pool 'nope'"),
        ("GET", "/api/v1/nothing", "no endpoint /api/v1/nothing"),
    ]
    for method, url, says in cases:
        body = {"address": "10.0.0.1:80"} if url.endswith("/backends") else None
        answer = await run.admin.request(method, url, json=body)
        assert answer.status_code == 404, (method, url, answer.text)
        assert says in answer.json()["error"], (method, url)


async def test_wrong_method_is_405_with_allow(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    answer = await run.admin.delete("/api/v1/pools")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"
    assert answer.json() == {"error": "DELETE is not allowed on /api/v1/pools (allowed: GET)"}
    answer = await run.admin.get("/api/v1/reload")
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")


# --- operator actions -------------------------------------------------------------------------


async def test_disable_and_enable_move_traffic_and_are_flips(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    a = backends["a"].address

    answer = await run.admin.post(backend_url("web", a, "disable"))
    assert answer.status_code == 200
    assert (answer.json()["state"], answer.json()["admin"]) == ("disabled", "disabled")
    served = [(await run.proxy.get("/")).headers["x-backend"] for _ in range(6)]
    assert served == ["b"] * 6

    answer = await run.admin.post(backend_url("web", a, "enable"))
    assert (answer.status_code, answer.json()["state"]) == (200, "healthy")
    served = [(await run.proxy.get("/")).headers["x-backend"] for _ in range(6)]
    assert sorted(served) == ["a"] * 3 + ["b"] * 3

    flips = (await run.admin.get("/api/v1/flips")).json()["flips"]
    assert [(f["pool"], f["backend"], f["state"]) for f in flips] == [
        ("web", a, "disabled"),
        ("web", a, "enabled"),
    ]
    assert flips[0]["reason"] == "by operator"
    assert flips[0]["at"] <= flips[1]["at"] <= time.time()


async def test_set_weight_changes_the_share(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    data = base_config(backends)
    data["pools"]["web"]["algorithm"] = "weighted_round_robin"
    run = await evenflow(data)
    a = backends["a"].address

    answer = await run.admin.put(backend_url("web", a, "weight"), json={"weight": 3})
    assert answer.status_code == 200
    assert (answer.json()["weight"], answer.json()["config_weight"]) == (3, 1)
    served = [(await run.proxy.get("/")).headers["x-backend"] for _ in range(8)]
    assert (served.count("a"), served.count("b")) == (6, 2)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"weight": -1}, "weight must be a whole number from 0 to 10000"),
        ({"weight": 10001}, "weight must be a whole number from 0 to 10000"),
        ({"weight": "3"}, "weight must be a whole number from 0 to 10000"),
        ({"weight": 2.5}, "weight must be a whole number from 0 to 10000"),
        ({"weight": True}, "weight must be a whole number from 0 to 10000"),
        ({}, 'weight: required, as {"weight": 3}'),
        ({"weight": 2, "wieght": 3}, "unknown field 'wieght' in the request body (takes: weight)"),
        ([3], "request body must be a JSON object"),
    ],
)
async def test_bad_weight_is_400_and_changes_nothing(
    evenflow: Start, backends: dict[str, DemoBackend], body: Any, says: str
) -> None:
    run = await evenflow(base_config(backends))
    a = backends["a"].address
    answer = await run.admin.put(backend_url("web", a, "weight"), json=body)
    assert answer.status_code == 400
    assert answer.json() == {"error": says}
    assert (await run.admin.get(backend_url("web", a))).json()["weight"] == 1


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"deadline": "30s"', b"\xff\xfe\x00", b"[" * 50_000],
    ids=["syntax", "truncated", "not-utf8", "too-deep"],
)
async def test_bad_json_is_400(
    evenflow: Start, backends: dict[str, DemoBackend], content: bytes
) -> None:
    run = await evenflow(base_config(backends))
    a = backends["a"].address
    answer = await run.admin.post(backend_url("web", a, "drain"), content=content)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("request body is not valid JSON: ")
    assert (await run.admin.get(backend_url("web", a))).json()["state"] == "healthy"


async def test_a_body_over_the_bound_is_413(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    content = b'{"deadline": "' + b" " * 100_000 + b'"}'
    answer = await run.admin.post(
        backend_url("web", backends["a"].address, "drain"), content=content
    )
    assert answer.status_code == 413
    assert answer.json() == {"error": "request body over 65536 bytes"}


@pytest.mark.parametrize(
    ("deadline", "says"),
    [
        (
            "soon",
            "deadline: 'soon' is not a duration: write it with a unit, as 250ms, 5s, 2m or 1h",
        ),
        (30, "deadline: 30 is not a duration: write it with a unit, as 250ms, 5s, 2m or 1h"),
        ("-5s", "deadline: '-5s' is not a duration"),
    ],
)
async def test_bad_deadline_is_400(
    evenflow: Start, backends: dict[str, DemoBackend], deadline: Any, says: str
) -> None:
    run = await evenflow(base_config(backends))
    a = backends["a"].address
    for method, url in [
        ("POST", backend_url("web", a, "drain")),
        ("DELETE", backend_url("web", a)),
    ]:
        answer = await run.admin.request(method, url, json={"deadline": deadline})
        assert answer.status_code == 400, method
        assert answer.json()["error"].startswith(says), method
    assert (await run.admin.get(backend_url("web", a))).json()["state"] == "healthy"


async def test_drain_with_a_deadline_reads_draining(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    a = backends["a"].address
    answer = await run.admin.post(backend_url("web", a, "drain"), json={"deadline": "2m"})
    assert answer.status_code == 200
    drained = answer.json()
    assert (drained["state"], drained["admin"]) == ("draining", "draining")
    assert 119 < drained["drain_deadline_in_s"] <= 120
    served = {(await run.proxy.get("/")).headers["x-backend"] for _ in range(4)}
    assert served == {"b"}


async def test_add_backend_then_duplicate_is_409(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    d = backends["d"]
    answer = await run.admin.post(
        "/api/v1/pools/api/backends", json={"address": d.address, "weight": 2}
    )
    assert answer.status_code == 201
    assert answer.json()["address"] == d.address
    assert answer.json()["weight"] == 2
    location = answer.headers["location"]
    assert location == backend_url("api", d.address)
    assert (await run.admin.get(location)).json()["address"] == d.address
    served = {(await run.proxy.get("/api/x")).headers["x-backend"] for _ in range(12)}
    assert served == {"c", "d"}

    again = await run.admin.post("/api/v1/pools/api/backends", json={"address": d.address})
    assert again.status_code == 409
    assert again.json() == {"error": f"pool 'api' already has backend {d.address}"}
    # the same backend written with spaces is still the same backend
    again = await run.admin.post("/api/v1/pools/api/backends", json={"address": f" {d.address}"})
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, 'address: required, a string as "10.0.0.7:8000"'),
        ({"address": 8000}, 'address: required, a string as "10.0.0.7:8000"'),
        ({"address": "nohost"}, "'nohost' is not host:port"),
        ({"address": "::1:80"}, "write IPv6 addresses as [addr]:port"),
        ({"address": "10.0.0.7:0"}, "port must be a number from 1 to 65535"),
        ({"address": "10.0.0.7:80", "weight": -2}, "weight must be a whole number"),
        ({"address": "10.0.0.7:80", "port": 80}, "unknown field 'port'"),
    ],
)
async def test_bad_add_is_400(
    evenflow: Start, backends: dict[str, DemoBackend], body: dict[str, Any], says: str
) -> None:
    run = await evenflow(base_config(backends))
    answer = await run.admin.post("/api/v1/pools/api/backends", json=body)
    assert answer.status_code == 400
    assert says in answer.json()["error"]
    pool = (await run.admin.get("/api/v1/pools/api")).json()
    assert len(pool["backends"]) == 1


async def test_ipv6_address_in_the_path_percent_encoded_or_not(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    # weight 0: in the pool, but no request goes to it (nothing listens there)
    answer = await run.admin.post(
        "/api/v1/pools/web/backends", json={"address": "[::1]:9", "weight": 0}
    )
    assert answer.status_code == 201
    assert answer.headers["location"] == "/api/v1/pools/web/backends/%5B%3A%3A1%5D%3A9"

    answer = await run.admin.post("/api/v1/pools/web/backends/%5B%3A%3A1%5D%3A9/drain")
    assert (answer.status_code, answer.json()["address"]) == (200, "[::1]:9")
    answer = await run.admin.post("/api/v1/pools/web/backends/[::1]:9/enable")
    assert (answer.status_code, answer.json()["state"]) == (200, "healthy")
    answer = await run.admin.put(
        "/api/v1/pools/web/backends/%5b::1%5d:9/weight", json={"weight": 0}
    )
    assert answer.status_code == 200


async def test_remove_drains_then_the_backend_is_gone(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    a = backends["a"].address
    answer = await run.admin.delete(backend_url("web", a))
    assert answer.status_code == 202
    assert answer.json()["state"] == "draining"
    async with asyncio.timeout(3):  # idle: gone at the next housekeeping tick
        while (await run.admin.get(backend_url("web", a))).status_code != 404:
            await asyncio.sleep(0.05)
    web = (await run.admin.get("/api/v1/pools/web")).json()
    assert list(by_address(web)) == [backends["b"].address]
    served = {(await run.proxy.get("/")).headers["x-backend"] for _ in range(4)}
    assert served == {"b"}


async def test_reload_without_a_file_is_refused(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    answer = await run.admin.post("/api/v1/reload")
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "config refused; the running config is kept",
        "source": "<config>",
        "problems": [{"path": "", "message": "evenflow was not started from a file"}],
    }
