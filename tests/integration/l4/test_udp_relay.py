"""A udp listener: flows kept on one backend (or each datagram balanced), replies back to the
right client, a bounded flow table that counts evictions, idle flows forgotten."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from l4_support import Evenflow, UdpBackend, blocking, udp_ask, udp_client, udp_config

from evenflow.proxy.udp import describe_flows

StartEvenflow = Callable[[dict[str, Any]], Awaitable[Evenflow]]
StartUdp = Callable[..., UdpBackend]


async def test_a_flow_stays_on_one_backend_and_replies_reach_their_client(
    evenflow: StartEvenflow, udp_backend: StartUdp
) -> None:
    a, b = udp_backend("a"), udp_backend("b")
    ef = await evenflow(udp_config({"p": {"backends": [a.address, b.address]}}, pool="p"))

    def two_clients() -> tuple[list[bytes], list[bytes]]:
        with udp_client() as one, udp_client() as two:
            first, second = [], []
            for i in range(5):  # interleaved: each reply must go to its own client
                first.append(udp_ask(one, ef.port(), b"one-%d" % i))
                second.append(udp_ask(two, ef.port(), b"two-%d" % i))
            return first, second

    first, second = await blocking(two_clients)
    name_one = first[0].split()[0]
    name_two = second[0].split()[0]
    assert first == [name_one + b" one-%d" % i for i in range(5)]
    assert second == [name_two + b" two-%d" % i for i in range(5)]
    assert {name_one, name_two} == {b"a", b"b"}  # round robin: the second flow got the other
    # one upstream socket per flow: each backend saw a single source port
    assert len({sender for sender, _ in a.seen()}) == 1
    assert len({sender for sender, _ in b.seen()}) == 1
    assert describe_flows(ef.udp())["flows"] == 2


async def test_per_datagram_balances_every_datagram(
    evenflow: StartEvenflow, udp_backend: StartUdp
) -> None:
    a, b = udp_backend("a"), udp_backend("b")
    ef = await evenflow(
        udp_config({"p": {"backends": [a.address, b.address]}}, pool="p", per_datagram=True)
    )

    def one_client() -> list[bytes]:
        with udp_client() as sock:
            return [udp_ask(sock, ef.port(), b"q%d" % i) for i in range(20)]

    answers = await blocking(one_client)
    assert [answer.split()[1] for answer in answers] == [b"q%d" % i for i in range(20)]
    names = [answer.split()[0] for answer in answers]
    assert Counter(names) == {b"a": 10, b"b": 10}
    assert all(x != y for x, y in zip(names, names[1:], strict=False))  # alternating


async def test_flow_table_is_bounded_and_counts_evictions(
    evenflow: StartEvenflow, udp_backend: StartUdp
) -> None:
    a = udp_backend("a")
    ef = await evenflow(
        udp_config({"p": {"backends": [a.address]}}, pool="p", limits={"max_flows": 2})
    )

    def three_clients() -> list[bytes]:
        with udp_client() as one, udp_client() as two, udp_client() as three:
            answers = [udp_ask(sock, ef.port(), b"hi") for sock in (one, two, three)]
            answers.append(udp_ask(one, ef.port(), b"again"))  # evicted, then served anew
            return answers

    assert await blocking(three_clients) == [b"a hi"] * 3 + [b"a again"]
    flows = describe_flows(ef.udp())
    assert flows["flows"] == 2
    assert flows["flows_created"] == 4
    assert flows["evicted"] == 2  # client one's first flow, then client two's
    lines = await ef.wait_log(2)
    assert [line["close"] for line in lines] == ["evicted", "evicted"]
    # client one came back on a new upstream socket: the backend saw a new source port
    senders = [sender for sender, _ in a.seen()]
    assert len(set(senders)) == 4


async def test_idle_flow_is_forgotten(evenflow: StartEvenflow, udp_backend: StartUdp) -> None:
    a = udp_backend("a")
    ef = await evenflow(
        udp_config({"p": {"backends": [a.address]}}, pool="p", timeouts={"idle": "1s"})
    )
    sock = udp_client()
    try:
        assert await blocking(udp_ask, sock, ef.port(), b"one") == b"a one"
        assert describe_flows(ef.udp())["flows"] == 1
        started = time.monotonic()
        while describe_flows(ef.udp())["flows"] and time.monotonic() - started < 5:
            await asyncio.sleep(0.05)
        # swept once a second: gone between 1 and 2 s (plus a little) after its last datagram
        assert 0.9 <= time.monotonic() - started <= 2.5
        assert describe_flows(ef.udp())["expired"] == 1
        assert await blocking(udp_ask, sock, ef.port(), b"two") == b"a two"
    finally:
        sock.close()
    (first, second) = [sender for sender, _ in a.seen()]
    assert first != second  # a new flow, a new upstream socket
    (line,) = await ef.wait_log(1)
    assert line["close"] == "idle"
    assert (line["datagrams_in"], line["datagrams_out"]) == (1, 1)
    assert (line["bytes_in"], line["bytes_out"]) == (3, 5)


async def test_send_proxy_v2_leads_each_datagram_with_the_client_address(
    evenflow: StartEvenflow, udp_backend: StartUdp
) -> None:
    a = udp_backend("a", proxy_header=True)
    ef = await evenflow(udp_config({"p": {"backends": [a.address], "send_proxy": "v2"}}, pool="p"))

    def client() -> tuple[int, list[bytes]]:
        with udp_client("127.0.0.2") as sock:
            port = sock.getsockname()[1]
            return port, [udp_ask(sock, ef.port(), b"d%d" % i) for i in range(3)]

    port, answers = await blocking(client)
    assert answers == [b"a d0", b"a d1", b"a d2"]  # replies come back without a header
    assert len(a.headers) == 3
    for header in a.headers:
        assert header.version == 2
        assert header.transport == "dgram"
        assert header.source == ("127.0.0.2", port)
        assert header.destination == ("127.0.0.1", ef.port())
