"""Drain end to end with slow requests in flight, and reload through the admin API: the new
file takes effect, runtime state survives, and a bad file changes nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from admin_support import Start, backend_url, base_config, by_address, free_port, write_config

from evenflow.demo.backend import DemoBackend

pytestmark = pytest.mark.timeout(30)


async def test_drain_lets_in_flight_requests_finish_and_sends_no_new_ones(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    a, b = backends["a"], backends["b"]

    async with asyncio.timeout(15):
        slow = [asyncio.create_task(run.proxy.get("/slow?delay=1500")) for _ in range(10)]
        while a.in_flight + b.in_flight < 10:  # every one has reached its backend
            await asyncio.sleep(0.01)
        on_a = a.in_flight
        assert on_a == 5  # round robin: half each

        answer = await run.admin.post(backend_url("web", a.address, "drain"))
        assert (answer.status_code, answer.json()["state"]) == (200, "draining")
        state = by_address((await run.admin.get("/api/v1/pools/web")).json())[a.address]
        assert (state["state"], state["in_flight"]) == ("draining", on_a)

        # new requests, while a's are still in flight, all go to b
        quick = await asyncio.gather(*(run.proxy.get("/quick") for _ in range(10)))
        assert [r.headers["x-backend"] for r in quick] == ["b"] * 10
        assert a.in_flight == on_a  # its slow ones are not done yet: the drain did not cut them

        answered = await asyncio.gather(*slow)
        assert [r.status_code for r in answered] == [200] * 10
        assert Counter(r.headers["x-backend"] for r in answered) == {"a": on_a, "b": 10 - on_a}
        assert a.requests == on_a  # nothing reached a after the drain

        more = await asyncio.gather(*(run.proxy.get("/after") for _ in range(6)))
        assert {r.headers["x-backend"] for r in more} == {"b"}
        while True:  # keep-alive connections to a close after their current request
            state = by_address((await run.admin.get("/api/v1/pools/web")).json())[a.address]
            if state["active_connections"] == 0:
                break
            await asyncio.sleep(0.05)
        assert (state["state"], state["in_flight"]) == ("draining", 0)
        assert a.requests == on_a


def reload_config(backends: dict[str, DemoBackend]) -> dict[str, Any]:
    data = base_config(backends)
    data["pools"]["web"] = {
        "algorithm": "weighted_round_robin",
        "backends": [
            {"address": backends["a"].address, "weight": 1},
            {"address": backends["b"].address, "weight": 1},
            {"address": backends["c"].address, "weight": 1},
        ],
    }
    return data


async def test_reload_applies_the_file_and_keeps_runtime_state(
    evenflow: Start, backends: dict[str, DemoBackend], tmp_path: Path
) -> None:
    path = tmp_path / "evenflow.yaml"
    run = await evenflow(reload_config(backends), path=path)
    a, b, c, d = (backends[name].address for name in "abcd")

    # runtime state set through the API
    assert (await run.admin.put(backend_url("web", a, "weight"), json={"weight": 7})).is_success
    assert (await run.admin.post(backend_url("web", b, "drain"))).is_success

    data = run.data
    web = data["pools"]["web"]["backends"]
    web[0]["weight"] = 3  # a: the runtime weight 7 wins over the file's new 3
    web[2]["weight"] = 4  # c: not overridden, follows the file
    web.append({"address": d, "weight": 1})
    data["pools"]["extra"] = {"backends": [d]}
    data["listeners"][0]["routes"].insert(
        0, {"name": "extra", "match": {"path_prefix": "/extra/"}, "pool": "extra"}
    )
    write_config(path, data)

    answer = await run.admin.post("/api/v1/reload")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "reloaded",
        "source": str(path),
        "listeners": 1,
        "pools": 3,
        "backends": 6,
        "notes": [],
    }

    pools = {p["name"]: p for p in (await run.admin.get("/api/v1/pools")).json()["pools"]}
    assert set(pools) == {"web", "api", "extra"}
    web_now = by_address(pools["web"])
    assert list(web_now) == [a, b, c, d]
    assert (web_now[a]["weight"], web_now[a]["config_weight"]) == (7, 3)
    assert web_now[b]["state"] == "draining"
    assert (web_now[c]["weight"], web_now[c]["config_weight"]) == (4, 4)
    assert web_now[d]["state"] == "healthy"

    assert (await run.proxy.get("/extra/x")).headers["x-backend"] == "d"
    served = {(await run.proxy.get("/")).headers["x-backend"] for _ in range(30)}
    assert served == {"a", "c", "d"}  # b stays drained


async def test_reload_of_a_bad_file_lists_every_problem_and_keeps_serving(
    evenflow: Start, backends: dict[str, DemoBackend], tmp_path: Path
) -> None:
    path = tmp_path / "evenflow.yaml"
    run = await evenflow(reload_config(backends), path=path)
    before = (await run.admin.get("/api/v1/pools")).json()

    bad = run.data
    bad["pools"]["web"]["backends"][0]["weight"] = -1
    bad["pools"]["web"]["backends"][1]["adress"] = "typo"
    write_config(path, bad)
    answer = await run.admin.post("/api/v1/reload")
    assert answer.status_code == 400
    refused = answer.json()
    assert refused["error"] == "config refused; the running config is kept"
    assert refused["source"] == str(path)
    problems = {p["path"]: p["message"] for p in refused["problems"]}
    assert problems["pools.web.backends[0].weight"] == "must be >= 0"
    assert problems["pools.web.backends[1].adress"].startswith("unknown key")
    assert len(problems) == 2

    path.write_text("listeners: [\n")
    answer = await run.admin.post("/api/v1/reload")
    assert answer.status_code == 400
    assert answer.json()["problems"][0]["message"].startswith("not valid YAML")

    assert (await run.admin.get("/api/v1/pools")).json()["pools"] == before["pools"]
    served = {(await run.proxy.get("/")).headers["x-backend"] for _ in range(6)}
    assert served == {"a", "b", "c"}


async def test_reload_that_cannot_bind_is_refused(
    evenflow: Start, backends: dict[str, DemoBackend], tmp_path: Path
) -> None:
    path = tmp_path / "evenflow.yaml"
    run = await evenflow(reload_config(backends), path=path)
    data = run.data
    taken = data["admin"]["bind"]  # a second listener on the admin API's port
    data["listeners"].append({"name": "second", "bind": taken, "routes": [{"pool": "web"}]})
    data["admin"]["bind"] = f"127.0.0.1:{free_port()}"
    write_config(path, data)

    answer = await run.admin.post("/api/v1/reload")
    assert answer.status_code == 400
    [problem] = answer.json()["problems"]
    assert problem["message"].startswith(f"cannot listen on {taken} (second): ")
    assert (await run.proxy.get("/")).status_code == 200


async def test_reload_changing_admin_says_it_waits_for_a_restart(
    evenflow: Start, backends: dict[str, DemoBackend], tmp_path: Path
) -> None:
    path = tmp_path / "evenflow.yaml"
    run = await evenflow(reload_config(backends), path=path)
    run.data["admin"]["bind"] = f"127.0.0.1:{free_port()}"
    write_config(path, run.data)
    answer = await run.admin.post("/api/v1/reload")
    assert answer.status_code == 200
    assert answer.json()["notes"] == [
        "admin settings changed: they take effect when evenflow restarts"
    ]
    assert (await run.admin.get("/live")).status_code == 200  # still where it was


async def test_reload_moves_the_access_log_to_its_new_file(
    evenflow: Start, backends: dict[str, DemoBackend], tmp_path: Path
) -> None:
    path = tmp_path / "evenflow.yaml"
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    data = reload_config(backends)
    data["access_log"] = {"path": str(first)}
    run = await evenflow(data, path=path)
    await run.proxy.get("/before")
    run.data["access_log"] = {"path": str(second), "format": "combined"}
    write_config(path, run.data)
    assert (await run.admin.post("/api/v1/reload")).status_code == 200
    await run.proxy.get("/after")  # on the connection opened before the reload
    async with asyncio.timeout(5):
        while not second.exists() or "/after" not in second.read_text():
            await asyncio.sleep(0.05)
    assert '"/before"' in first.read_text()  # flushed when it was closed
    assert "/after" not in first.read_text()
    assert '"GET /after HTTP/1.1" 200' in second.read_text()  # in the new format
