"""The hot-spot view over real traffic: a flooded key is named first, its backend's share
stands out against its expected share, and one client address dominating an ip_hash pool is
flagged (and logged) as a likely NAT."""

from __future__ import annotations

import asyncio
import logging
import random
import re

import pytest
from affinity_support import Client, Start, map_keys

from evenflow.admin.openapi import OPENAPI

pytestmark = pytest.mark.timeout(30)

HOT = "flood-me"


async def test_the_flooded_key_is_first_in_the_hot_key_view(evenflow: Start) -> None:
    run = await evenflow({"algorithm": "consistent_hash", "hash_key": "header:x-user-id"})
    stream = [HOT] * 500 + [f"user-{i}" for i in range(500)]  # 500 others, once each
    random.Random(11).shuffle(stream)
    seen = await map_keys(run.proxy, stream)
    [hot_backend] = set(seen[HOT])
    view = await run.hotspots()
    first, second = view["keys"][:2]
    assert first["key"] == HOT
    assert first["count"] - first["max_overestimate"] <= 500 <= first["count"]
    assert first["share"] >= 0.5
    # 32 counters and 500 one-off keys: the rest carry inherited errors, far below the flood
    assert second["count"] - second["max_overestimate"] <= 1
    assert view["keys_total"] == 1000
    assert view["hash_key"] == "header:x-user-id"
    # the flooded key's backend carries more than its table share, and the view says so
    backends = {run.names[b["address"]]: b for b in view["backends"]}
    assert max(backends, key=lambda n: backends[n]["share"]) == hot_backend
    hot = backends[hot_backend]
    assert hot["requests"] == run.backends[hot_backend].requests
    assert hot["share"] >= 0.5 > hot["expected_share"]
    assert sum(b["requests"] for b in backends.values()) == view["requests"] == 1000
    assert view["clients"] == []  # keyed on a header: client addresses are not watched


async def test_a_secret_hash_key_is_shown_as_a_hash(evenflow: Start) -> None:
    run = await evenflow({"algorithm": "maglev", "hash_key": "cookie:session"})
    for _ in range(3):
        answer = await run.proxy.get("/", headers={"cookie": "session=very-secret-session-id"})
        assert answer.status_code == 200
    [key] = (await run.hotspots())["keys"]
    assert key["key"].startswith("#") and "secret" not in key["key"]
    assert key["count"] == 3


async def test_one_client_address_dominating_an_ip_hash_pool_is_a_nat_suspect(
    evenflow: Start, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "evenflow.observability.hotspots")
    run = await evenflow({"algorithm": "ip_hash"})
    nat = await client(run.url, "127.0.0.2")
    others = [await client(run.url, f"127.0.0.{i}") for i in range(30, 50)]
    sends = [nat.get("/") for _ in range(120)] + [c.get("/") for c in others for _ in range(3)]
    answers = await asyncio.gather(*sends)
    assert all(a.status_code == 200 for a in answers)
    view = await run.hotspots()
    assert view["clients_total"] == 180
    assert view["nat_suspects"] == ["127.0.0.2"]
    first = view["clients"][0]
    assert (first["address"], first["count"], first["nat_suspect"]) == ("127.0.0.2", 120, True)
    assert first["share"] == pytest.approx(120 / 180, abs=1e-3)
    assert not any(c["nat_suspect"] for c in view["clients"][1:])
    # housekeeping logs it once, within a sampling period
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while loop.time() < deadline and not any("NAT" in r.getMessage() for r in caplog.records):
        await asyncio.sleep(0.1)
    logged = [r.getMessage() for r in caplog.records if "NAT" in r.getMessage()]
    # once; the counts are whatever housekeeping saw at its tick (it may fall mid-burst)
    assert len(logged) == 1, logged
    assert re.fullmatch(
        r"pool web: client 127\.0\.0\.2 sent \d+ of \d+ requests \(\d+%\): likely a NAT or "
        r"proxy hot spot, pinning that share to one backend",
        logged[0],
    ), logged


async def test_the_answer_is_the_documented_schema(evenflow: Start, client: Client) -> None:
    run = await evenflow({"algorithm": "ip_hash", "sticky": {"source_ip": {}}})
    for ip in ("127.0.0.2", "127.0.0.3"):
        c = await client(run.url, ip)
        assert (await c.get("/", headers={"x-user-id": "u"})).status_code == 200
    view = await run.hotspots()
    schemas = OPENAPI["components"]["schemas"]
    parts = [
        ("Hotspots", view),
        ("HotspotBackend", view["backends"][0]),
        ("HotClient", view["clients"][0]),
        ("StickyCounters", view["sticky"]),
    ]
    run2 = await evenflow({"algorithm": "maglev", "hash_key": "header:x-user-id"})
    assert (await run2.proxy.get("/", headers={"x-user-id": "u"})).status_code == 200
    parts.append(("HotKey", (await run2.hotspots())["keys"][0]))
    for name, answer in parts:
        schema = schemas[name]
        assert set(schema["required"]) <= set(answer), name
        assert set(answer) <= set(schema["properties"]), name
    operation = OPENAPI["paths"]["/api/v1/pools/{pool}/hotspots"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Hotspots"
    }
    missing = await run.admin.get("/api/v1/pools/nope/hotspots")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no pool 'nope'"}
